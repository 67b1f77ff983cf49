/* sh8_like: sh8bench-style batches (see sh_like.h): like sh6_like but with a
 * wider size range (1..4000 B) and every other batch freed by the next
 * thread, so about half of all frees are cross-thread. */
#define WL "sh8_like"
#define MINSZ 1
#define MAXSZ 4000
#define BATCH_MIN 50
#define BATCH_MAX 400
#define HANDOFF 2
#include "sh_like.h"
int main(int argc, char **argv) { return sh_main(argc, argv, 6000); }
