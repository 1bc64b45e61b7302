/* common: error reporting, logging and check macros shared by every module of the core.
 *
 * Library functions report failure by returning a non-zero int (or NULL) after calling
 * offnas_error(), which keeps one line describing the problem (naming the file, field or key).
 * The program prints that line once, prefixed "offnas: ", and exits non-zero.
 */
#ifndef OFFNAS_COMMON_H
#define OFFNAS_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Records a one-line error message (printf-style). Always returns -1, so callers can write
 * `return offnas_error("%s: truncated", path);`. The newest message replaces the older one. */
int offnas_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prepends "prefix: " to the recorded message (adds context on the way up). Returns -1. */
int offnas_error_context(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The last recorded message ("" if none). Owned by the library; valid until the next error. */
const char *offnas_last_error(void);

/* Progress and informational output to stderr. Quiet when offnas_log_quiet is set (tests,
 * non-zero MPI ranks). */
extern int offnas_log_quiet;
void offnas_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Monotonic wall clock in seconds. */
double offnas_now(void);
/* Sleeps ms milliseconds (nothing for ms <= 0), resumed after a signal. */
void offnas_sleep_ms(double ms);

/* The 64-bit FNV-1a offset basis: the seed of a hash over bytes that follow nothing. */
#define OFFNAS_FNV1A64_SEED 0xcbf29ce484222325ULL

/* 64-bit FNV-1a hash of the bytes data[0..bytes), starting from seed: OFFNAS_FNV1A64_SEED for
 * a fresh hash, or the hash of the bytes before them (hashing a then b from hash(a) gives
 * hash(a b)). The search-space fingerprints and the trainers' parameter checksums. */
uint64_t offnas_fnv1a64(const void *data, size_t bytes, uint64_t seed);

/* qsort comparison of two doubles, ascending (NaN is neither less nor greater). */
int offnas_compare_double(const void *a, const void *b);

/* Allocation that never returns NULL: out of memory is fatal (prints and aborts). Memory from
 * these is released with free(). */
void *offnas_malloc(size_t bytes);
void *offnas_calloc(size_t count, size_t size);
void *offnas_realloc(void *p, size_t bytes);

/* Invariant checks that stay on in release builds: a failure is a bug, not bad input. */
#define OFFNAS_ASSERT(cond)                                                                  \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "offnas: internal error at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                         \
        }                                                                                    \
    } while (0)

/* Propagates a failure: evaluates expr once and returns -1 from the caller if it is non-zero. */
#define OFFNAS_TRY(expr)        \
    do {                        \
        if ((expr) != 0)        \
            return -1;          \
    } while (0)

#define OFFNAS_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
