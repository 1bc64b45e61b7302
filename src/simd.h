/* simd: the vector types of the engine's kernels, as GCC vector extensions, so one source is
 * AVX-512/AVX2 code on the cluster and NEON code on the device build: v16f is one zmm register
 * or four NEON ones, v8f one ymm or two. Loads and stores through the _u types allow any
 * float-aligned address. */
#ifndef OFFNAS_SIMD_H
#define OFFNAS_SIMD_H

#include <omp.h>

/* for (int i = 0; i < n; i++) body: over the op threads when parallel is true and more than one
 * is set, else serially without entering a parallel region (libgomp allocates a team even for
 * an idle `parallel if (0)`: about 25 allocations per batch-1 forward). */
#define KERNEL_FOR(i, n, parallel, ...)                                                           \
    do {                                                                                          \
        int kernel_n_ = (n);                                                                      \
        if ((parallel) && omp_get_max_threads() > 1) {                                            \
            _Pragma("omp parallel for schedule(static)") for (int i = 0; i < kernel_n_; i++)     \
            {                                                                                     \
                __VA_ARGS__;                                                                      \
            }                                                                                     \
        } else {                                                                                  \
            for (int i = 0; i < kernel_n_; i++) {                                                 \
                __VA_ARGS__;                                                                      \
            }                                                                                     \
        }                                                                                         \
    } while (0)

typedef float v16f __attribute__((vector_size(64)));
typedef float v8f __attribute__((vector_size(32)));
typedef int v16i __attribute__((vector_size(64)));
typedef int v8i __attribute__((vector_size(32)));
typedef v16f v16f_u __attribute__((aligned(4)));
typedef v8f v8f_u __attribute__((aligned(4)));

#define LD16(p) (*(const v16f_u *)(p))
#define ST16(p, v) (*(v16f_u *)(p) = (v))
#define LD8(p) (*(const v8f_u *)(p))
#define ST8(p, v) (*(v8f_u *)(p) = (v))

/* min(max(v, 0), 6) lane by lane (a NaN lane becomes 0). */
static inline v16f relu6_16(v16f v)
{
    const v16f zero = {0}, six = zero + 6.0f;
    v = (v16f)((v16i)v & (v > zero));
    v16i big = v > six;
    return (v16f)(((v16i)v & ~big) | ((v16i)six & big));
}

static inline v8f relu6_8(v8f v)
{
    const v8f zero = {0}, six = zero + 6.0f;
    v = (v8f)((v8i)v & (v > zero));
    v8i big = v > six;
    return (v8f)(((v8i)v & ~big) | ((v8i)six & big));
}

static inline float relu6_1(float v)
{
    v = v > 0.0f ? v : 0.0f;
    return v > 6.0f ? 6.0f : v;
}

#endif
