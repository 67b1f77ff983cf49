/* sh6_like: sh6bench-style batches (see sh_like.h): blocks of 1..1000 B,
 * batches of 50..400 blocks, one batch in 8 freed by the next thread. */
#define WL "sh6_like"
#define MINSZ 1
#define MAXSZ 1000
#define BATCH_MIN 50
#define BATCH_MAX 400
#define HANDOFF 8
#include "sh_like.h"
int main(int argc, char **argv) { return sh_main(argc, argv, 15000); }
