/* cxx.cc - C++'s operator new and operator delete (ffi/src/cxx.rs).
 *
 * Usage: cxx [sa] [prof]
 *   (no argument)  the standard's semantics, under any allocator: blocks of
 *                  all eight forms of new, freed by the matching deletes
 *                  (sized and aligned ones too); the aligned forms' alignment;
 *                  out of memory, each form runs the new-handler until it is
 *                  removed, then throws std::bad_alloc (the nothrow forms
 *                  return null); a double delete aborts.
 *   sa             also: all twenty forms resolve into libslaballoc (the
 *                  program's operator new is ours, not the C++ runtime's), and
 *                  the double delete is reported by slaballoc.
 *   static         as sa, for a program linked with libslaballoc.a: the forms
 *                  resolve into the program itself.
 *   prof           hold_cxx holds most of the live bytes at exit through
 *                  operator new (run.sh reads the heap profile: its stacks
 *                  must unwind through our operator new to the caller).
 * Exit 0 if every check passed. */
#include <dlfcn.h>
#include <malloc.h>
#include <initializer_list>
#include <new>
#include <stdexcept>
#include <string>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures;
#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);           \
            fprintf(stderr, __VA_ARGS__);                                  \
            fputc('\n', stderr);                                           \
            failures++;                                                    \
        }                                                                  \
    } while (0)

/* A size no allocator can serve, hidden from the optimizer. */
static volatile size_t huge = (size_t)1 << 62;

static int handler_calls;
static void handler(void) {
    /* Removed on the third call: the runtime then throws (or the nothrow
     * form returns null). */
    if (++handler_calls == 3) std::set_new_handler(nullptr);
}

static void fill_check(void *p, size_t n, int tag, const char *what) {
    memset(p, tag, n);
    CHECK(malloc_usable_size(p) >= n, "%s: usable size %zu < %zu", what, malloc_usable_size(p), n);
    const unsigned char *c = (const unsigned char *)p;
    CHECK(c[0] == (unsigned char)tag && c[n - 1] == (unsigned char)tag, "%s: contents", what);
}

static void forms(void) {
    static const size_t sizes[] = {0, 1, 24, 100, 1000, 5000, 70000, 3 << 20};
    for (size_t s : sizes) {
        size_t n = s ? s : 1;
        void *a = ::operator new(s);
        void *b = ::operator new[](s);
        void *c = ::operator new(s, std::nothrow);
        void *d = ::operator new[](s, std::nothrow);
        CHECK(a && b && c && d, "new of %zu returned null", s);
        CHECK(a != b && a != c && a != d && b != c && b != d && c != d, "new of %zu: blocks alias", s);
        fill_check(a, n, 1, "new");
        fill_check(b, n, 2, "new[]");
        fill_check(c, n, 3, "new nothrow");
        fill_check(d, n, 4, "new[] nothrow");
        ::operator delete(a, s);
        ::operator delete[](b, s);
        ::operator delete(c, std::nothrow);
        ::operator delete[](d, std::nothrow);
        a = ::operator new(s);
        b = ::operator new[](s);
        ::operator delete(a);
        ::operator delete[](b);
    }
    static const size_t aligns[] = {32, 64, 256, 4096, 65536, 1 << 21};
    for (size_t al : aligns)
        for (size_t s : {(size_t)1, (size_t)48, (size_t)3000, (size_t)100000}) {
            std::align_val_t av{al};
            void *p[4] = {::operator new(s, av), ::operator new[](s, av),
                          ::operator new(s, av, std::nothrow), ::operator new[](s, av, std::nothrow)};
            for (int i = 0; i < 4; i++) {
                CHECK(p[i] && (uintptr_t)p[i] % al == 0, "aligned new %zu/%zu form %d: %p", s, al, i, p[i]);
                if (p[i]) fill_check(p[i], s, 5 + i, "aligned new");
            }
            ::operator delete(p[0], av);
            ::operator delete[](p[1], s, av);
            ::operator delete(p[2], av, std::nothrow);
            ::operator delete[](p[3], av, std::nothrow);
            void *q = ::operator new(s, av);
            ::operator delete(q, s, av);
        }
    /* new-expressions, as programs write them */
    struct T { long v[5]; T() { v[0] = 7; } };
    T *t = new T;
    T *ts = new T[100];
    CHECK(t->v[0] == 7 && ts[99].v[0] == 7, "new-expression contents");
    delete t;
    delete[] ts;
    struct alignas(128) A { char c[200]; };
    A *al = new A;
    CHECK((uintptr_t)al % 128 == 0, "new of an over-aligned type: %p", (void *)al);
    delete al;
}

/* Out of memory: the new-handler runs until it removes itself, then
 * std::bad_alloc (or null for nothrow), for each form. */
static void out_of_memory(void) {
    for (int form = 0; form < 8; form++) {
        handler_calls = 0;
        std::set_new_handler(handler);
        bool threw = false;
        void *p = (void *)1;
        std::align_val_t av{64};
        try {
            switch (form) {
            case 0: p = ::operator new(huge); break;
            case 1: p = ::operator new[](huge); break;
            case 2: p = ::operator new(huge, std::nothrow); break;
            case 3: p = ::operator new[](huge, std::nothrow); break;
            case 4: p = ::operator new(huge, av); break;
            case 5: p = ::operator new[](huge, av); break;
            case 6: p = ::operator new(huge, av, std::nothrow); break;
            case 7: p = ::operator new[](huge, av, std::nothrow); break;
            }
        } catch (const std::bad_alloc &) {
            threw = true;
        }
        bool nothrow = form == 2 || form == 3 || form == 6 || form == 7;
        CHECK(handler_calls == 3, "form %d: new-handler called %d times, not 3", form, handler_calls);
        if (nothrow)
            CHECK(!threw && p == nullptr, "nothrow form %d: threw %d, returned %p", form, threw, p);
        else
            CHECK(threw, "form %d: no std::bad_alloc", form);
        std::set_new_handler(nullptr);
    }
    /* Without a handler: thrown at once, from deep in a call chain. */
    bool threw = false;
    try {
        std::string s;
        s.reserve(huge);
    } catch (const std::bad_alloc &) {
        threw = true;
    } catch (const std::length_error &) {
        threw = true; /* reserve may refuse the size before allocating */
    }
    CHECK(threw, "std::string::reserve of 2^62 did not throw");
    /* And the allocator still works. */
    void *p = ::operator new(100);
    CHECK(p != nullptr, "new after out of memory");
    ::operator delete(p);
}

