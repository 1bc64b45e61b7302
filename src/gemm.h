/* gemm: the skinny matrix products of the pointwise convolutions, row-major, where one side is
 * tens of thousands of pixel rows and the other a few dozen channels. OpenBLAS packs the long
 * operand (a copy of every activation, each call) and clears C before it adds; these read it in
 * place, keep a tile of C in registers and pack only the small weight matrix.
 *
 *   gemm_packed(c, a, gemm_pack(b, K, M, 0), N, K, M):  c (N,M)  = a (N,K) b (K,M)
 *   gemm_packed(c, a, gemm_pack(b, K, M, 1), N, K, M):  c (N,M)  = a (N,K) b^T, b (M,K)
 *   gemm_tn_add(c, a, g, N, K, M):                       c (K,M) += a^T g, a (N,K), g (N,M)
 *
 * Rows are split over the op threads; gemm_packed gives the same bits for any thread count,
 * gemm_tn_add for a given one. No allocation after the first call of a shape. */
#ifndef OFFNAS_GEMM_H
#define OFFNAS_GEMM_H

#include "simd.h"

void gemm_tn_add(float *c, const float *a, const float *g, int N, int K, int M);

/* The small matrix packed once for one or several gemm_packed calls (a product chunk by chunk):
 * gemm_pack packs b (K,M), or b^T when b is (M,K) and transposed != 0, into a buffer owned by
 * this module that stays valid until the next gemm_pack. */
const float *gemm_pack(const float *b, int K, int M, int transposed);
void gemm_packed(float *c, const float *a, const float *packed, int N, int K, int M);

/* The inference product with its epilogue: c (N,M) = act(a b * scale + shift + residual) per
 * column, residual (N,M) or NULL, act ReLU6 when relu6 else none; c must not alias a. Small
 * weights b (K,M) are read in place, large ones packed first (the buffer of gemm_pack). Each
 * row's sums run in the same order whatever N and the thread count, so a batch gives each
 * image the bits it gets alone. */
struct gemm_epilogue {
    const float *scale, *shift; /* M each */
    const float *residual;      /* (N,M), or NULL */
    int relu6;
};
void gemm_affine(float *c, const float *a, const float *b, int N, int K, int M,
                 const struct gemm_epilogue *e);

/* The epilogue on the sums v of columns j.. (16, 8 or 1 of them): act(v * scale + shift
 * [+ res]), res the residual at those columns or NULL (e->residual is not read). Shared by the
 * eval-mode kernels of gemm.c and op.c. */
static inline v16f gemm_epilogue16(v16f v, const struct gemm_epilogue *e, int j, const float *res)
{
    v = v * LD16(e->scale + j) + LD16(e->shift + j);
    if (res)
        v += LD16(res);
    return e->relu6 ? relu6_16(v) : v;
}

static inline v8f gemm_epilogue8(v8f v, const struct gemm_epilogue *e, int j, const float *res)
{
    v = v * LD8(e->scale + j) + LD8(e->shift + j);
    if (res)
        v += LD8(res);
    return e->relu6 ? relu6_8(v) : v;
}

static inline float gemm_epilogue1(float v, const struct gemm_epilogue *e, int j,
                                   const float *res)
{
    v = v * e->scale[j] + e->shift[j];
    if (res)
        v += *res;
    return e->relu6 ? relu6_1(v) : v;
}

#endif
