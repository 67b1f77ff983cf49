/* xmalloc_deep: xmalloc_like at the depth of the real xmalloc-test (see
 * xmalloc.h): every block 64 B, batches of 4096 (the batch itself a 32 KiB
 * block, past the size classes, as the original's is), at most 100 pending.
 * Up to 100 x 4096 x 64 B = 26 MB is in flight, more than any cache holds:
 * the blocks a consumer frees and the chunks a producer gets back are cold.
 * 16 million blocks. */
#define WL "xmalloc_deep"
#define MINSZ 64
#define MAXSZ 64
#define BATCH 4096
#define MAX_PENDING 100
#define SEED 900
#include "xmalloc.h"
int main(int argc, char **argv) { return xmalloc_main(argc, argv, 16000000); }
