/* check: range, finiteness and length checks of values read back from files (see check.h). */
#define _POSIX_C_SOURCE 200809L
#include "check.h"

#include "common.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <string.h>

int check_int64(const char *file, const char *field, int64_t value, int64_t lo, int64_t hi,
                int *out)
{
    OFFNAS_ASSERT(lo >= INT32_MIN && hi <= INT32_MAX && lo <= hi);
    if (value < lo || value > hi)
        return offnas_error("%s: %s: %" PRId64 " is not in %" PRId64 "..%" PRId64, file, field,
                            value, lo, hi);
    *out = (int)value;
    return 0;
}

int check_int64_long(const char *file, const char *field, int64_t value, int64_t lo, int64_t hi,
                     long *out)
{
    OFFNAS_ASSERT(lo >= (int64_t)LONG_MIN && hi <= (int64_t)LONG_MAX && lo <= hi);
    if (value < lo || value > hi)
        return offnas_error("%s: %s: %" PRId64 " is not in %" PRId64 "..%" PRId64, file, field,
                            value, lo, hi);
    *out = (long)value;
    return 0;
}

int check_double(const char *file, const char *field, double value, double lo, double hi)
{
    if (!isfinite(value) || value < lo || value > hi)
        return offnas_error("%s: %s: %g is not a number in [%g, %g]", file, field, value, lo, hi);
    return 0;
}

int check_floats(const char *file, const char *field, const float *x, size_t n, double lo,
                 double hi)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]) || x[i] < lo || x[i] > hi)
            return offnas_error("%s: %s[%zu]: %g is not a number in [%g, %g]", file, field, i,
                                (double)x[i], lo, hi);
    return 0;
}

int check_doubles(const char *file, const char *field, const double *x, size_t n, double lo,
                  double hi)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]) || x[i] < lo || x[i] > hi)
            return offnas_error("%s: %s[%zu]: %g is not a number in [%g, %g]", file, field, i,
                                x[i], lo, hi);
    return 0;
}

int check_string(const char *file, const char *field, const char *s, size_t size)
{
    if (!s)
        return offnas_error("%s: %s: not a string", file, field);
    if (strnlen(s, size) >= size)
        return offnas_error("%s: %s: longer than %zu characters", file, field, size - 1);
    return 0;
}

int check_finite_floats(const char *file, const char *field, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return offnas_error("%s: %s[%zu]: %g is not a finite number", file, field, i,
                                (double)x[i]);
    return 0;
}
