/* cfrac_like: bignum churn in one thread, in the spirit of the classic
 * `cfrac` benchmark (continued-fraction factoring, whose time goes into
 * arbitrary-precision arithmetic on small, short-lived, heap-allocated
 * numbers). Written from scratch: each round draws k small factors (k in
 * 2..48), builds their product with a balanced tree of bignum
 * multiplications (every product a fresh number, its operands freed), then
 * divides it back by the factors in a random order, half of the steps into a
 * fresh number and half in place with a realloc-shrunk digit array, checking
 * that every remainder is 0 and that 1 is left. A running accumulator is also
 * multiplied in place (realloc-grown digits) and reduced. A number is a
 * 32-byte header plus a separately allocated digit array (4..~200 B), both
 * checked (magic, length, non-zero top digit) before they are freed.
 * ops = bignum operations. threads = 1. */
#include "common.h"
#define WL "cfrac_like"
#define MAGIC 0xb16b00b5cafe1234ull

typedef struct { uint64_t magic; size_t n, cap; uint32_t *d; } big_t;
static uint64_t ops;

static big_t *big_new(size_t cap) {
    big_t *b = xmalloc(WL, sizeof(big_t));
    if (cap < 1) cap = 1;
    b->magic = MAGIC; b->n = 0; b->cap = cap;
    b->d = xmalloc(WL, cap * sizeof(uint32_t));
    return b;
}
static void big_check(const big_t *b) {
    if (b->magic != MAGIC || b->n > b->cap || (b->n && b->d[b->n - 1] == 0))
        die(WL, "content mismatch (bignum header)", (void *)b, b->n);
}
static void big_free(big_t *b) {
    big_check(b);
    b->magic = 0;
    free(b->d);
    free(b);
}
static void big_norm(big_t *b) { while (b->n && b->d[b->n - 1] == 0) b->n--; }
static big_t *big_small(uint32_t v) {
    big_t *b = big_new(1 + (v & 3));      /* vary the initial capacity */
    b->d[0] = v; b->n = v ? 1 : 0;
    return b;
}
static big_t *big_mul(const big_t *a, const big_t *b) {   /* fresh a*b */
    big_check(a); big_check(b);
    big_t *c = big_new(a->n + b->n);
    memset(c->d, 0, (a->n + b->n) * sizeof(uint32_t));
    for (size_t i = 0; i < a->n; i++) {
        uint64_t carry = 0;
        for (size_t j = 0; j < b->n; j++) {
            uint64_t t = (uint64_t)a->d[i] * b->d[j] + c->d[i + j] + carry;
            c->d[i + j] = (uint32_t)t; carry = t >> 32;
        }
        c->d[i + b->n] = (uint32_t)carry;
    }
    c->n = a->n + b->n; big_norm(c);
    ops++;
    return c;
}
static void big_mul_small_inplace(big_t *a, uint32_t m) { /* grows with realloc */
    big_check(a);
    uint64_t carry = 0;
    for (size_t i = 0; i < a->n; i++) {
        uint64_t t = (uint64_t)a->d[i] * m + carry;
        a->d[i] = (uint32_t)t; carry = t >> 32;
    }
    if (carry) {
        if (a->n == a->cap) {
            size_t nc = a->cap + 1 + a->cap / 4;
            uint32_t *nd = realloc(a->d, nc * sizeof(uint32_t));
            if (!nd) die(WL, "malloc returned NULL (realloc)", a->d, nc * 4);
            a->d = nd; a->cap = nc;
        }
        a->d[a->n++] = (uint32_t)carry;
    }
    ops++;
}
/* a / m; returns the remainder. fresh != 0: quotient in a new number (a is
 * freed), else in place, shrinking the digit array with realloc. */
static big_t *big_div_small(big_t *a, uint32_t m, uint32_t *rem, int fresh) {
    big_check(a);
    big_t *q = fresh ? big_new(a->n) : a;
    uint64_t r = 0;
    for (size_t i = a->n; i-- > 0;) {
        uint64_t cur = (r << 32) | a->d[i];
        q->d[i] = (uint32_t)(cur / m); r = cur % m;
    }
    q->n = a->n; big_norm(q);
    if (fresh) big_free(a);
    else if (q->cap > 4 && q->n < q->cap / 2) {
        size_t nc = q->n + 1;
        uint32_t *nd = realloc(q->d, nc * sizeof(uint32_t));
        if (!nd) die(WL, "malloc returned NULL (realloc)", q->d, nc * 4);
        q->d = nd; q->cap = nc;
    }
    *rem = (uint32_t)r;
    ops++;
    return q;
}
static big_t *tree_product(big_t **v, size_t k) {          /* frees v[] */
    while (k > 1) {
        size_t j = 0;
        for (size_t i = 0; i + 1 < k; i += 2) {
            big_t *p = big_mul(v[i], v[i + 1]);
            big_free(v[i]); big_free(v[i + 1]);
            v[j++] = p;
        }
        if (k & 1) v[j++] = v[k - 1];
        k = j;
    }
    return v[0];
}

int main(int argc, char **argv) {
    double scale = arg_scale(argc, argv);
    uint64_t rounds = (uint64_t)(240000 * scale); if (rounds < 1) rounds = 1;
    rng_t r; rng_seed(&r, 42);
    uint32_t f[48], order[48];
    big_t *v[48];
    big_t *acc = big_small(1);
    uint64_t acc_mults = 0;
    double t0 = now_sec();
    for (uint64_t round = 0; round < rounds; round++) {
        size_t k = 2 + rng_below(&r, 47);
        for (size_t i = 0; i < k; i++) {
            f[i] = 2 + (uint32_t)rng_below(&r, 0xfffffff0u);
            v[i] = big_small(f[i]);
            order[i] = (uint32_t)i;
        }
        big_t *p = tree_product(v, k);
        for (size_t i = k; i > 1; i--) {                  /* shuffle the division order */
            size_t j = rng_below(&r, i);
            uint32_t t = order[i - 1]; order[i - 1] = order[j]; order[j] = t;
        }
        for (size_t i = 0; i < k; i++) {
            uint32_t rem;
            p = big_div_small(p, f[order[i]], &rem, (int)(rng_next(&r) & 1));
            if (rem) die(WL, "content mismatch (non-zero remainder)", p, i);
        }
        if (p->n != 1 || p->d[0] != 1) die(WL, "content mismatch (quotient != 1)", p, p->n);
        big_free(p);
        /* the accumulator: grows by a few factors, shrinks by one sometimes */
        uint32_t m = 3 + (uint32_t)rng_below(&r, 1000);
        big_mul_small_inplace(acc, m); acc_mults++;
        if (acc->n > 40) {                               /* keep it bounded: restart */
            big_free(acc); acc = big_small(1);
        }
    }
    big_free(acc);
    double t1 = now_sec();
    (void)acc_mults;
    report(WL, 1, ops, t1 - t0);
    return 0;
}
