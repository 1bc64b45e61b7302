/* common: the error buffer, logging, checked allocation, hashing and comparison. */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

/* per thread: the edge server's workers report errors at the same time */
static _Thread_local char error_message[1024];
int offnas_log_quiet = 0;

int offnas_error(const char *fmt, ...)
{
    /* format aside first: an argument may be offnas_last_error() itself (adding context to
     * the previous message), which vsnprintf must not overwrite while reading it */
    char message[sizeof error_message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    memcpy(error_message, message, sizeof error_message);
    return -1;
}

int offnas_error_context(const char *fmt, ...)
{
    char prefix[512], old[sizeof error_message];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, error_message, sizeof old);
    size_t len = strlen(prefix);
    if (len > sizeof error_message - 3)
        len = sizeof error_message - 3;
    memcpy(error_message, prefix, len);
    memcpy(error_message + len, ": ", 2);
    size_t room = sizeof error_message - len - 3;
    size_t old_len = strnlen(old, room);
    memcpy(error_message + len + 2, old, old_len);
    error_message[len + 2 + old_len] = 0;
    return -1;
}

const char *offnas_last_error(void) { return error_message; }

void offnas_log(const char *fmt, ...)
{
    if (offnas_log_quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fflush(stderr);
}

double offnas_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void offnas_sleep_ms(double ms)
{
    if (ms <= 0)
        return;
    struct timespec t = {(time_t)(ms / 1000.0), (long)(fmod(ms, 1000.0) * 1e6)};
    while (nanosleep(&t, &t) < 0)
        ;
}

uint64_t offnas_fnv1a64(const void *data, size_t bytes, uint64_t seed)
{
    const unsigned char *b = data;
    uint64_t h = seed;
    for (size_t i = 0; i < bytes; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL; /* the 64-bit FNV prime */
    return h;
}

int offnas_compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void *offnas_malloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "offnas: out of memory allocating %zu bytes\n", bytes);
        abort();
    }
    return p;
}

void *offnas_calloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) {
        fprintf(stderr, "offnas: out of memory allocating %zu x %zu bytes\n", count, size);
        abort();
    }
    return p;
}

void *offnas_realloc(void *p, size_t bytes)
{
    void *q = realloc(p, bytes ? bytes : 1);
    if (!q) {
        fprintf(stderr, "offnas: out of memory allocating %zu bytes\n", bytes);
        abort();
    }
    return q;
}
