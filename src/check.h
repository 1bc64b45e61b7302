/* check: the validation layer for what offnas reads back (profiles, checkpoints, arch.json,
 * model.h5, data files, CSV tables). Every loader passes each value through one of these
 * before it trusts it: an integer is range-checked before it is narrowed, a float must be
 * finite and inside plausible bounds, a string must fit the buffer it goes to. A failure
 * records one line naming the file, the field and what is wrong, and returns -1:
 *
 *     int split;
 *     if (check_int64(path, "split_point", raw, 0, L + 1, &split) ||
 *         check_floats(path, "/device/table", table, n, 0, CHECK_MAX_LATENCY_MS))
 *         return -1;   // "runs/a/arch.json: split_point: 4294967298 is not in 0..9"
 */
#ifndef OFFNAS_CHECK_H
#define OFFNAS_CHECK_H

#include <stddef.h>
#include <stdint.h>

/* A latency above an hour for one op or one piece of the network is not a measurement. */
#define CHECK_MAX_LATENCY_MS 3.6e6

/* *out = value if lo <= value <= hi (lo, hi within int); else -1 with
 * "FILE: FIELD: VALUE is not in LO..HI". */
int check_int64(const char *file, const char *field, int64_t value, int64_t lo, int64_t hi,
                int *out);

/* Same for a long (counters, sizes). */
int check_int64_long(const char *file, const char *field, int64_t value, int64_t lo, int64_t hi,
                     long *out);

/* value is finite and lo <= value <= hi; else -1 with "FILE: FIELD: VALUE is not a number in
 * [LO, HI]" (NaN and inf named as such). */
int check_double(const char *file, const char *field, double value, double lo, double hi);

/* Every x[i] (i < n) is finite and in [lo, hi]; else -1 naming the first bad index
 * ("FILE: FIELD[i]: nan is not a number in [LO, HI]"). */
int check_floats(const char *file, const char *field, const float *x, size_t n, double lo,
                 double hi);
int check_doubles(const char *file, const char *field, const double *x, size_t n, double lo,
                  double hi);

/* s is not NULL and strlen(s) < size (it fits a buffer of size bytes with its NUL); else -1
 * with "FILE: FIELD: longer than N characters". */
int check_string(const char *file, const char *field, const char *s, size_t size);

/* Every x[i] (i < n) is finite, whatever its size (weights, momentum); else -1 naming the
 * first bad index ("FILE: FIELD[i]: nan is not a finite number"). */
int check_finite_floats(const char *file, const char *field, const float *x, size_t n);

#endif
