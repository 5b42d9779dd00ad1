/*
 * primes counts the primes in [LO, HI) like samples/wasm/primes, in C:
 * "LO HI" on stdin, the count on stdout, errors on stderr with exit 1.
 * Build it as a WASI command module with Debian's clang and wasi-libc:
 *
 *   clang --target=wasm32-wasi -O2 -o primes-c.wasm primes.c
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SEG = 1 << 18 };
#define MAX_SPAN 1000000000ULL

static uint64_t isqrt(uint64_t n) {
    uint64_t r = 0;
    for (uint64_t bit = 1ULL << 62; bit > 0; bit >>= 2) {
        if (r + bit <= n) {
            n -= r + bit;
            r = (r >> 1) + bit;
        } else {
            r >>= 1;
        }
    }
    return r;
}

static uint64_t count(uint64_t lo, uint64_t hi) {
    if (hi <= 2)
        return 0;
    if (lo < 2)
        lo = 2;
    uint64_t limit = isqrt(hi - 1) + 1;
    unsigned char *comp = calloc(limit, 1);
    uint64_t *small = malloc(sizeof(uint64_t) * (limit / 2 + 2));
    unsigned char *seg = malloc(SEG);
    if (!comp || !small || !seg) {
        fputs("primes: out of memory\n", stderr);
        exit(1);
    }
    size_t ns = 0;
    for (uint64_t i = 2; i < limit; i++) {
        if (!comp[i]) {
            small[ns++] = i;
            for (uint64_t m = i * i; m < limit; m += i)
                comp[m] = 1;
        }
    }
    uint64_t n = 0;
    for (uint64_t start = lo; start < hi; start += SEG) {
        uint64_t end = start + SEG < hi ? start + SEG : hi;
        memset(seg, 0, SEG);
        for (size_t k = 0; k < ns; k++) {
            uint64_t p = small[k];
            if (p * p >= end)
                break;
            uint64_t first = (start + p - 1) / p * p;
            if (first < p * p)
                first = p * p;
            for (uint64_t m = first; m < end; m += p)
                seg[m - start] = 1;
        }
        for (uint64_t i = 0; i < end - start; i++)
            n += !seg[i];
    }
    free(comp);
    free(small);
    free(seg);
    return n;
}

int main(void) {
    uint64_t lo, hi;
    if (scanf("%" SCNu64 " %" SCNu64, &lo, &hi) != 2) {
        fputs("primes: want \"LO HI\" on stdin\n", stderr);
        return 1;
    }
    if (lo > hi || hi - lo > MAX_SPAN || hi > (1ULL << 62)) {
        fputs("primes: want LO <= HI, HI - LO at most 1e9, HI at most 2^62\n", stderr);
        return 1;
    }
    printf("%" PRIu64 "\n", count(lo, hi));
    return 0;
}
