/* cold_text: a program that only allocates does not map the library's cold
 * code (ffi/build.rs, ffi/cold.ld). Run with LD_PRELOAD=libslaballoc.so.
 *
 * Works the allocator the way programs do (small and large blocks, calloc,
 * realloc, aligned blocks, a second thread freeing the first one's blocks,
 * a fork) for longer than the live view's 50 ms, so that its file is made,
 * then reads its own page table (/proc/self/pagemap: bit 63, present) over
 * the library's `.text_cold` section, whose place it reads from the
 * library's ELF section headers. The kernel maps a file's pages around a
 * fault in aligned 64 KiB windows, so the windows wholly inside the section
 * must have no page present; a call from a warm path into cold code (a
 * helper the section should not hold) maps them. As a control, the page of
 * `malloc` must be present. And the code that did run (`.text` through the
 * end of `.text_cold`) must have its present pages in one window: a `.text`
 * that grew past its window maps the next one, cold code and all (48 KiB
 * more in every process; the starter heap's first build did).
 *
 * `cold_text start`: a short process instead (a few dozen small blocks,
 * free(NULL); all of it the starter heap's), then the pages present of the
 * library's writable data from `.data` up to the large arrays (`.bss.big`:
 * the zones, the starter heap's region, the reclaimer's stack): the small
 * statics, which the linker must keep together on a few pages instead of
 * spreading them between the large arrays (ffi/build.rs), and the
 * page-region table's entry for the library's own address. At most 5 (4
 * now): with the large arrays among them a process that only starts up
 * touched 8, and pages of the starter heap's region besides. And the
 * pages present of the read-only segment before the code: at most 7.
 *
 * Exit 0: pass; 1: fail; 77: skip (the library was linked without the
 * section, or loaded at an address not aligned to 64 KiB: glibc < 2.35). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WINDOW 65536UL

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#define N 512
static void *handed[N];

static void *freer(void *arg) {
    (void)arg;
    for (int i = 0; i < N; i++) free(handed[i]);
    return NULL;
}

static void work(void) {
    double end = now() + 0.08;
    unsigned r = 1;
    while (now() < end) {
        void *p[N];
        for (int i = 0; i < N; i++) {
            r = r * 1103515245 + 12345;
            size_t n = 16 + (r >> 8) % (i % 64 == 0 ? 100000 : 2000);
            p[i] = (i % 7 == 0) ? calloc(1, n) : malloc(n);
            if (!p[i]) exit(1);
            memset(p[i], i, n < 64 ? n : 64);
        }
        for (int i = 0; i < N; i += 3) {
            p[i] = realloc(p[i], 3000);
            if (!p[i]) exit(1);
        }
        void *a = NULL;
        if (posix_memalign(&a, 4096, 10000) != 0) exit(1);
        free(a);
        for (int i = 0; i < N; i++) {
            handed[i] = malloc(48);
            free(p[i]);
        }
        pthread_t t;
        if (pthread_create(&t, NULL, freer, NULL) != 0) exit(1);
        pthread_join(t, NULL);
    }
    pid_t c = fork();
    if (c == 0) {
        free(malloc(100));
        _exit(0);
    }
    waitpid(c, NULL, 0);
}

/* The library: the file and load address of the object that defines
 * sa_malloc (found by symbol, whatever the file is called). */
static int find_lib(char *path, size_t cap, uintptr_t *base) {
    void *f = dlsym(RTLD_DEFAULT, "sa_malloc");
    Dl_info info;
    if (!f || !dladdr(f, &info) || !info.dli_fname || strlen(info.dli_fname) >= cap) return 0;
    strcpy(path, info.dli_fname);
    *base = (uintptr_t)info.dli_fbase;
    return 1;
}

/* The section `name` of the ELF file at `path`: its address and size. */
static int find_section(const char *path, const char *name, uint64_t *addr, uint64_t *size) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return 0;
    Elf64_Ehdr eh;
    int ok = 0;
    if (pread(fd, &eh, sizeof eh, 0) == sizeof eh && eh.e_shentsize == sizeof(Elf64_Shdr)) {
        Elf64_Shdr *sh = calloc(eh.e_shnum, sizeof *sh);
        if (sh && pread(fd, sh, eh.e_shnum * sizeof *sh, eh.e_shoff) == (ssize_t)(eh.e_shnum * sizeof *sh)) {
            Elf64_Shdr *str = &sh[eh.e_shstrndx];
            char *names = malloc(str->sh_size);
            if (names && pread(fd, names, str->sh_size, str->sh_offset) == (ssize_t)str->sh_size) {
                for (int i = 0; i < eh.e_shnum; i++) {
                    if (sh[i].sh_name < str->sh_size && strcmp(names + sh[i].sh_name, name) == 0) {
                        *addr = sh[i].sh_addr;
                        *size = sh[i].sh_size;
                        ok = 1;
                    }
                }
            }
            free(names);
        }
        free(sh);
    }
    close(fd);
    return ok;
}

/* Whether the page at `va` is in this process's page table. */
static int present(int pm, uintptr_t va) {
    uint64_t e = 0;
    if (pread(pm, &e, 8, (va / 4096) * 8) != 8) return -1;
    return (int)(e >> 63);
}

/* The pages present over `from`..`to` (page-aligned ends), listed. */
static int present_pages(int pm, uintptr_t from, uintptr_t to, uintptr_t base) {
    int n = 0;
    for (uintptr_t va = from; va < to; va += 4096)
        if (present(pm, va) == 1) {
            if (n++ < 12) printf("present: library offset %#lx\n", (unsigned long)(va - base));
        }
    return n;
}

