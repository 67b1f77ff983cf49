/* probe: prints the path of the object that provides malloc/free in this
 * process, so compare.py can verify that an LD_PRELOAD took effect. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
int main(void) {
    void *m = dlsym(RTLD_DEFAULT, "malloc");
    void *f = dlsym(RTLD_DEFAULT, "free");
    Dl_info im, jf;
    if (!m || !f || !dladdr(m, &im) || !dladdr(f, &jf)) { puts("malloc=? free=?"); return 1; }
    void *p = malloc(100);       /* make sure malloc works at all */
    if (!p) return 1;
    free(p);
    printf("malloc=%s free=%s\n", im.dli_fname, jf.dli_fname);
    return 0;
}