/* A double delete must abort the process (in a child). With `sa`, the
 * message must be slaballoc's. */
static void double_delete(bool sa) {
    int fds[2];
    if (pipe(fds) != 0) { CHECK(0, "pipe"); return; }
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        long *q = new long(5);
        long *volatile alias = q;
        delete q;
        delete alias;
        _exit(0);
    }
    close(fds[1]);
    char buf[4096];
    size_t got = 0;
    ssize_t r;
    while (got < sizeof buf - 1 && (r = read(fds[0], buf + got, sizeof buf - 1 - got)) > 0) got += (size_t)r;
    buf[got] = 0;
    close(fds[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "double delete: status %#x, stderr: %s", st, buf);
    if (sa) CHECK(strstr(buf, "slaballoc:") != nullptr, "double delete not reported by slaballoc: %s", buf);
    fprintf(stderr, "double delete reported: %.*s", (int)strcspn(buf, "\n") + 1, buf);
}

/* Every form resolves into libslaballoc (or, linked statically, into the
 * program itself, where main is). */
static void ours(bool linked_static) {
    Dl_info self;
    const char *want = "slaballoc";
    if (linked_static && dladdr((void *)&ours, &self) && self.dli_fname) want = self.dli_fname;
    void *fns[] = {
        (void *)static_cast<void *(*)(size_t)>(&::operator new),
        (void *)static_cast<void *(*)(size_t)>(&::operator new[]),
        (void *)static_cast<void *(*)(size_t, const std::nothrow_t &) noexcept>(&::operator new),
        (void *)static_cast<void *(*)(size_t, const std::nothrow_t &) noexcept>(&::operator new[]),
        (void *)static_cast<void *(*)(size_t, std::align_val_t)>(&::operator new),
        (void *)static_cast<void *(*)(size_t, std::align_val_t)>(&::operator new[]),
        (void *)static_cast<void *(*)(size_t, std::align_val_t, const std::nothrow_t &) noexcept>(&::operator new),
        (void *)static_cast<void *(*)(size_t, std::align_val_t, const std::nothrow_t &) noexcept>(&::operator new[]),
        (void *)static_cast<void (*)(void *) noexcept>(&::operator delete),
        (void *)static_cast<void (*)(void *) noexcept>(&::operator delete[]),
        (void *)static_cast<void (*)(void *, size_t) noexcept>(&::operator delete),
        (void *)static_cast<void (*)(void *, size_t) noexcept>(&::operator delete[]),
        (void *)static_cast<void (*)(void *, const std::nothrow_t &) noexcept>(&::operator delete),
        (void *)static_cast<void (*)(void *, const std::nothrow_t &) noexcept>(&::operator delete[]),
        (void *)static_cast<void (*)(void *, std::align_val_t) noexcept>(&::operator delete),
        (void *)static_cast<void (*)(void *, std::align_val_t) noexcept>(&::operator delete[]),
        (void *)static_cast<void (*)(void *, size_t, std::align_val_t) noexcept>(&::operator delete),
        (void *)static_cast<void (*)(void *, size_t, std::align_val_t) noexcept>(&::operator delete[]),
        (void *)static_cast<void (*)(void *, std::align_val_t, const std::nothrow_t &) noexcept>(&::operator delete),
        (void *)static_cast<void (*)(void *, std::align_val_t, const std::nothrow_t &) noexcept>(&::operator delete[]),
    };
    int n = 0;
    for (void *f : fns) {
        Dl_info di;
        bool in = dladdr(f, &di) && di.dli_fname && strstr(di.dli_fname, want);
        CHECK(in, "form %d resolves to %s (%s)", n, di.dli_fname ? di.dli_fname : "?",
              di.dli_sname ? di.dli_sname : "?");
        n++;
    }
    fprintf(stderr, "%d forms of new and delete in %s\n", n, want);
}

/* For the heap profile: most of the live bytes at exit, through new. */
__attribute__((noinline)) static char *hold_cxx(void) {
    char *p = new char[1000];
    memset(p, 1, 1000);
    return p;
}
__attribute__((noinline)) static void *small_cxx(void) { return ::operator new(40); }

int main(int argc, char **argv) {
    bool sa = false, prof = false, linked_static = false;
    for (int i = 1; i < argc; i++) {
        linked_static |= !strcmp(argv[i], "static");
        sa |= !strcmp(argv[i], "sa") || linked_static;
        prof |= !strcmp(argv[i], "prof");
    }
    if (prof) {
        static char *keep[65536];
        for (int i = 0; i < 65536; i++) keep[i] = hold_cxx();
        for (int i = 0; i < 1000; i++) ::operator delete(small_cxx());
        printf("cxx prof: %d blocks held\n", 65536);
        return keep[0][0] == 1 ? 0 : 1;
    }
    forms();
    out_of_memory();
    double_delete(sa);
    if (sa) ours(linked_static);
    printf("cxx: %s\n", failures ? "FAILED" : "ok");
    return failures != 0;
}