/* `start` mode: the writable pages a short process touches (see the top). */
static int startup(int pm, const char *path, uintptr_t base) {
    void *p[40];
    for (int i = 0; i < 40; i++) {
        p[i] = malloc(16 + 24 * i);
        if (!p[i]) return 1;
        memset(p[i], i, 16);
    }
    for (int i = 0; i < 40; i += 2) free(p[i]);
    free(NULL);
    uint64_t daddr, dsize, baddr, bsize;
    if (!find_section(path, ".data", &daddr, &dsize) || !find_section(path, ".bss.big", &baddr, &bsize)) {
        printf("skip: %s has no .bss.big section (not linked by LLD)\n", path);
        return 77;
    }
    uintptr_t from = (base + daddr) & ~4095UL, to = (base + baddr) & ~4095UL;
    int n = present_pages(pm, from, to, base);
    printf("writable pages present from .data (%#lx) to .bss.big (%#lx): %d\n", (unsigned long)daddr,
           (unsigned long)baddr, n);
    if (n > 5) {
        printf("FAIL: a short process touched %d pages of the library's small statics and page map (at most 5): "
               "keep the large arrays out of .bss (#[link_section = \".bss.big...\"])\n",
               n);
        return 1;
    }
    /* The read-only segment before the code (symbols, relocations,
     * read-only data, unwind tables) is mapped whole in every process
     * once the file is in the page cache (fault-around maps the 64 KiB
     * window around a fault): seven pages now, 60 bytes to spare; one more
     * byte of it is a page more in every process (docs/experiments.md,
     * twenty-seventh and twenty-eighth sessions). */
    uint64_t eaddr, esize;
    if (find_section(path, ".eh_frame", &eaddr, &esize)) {
        uintptr_t end = (base + eaddr + esize + 4095) & ~4095UL;
        int r = present_pages(pm, base, end, base);
        printf("pages present of the read-only segment (to %#lx): %d\n", (unsigned long)(eaddr + esize), r);
        if (r > 7) {
            printf("FAIL: %d pages of the library's first segment in a short process (at most 7): "
                   "its symbols, relocations, read-only data or unwind tables grew\n",
                   r);
            return 1;
        }
    }
    for (int i = 1; i < 40; i += 2) free(p[i]);
    return 0;
}

int main(int argc, char **argv) {
    int start = argc > 1 && strcmp(argv[1], "start") == 0;
    if (!start) work();
    char path[512];
    uintptr_t base;
    if (!find_lib(path, sizeof path, &base)) {
        printf("skip: no sa_malloc: slaballoc is not loaded (run with LD_PRELOAD)\n");
        return 77;
    }
    int pm = open("/proc/self/pagemap", O_RDONLY);
    if (pm < 0) {
        printf("skip: cannot read /proc/self/pagemap\n");
        return 77;
    }
    if (start) {
        int r = startup(pm, path, base);
        close(pm);
        return r;
    }
    uint64_t addr, size, taddr, tsize;
    if (!find_section(path, ".text_cold", &addr, &size) || !find_section(path, ".text", &taddr, &tsize)) {
        printf("skip: %s has no .text_cold section (not linked by LLD)\n", path);
        return 77;
    }
    if (base % WINDOW != 0) {
        printf("skip: %s loaded at %#lx, not aligned to 64 KiB\n", path, (unsigned long)base);
        return 77;
    }
    void *m = dlsym(RTLD_DEFAULT, "malloc");
    int hot = m ? present(pm, (uintptr_t)m) : -1;
    uintptr_t from = (base + addr + WINDOW - 1) & ~(WINDOW - 1);
    uintptr_t to = (base + addr + size) & ~4095UL;
    int mapped = present_pages(pm, from, to, base), pages = to > from ? (int)((to - from) / 4096) : 0;
    /* the windows of the code with a page present */
    uintptr_t first = 0, last = 0;
    int nwin = 0;
    for (uintptr_t va = (base + taddr) & ~4095UL; va < base + addr + size; va += 4096) {
        if (present(pm, va) != 1) continue;
        uintptr_t w = va / WINDOW;
        if (!nwin || w != last) nwin++;
        if (!first) first = w;
        last = w;
    }
    close(pm);
    printf("code pages present in %d 64 KiB window(s); .text %#lx+%#lx\n", nwin, (unsigned long)taddr,
           (unsigned long)tsize);
    if (nwin > 1) {
        printf("FAIL: the code every program runs spans %d windows (.text ends at %#lx): keep .text within "
               "one window, move what only runs on request to .text_cold\n",
               nwin, (unsigned long)(taddr + tsize));
        return 1;
    }
    printf("library %s at %#lx: .text_cold %#lx+%#lx; whole windows %#lx-%#lx: %d of %d pages present; malloc's page present: %d\n",
           path, (unsigned long)base, (unsigned long)addr, (unsigned long)size, (unsigned long)(from - base),
           (unsigned long)(to - base), mapped, pages, hot);
    if (hot != 1) {
        printf("FAIL: the page of malloc reads as not present: the page table cannot be read here\n");
        return 1;
    }
    if (pages == 0) {
        printf("skip: .text_cold holds no whole 64 KiB window\n");
        return 77;
    }
    if (mapped) {
        printf("FAIL: cold code was mapped: something on a path every program runs calls into .text_cold\n");
        return 1;
    }
    return 0;
}
