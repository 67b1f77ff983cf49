/* xmalloc_like: producers hand blocks to consumers in small batches (see
 * xmalloc.h): blocks of 16..64 B, batches of 128, at most 64 pending (about
 * 0.5 MB in flight: the blocks stay in the caches). 10 million blocks. */
#define WL "xmalloc_like"
#define MINSZ 16
#define MAXSZ 64
#define BATCH 128
#define MAX_PENDING 64
#define SEED 700
#include "xmalloc.h"
int main(int argc, char **argv) { return xmalloc_main(argc, argv, 10000000); }
