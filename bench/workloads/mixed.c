/* mixed: one thread, power-law sizes 8 B..64 KiB, random lifetimes:
 * a table of 10k live objects, each op replaces a random slot. */
#include "common.h"
#define WL "mixed"
#define SLOTS 10000

int main(int argc, char **argv) {
    double scale = arg_scale(argc, argv);
    uint64_t ops = (uint64_t)(3000000 * scale);
    double t0 = now_sec();
    slot_table_run(WL, 1, SLOTS, ops);
    double t1 = now_sec();
    report(WL, 1, ops, t1 - t0);
    return 0;
}
