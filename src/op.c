/* op: forward/backward pairs of every layer type (see op.h for shapes and conventions).
 * GEMMs go to OpenBLAS; the memory-bound ops are loops over channels (the contiguous NHWC
 * axis) so they vectorise, split over threads by batch or by pixel ranges. */
#include "op.h"

#include "common.h"
#include "gemm.h"
#include "simd.h"

#include <cblas.h>
#include <ctype.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

static int op_threads = 1;

void op_set_threads(int threads)
{
    if (threads <= 0)
        threads = omp_get_num_procs();
    op_threads = threads;
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
}

int op_get_threads(void) { return op_threads; }

const char *op_blas_core(void) { return openblas_get_corename(); }

/* Per-thread scratch for parameter-gradient partial sums, grown (never shrunk) as needed:
 * after the first training step no call allocates. */
static float *scratch;
static size_t scratch_floats;

static float *scratch_get(size_t floats)
{
    if (floats > scratch_floats) {
        free(scratch);
        scratch = offnas_malloc(floats * sizeof(float));
        scratch_floats = floats;
    }
    return scratch;
}

/* ------------------------------------------------------------------------------------------ */
/* v (the sums of channels c..c+7, or of channel c) through the inference epilogue e of the
 * *_affine_forward ops (no residual), or as is when e is NULL. */
static inline v8f affine_out8(v8f v, const struct gemm_epilogue *e, int c)
{
    return e ? gemm_epilogue8(v, e, c, NULL) : v;
}

static inline float affine_out1(float v, const struct gemm_epilogue *e, int c)
{
    return e ? gemm_epilogue1(v, e, c, NULL) : v;
}

/* ------------------------------------------------------------------------------------------ */
/* dense convolution: im2col + sgemm */

/* Rows b*Ho+oy of col: one per output pixel, its k*k*Ci taps (zero outside the image). A tap
 * is a few channels (1 or 3 at the stem), so a loop beats a call to memcpy per tap. */
static void im2col_row(float *col, const float *in, int b, int oy, int H, int W, int Ci, int k,
                       int stride, int Ho, int Wo)
{
    int pad = k / 2;
    size_t row = (size_t)k * k * Ci;
    float *dst = col + ((size_t)b * Ho + oy) * Wo * row;
    for (int ox = 0; ox < Wo; ox++)
        for (int ky = 0; ky < k; ky++) {
            int iy = oy * stride + ky - pad;
            for (int kx = 0; kx < k; kx++, dst += Ci) {
                int ix = ox * stride + kx - pad;
                if (iy < 0 || iy >= H || ix < 0 || ix >= W) {
                    for (int c = 0; c < Ci; c++)
                        dst[c] = 0.0f;
                    continue;
                }
                const float *src = in + (((size_t)b * H + iy) * W + ix) * Ci;
                for (int c = 0; c < Ci; c++)
                    dst[c] = src[c];
            }
        }
}

static void im2col(float *col, const float *in, int B, int H, int W, int Ci, int k, int stride,
                   int Ho, int Wo)
{
    KERNEL_FOR(r, B * Ho, B * Ho > 8,
               im2col_row(col, in, r / Ho, r % Ho, H, W, Ci, k, stride, Ho, Wo));
}

static void col2im(float *din, const float *dcol, int B, int H, int W, int Ci, int k, int stride,
                   int Ho, int Wo)
{
    int pad = k / 2;
    size_t row = (size_t)k * k * Ci;
#pragma omp parallel for schedule(static) if (B > 1)
    for (int b = 0; b < B; b++) {
        float *dimg = din + (size_t)b * H * W * Ci;
        memset(dimg, 0, (size_t)H * W * Ci * sizeof(float));
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Wo; ox++) {
                const float *src = dcol + (((size_t)b * Ho + oy) * Wo + ox) * row;
                for (int ky = 0; ky < k; ky++) {
                    int iy = oy * stride + ky - pad;
                    for (int kx = 0; kx < k; kx++, src += Ci) {
                        int ix = ox * stride + kx - pad;
                        if (iy < 0 || iy >= H || ix < 0 || ix >= W)
                            continue;
                        float *d = dimg + ((size_t)iy * W + ix) * Ci;
                        for (int c = 0; c < Ci; c++)
                            d[c] += src[c];
                    }
                }
            }
    }
}

void op_conv_forward(float *out, float *col, const float *in, const float *w, int B, int H, int W,
                     int Ci, int Co, int k, int stride)
{
    int Ho = op_conv_out_size(H, k, stride), Wo = op_conv_out_size(W, k, stride);
    int M = B * Ho * Wo, K = k * k * Ci;
    im2col(col, in, B, H, W, Ci, k, stride, Ho, Wo);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, Co, K, 1.0f, col, K, w, Co, 0.0f,
                out, Co);
}

/* The output columns [*lo, *hi] of a k x k window (padding k/2) on a row of W whose every
 * column tap is inside the row: ox*stride - pad >= 0 and ox*stride - pad + k - 1 <= W - 1. */
static inline void inside_columns(int W, int k, int stride, int *lo, int *hi)
{
    int pad = k / 2;
    *lo = (pad + stride - 1) / stride;
    *hi = W - k + pad >= 0 ? (W - k + pad) / stride : -1;
}

/* The taps of output (oy, ox) of a k x k window (padding k/2) that fall inside an H x W image
 * img: their input pixels (pixel floats apart) into xs and their weights (tap floats apart
 * from w) into ws, kernel rows first. Returns how many. */
static inline int window_taps(const float **xs, const float **ws, const float *img,
                              const float *w, int oy, int ox, int H, int W, size_t pixel,
                              size_t tap, int k, int stride)
{
    int pad = k / 2, taps = 0;
    for (int ky = 0; ky < k; ky++) {
        int iy = oy * stride + ky - pad;
        if (iy < 0 || iy >= H)
            continue;
        for (int kx = 0; kx < k; kx++) {
            int ix = ox * stride + kx - pad;
            if (ix < 0 || ix >= W)
                continue;
            xs[taps] = img + ((size_t)iy * W + ix) * pixel;
            ws[taps++] = w + ((size_t)ky * k + kx) * tap;
        }
    }
    return taps;
}

/* out[p][j..j+W-1] of op_conv_affine_forward, W = 16, 8 or 1 (a constant once inlined): the
 * taps of pixel p inside the image, each input channel broadcast against W weights. */
static inline __attribute__((always_inline)) void
conv_pixel(float *o, const float *in, const float *w, const struct gemm_epilogue *e, int b,
           int oy, int ox, int H, int Wd, int Ci, int Co, int k, int stride, int j, int width)
{
    v16f acc = {0};
    v8f half = {0};
    float one = 0.0f;
    const float *xs[49], *ws[49];
    int taps = window_taps(xs, ws, in + (size_t)b * H * Wd * Ci, w + j, oy, ox, H, Wd,
                           (size_t)Ci, (size_t)Ci * Co, k, stride);
    for (int t = 0; t < taps; t++) {
        const float *x = xs[t], *wt = ws[t];
        for (int c = 0; c < Ci; c++, wt += Co) {
            if (width == 16)
                acc += x[c] * LD16(wt);
            else if (width == 8)
                half += x[c] * LD8(wt);
            else
                one += x[c] * wt[0];
        }
    }
    if (width == 16)
        ST16(o + j, gemm_epilogue16(acc, e, j, NULL));
    else if (width == 8)
        ST8(o + j, gemm_epilogue8(half, e, j, NULL));
    else
        o[j] = gemm_epilogue1(one, e, j, NULL);
}

/* conv_pixel's 16 channels from j for CONV_PIXELS neighbouring pixels of a row whose every
 * column tap is inside the image: each weight vector loaded once for all of them. The same
 * sums in the same order as conv_pixel. */
#define CONV_PIXELS 8
static void conv_pixels16(float *o, const float *in, const float *w,
                          const struct gemm_epilogue *e, int b, int oy, int ox, int H, int Wd,
                          int Ci, int Co, int k, int stride, int j)
{
    int pad = k / 2;
    v16f acc[CONV_PIXELS];
    for (int p = 0; p < CONV_PIXELS; p++)
        acc[p] = (v16f){0};
    size_t step = (size_t)stride * Ci;
    for (int ky = 0; ky < k; ky++) {
        int iy = oy * stride + ky - pad;
        if (iy < 0 || iy >= H)
            continue;
        for (int kx = 0; kx < k; kx++) {
            const float *x = in + (((size_t)b * H + iy) * Wd + ox * stride + kx - pad) * Ci;
            const float *wt = w + (size_t)(ky * k + kx) * Ci * Co + j;
            for (int c = 0; c < Ci; c++, wt += Co) {
                v16f wv = LD16(wt);
                for (int p = 0; p < CONV_PIXELS; p++)
                    acc[p] += x[p * step + c] * wv;
            }
        }
    }
    for (int p = 0; p < CONV_PIXELS; p++)
        ST16(o + (size_t)p * Co + j, gemm_epilogue16(acc[p], e, j, NULL));
}

/* A dense convolution of few input channels (the stem) computed directly, without im2col:
 * per output pixel a vector of output channels over the taps. */
void op_conv_affine_forward(float *out, const float *in, const float *w, const float *scale,
                            const float *shift, int B, int H, int W, int Ci, int Co, int k,
                            int stride, int relu6)
{
    int Ho = op_conv_out_size(H, k, stride), Wo = op_conv_out_size(W, k, stride);
    const struct gemm_epilogue e = {.scale = scale, .shift = shift, .relu6 = relu6};
    int in_lo, in_hi;
    inside_columns(W, k, stride, &in_lo, &in_hi);
    for (int b = 0; b < B; b++)
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Wo; ox++) {
                float *o = out + (((size_t)b * Ho + oy) * Wo + ox) * Co;
                if (Co % 16 == 0 && ox >= in_lo && ox + CONV_PIXELS - 1 <= in_hi) {
                    for (int j = 0; j < Co; j += 16)
                        conv_pixels16(o, in, w, &e, b, oy, ox, H, W, Ci, Co, k, stride, j);
                    ox += CONV_PIXELS - 1;
                    continue;
                }
                int j = 0;
                for (; j + 16 <= Co; j += 16)
                    conv_pixel(o, in, w, &e, b, oy, ox, H, W, Ci, Co, k, stride, j, 16);
                for (; j + 8 <= Co; j += 8)
                    conv_pixel(o, in, w, &e, b, oy, ox, H, W, Ci, Co, k, stride, j, 8);
                for (; j < Co; j++)
                    conv_pixel(o, in, w, &e, b, oy, ox, H, W, Ci, Co, k, stride, j, 1);
            }
}

void op_conv_backward(float *din, float *dw, float *dcol, const float *dout, const float *col,
                      const float *w, int B, int H, int W, int Ci, int Co, int k, int stride)
{
    int Ho = op_conv_out_size(H, k, stride), Wo = op_conv_out_size(W, k, stride);
    int M = B * Ho * Wo, K = k * k * Ci;
    /* dw (K,Co) += col^T (K,M) @ dout (M,Co) */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, Co, M, 1.0f, col, K, dout, Co, 1.0f,
                dw, Co);
    if (!din)
        return;
    /* dcol (M,K) = dout (M,Co) @ w^T (Co,K) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, K, Co, 1.0f, dout, Co, w, Co, 0.0f,
                dcol, K);
    col2im(din, dcol, B, H, W, Ci, k, stride, Ho, Wo);
}

/* ------------------------------------------------------------------------------------------ */
/* pointwise convolution */

/* Below this many pixel rows (batch-1 inference: 49 to 784) packing the weights for gemm.c
 * costs more than it saves: at 49 rows gemm.c took 1.4-2x OpenBLAS's time on the default
 * network's shapes, at 196 about the same, from 784 rows on it is faster. */
#define POINTWISE_GEMM_MIN_ROWS 512

/* The one choice between the two for a pointwise op over N rows in all, so a product done
 * chunk by chunk runs on the GEMM of the whole one: w (K,C), or (C,K) with trans_w, packed for
 * gemm.c, or NULL for OpenBLAS. */
static const float *pointwise_pack(const float *w, int N, int K, int C, int trans_w)
{
    return N < POINTWISE_GEMM_MIN_ROWS ? NULL : gemm_pack(w, K, C, trans_w);
}

/* out (m,C) = a (m,K) w, by the GEMM pointwise_pack chose (packed from w, or NULL). */
static void pointwise_rows(float *out, const float *a, const float *w, const float *packed,
                           int trans_w, int m, int K, int C)
{
    if (packed)
        gemm_packed(out, a, packed, m, K, C);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_w ? CblasTrans : CblasNoTrans, m, C, K,
                    1.0f, a, K, w, trans_w ? K : C, 0.0f, out, C);
}

/* dw (K,C) += a^T g over m rows (a (m,K), g (m,C)), by the GEMM chosen for N rows in all. */
static void pointwise_wgrad(float *dw, const float *a, const float *g, int N, int m, int K, int C)
{
    if (N < POINTWISE_GEMM_MIN_ROWS)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, C, m, 1.0f, a, K, g, C, 1.0f, dw,
                    C);
    else
        gemm_tn_add(dw, a, g, m, K, C);
}

void op_pointwise_forward(float *out, const float *in, const float *w, int N, int Ci, int Co)
{
    pointwise_rows(out, in, w, pointwise_pack(w, N, Ci, Co, 0), 0, N, Ci, Co);
}

void op_pointwise_affine_forward(float *out, const float *in, const float *w, const float *scale,
                                 const float *shift, const float *residual, int N, int Ci, int Co,
                                 int relu6)
{
    const struct gemm_epilogue e = {scale, shift, residual, relu6};
    gemm_affine(out, in, w, N, Ci, Co, &e);
}

void op_pointwise_backward(float *din, float *dw, const float *dout, const float *in,
                           const float *w, int N, int Ci, int Co)
{
    if (dw)
        pointwise_wgrad(dw, in, dout, N, N, Ci, Co);
    if (din)
        pointwise_rows(din, dout, w, pointwise_pack(w, N, Co, Ci, 1), 1, N, Co, Ci);
}

/* ------------------------------------------------------------------------------------------ */
/* depthwise convolution
 *
 * NHWC puts channels innermost, so every kernel below holds 32 channels of one output (or
 * input) pixel in four 8-wide vector registers while it walks the taps, and touches memory
 * once per tap instead of once per tap and per partial sum. GCC's vector extensions keep this
 * portable (plain C on a CPU without AVX). */


/* out[c] = sum over the listed taps of x_tap[c] * w_tap[c]; taps given as pointer pairs. */
static inline void dw_dot(float *restrict out, const float *const *xs, const float *const *ws,
                          int taps, int C, const struct gemm_epilogue *e)
{
    int c = 0;
    for (; c + 32 <= C; c += 32) {
        v8f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        for (int t = 0; t < taps; t++) {
            const float *x = xs[t] + c, *w = ws[t] + c;
            a0 += LD8(x) * LD8(w);
            a1 += LD8(x + 8) * LD8(w + 8);
            a2 += LD8(x + 16) * LD8(w + 16);
            a3 += LD8(x + 24) * LD8(w + 24);
        }
        ST8(out + c, affine_out8(a0, e, c));
        ST8(out + c + 8, affine_out8(a1, e, c + 8));
        ST8(out + c + 16, affine_out8(a2, e, c + 16));
        ST8(out + c + 24, affine_out8(a3, e, c + 24));
    }
    for (; c + 8 <= C; c += 8) {
        v8f a0 = {0};
        for (int t = 0; t < taps; t++)
            a0 += LD8(xs[t] + c) * LD8(ws[t] + c);
        ST8(out + c, affine_out8(a0, e, c));
    }
    for (; c < C; c++) {
        float a = 0.0f;
        for (int t = 0; t < taps; t++)
            a += xs[t][c] * ws[t][c];
        out[c] = affine_out1(a, e, c);
    }
}

/* dw_dot for DW_PIXELS neighbouring outputs of a row at once: pixel p's taps are the first
 * pixel's xs[t] + p * x_step, so each weight load serves DW_PIXELS pixels. The same sums in the
 * same order as dw_dot, pixel by pixel. */
#define DW_PIXELS 4
static inline void dw_dot_row(float *restrict out, const float *const *xs, size_t x_step,
                              const float *const *ws, int taps, int C,
                              const struct gemm_epilogue *e)
{
    int c = 0;
    for (; c + 16 <= C; c += 16) {
        v8f a[DW_PIXELS][2] = {{{0}}};
        for (int t = 0; t < taps; t++) {
            v8f w0 = LD8(ws[t] + c), w1 = LD8(ws[t] + c + 8);
            const float *x = xs[t] + c;
            for (int p = 0; p < DW_PIXELS; p++) {
                a[p][0] += LD8(x + p * x_step) * w0;
                a[p][1] += LD8(x + p * x_step + 8) * w1;
            }
        }
        for (int p = 0; p < DW_PIXELS; p++) {
            ST8(out + (size_t)p * C + c, affine_out8(a[p][0], e, c));
            ST8(out + (size_t)p * C + c + 8, affine_out8(a[p][1], e, c + 8));
        }
    }
    for (; c + 8 <= C; c += 8) {
        v8f a[DW_PIXELS] = {{0}};
        for (int t = 0; t < taps; t++) {
            v8f w0 = LD8(ws[t] + c);
            for (int p = 0; p < DW_PIXELS; p++)
                a[p] += LD8(xs[t] + c + p * x_step) * w0;
        }
        for (int p = 0; p < DW_PIXELS; p++)
            ST8(out + (size_t)p * C + c, affine_out8(a[p], e, c));
    }
    for (; c < C; c++)
        for (int p = 0; p < DW_PIXELS; p++) {
            float acc = 0.0f;
            for (int t = 0; t < taps; t++)
                acc += xs[t][c + p * x_step] * ws[t][c];
            out[(size_t)p * C + c] = affine_out1(acc, e, c);
        }
}

/* DW_TILE neighbouring outputs ox0.. of a depthwise output row, every channel (8k of them),
 * kernel K, stride S (constants once inlined), as a sliding window: the outputs keep their sums
 * in registers, and each input pixel of a kernel row is loaded once and multiplied into every
 * output whose window holds it, with that row's K weight vectors also in registers. dw_dot
 * loads K inputs per output and kernel row; this loads (DW_TILE - 1) * S + K for DW_TILE
 * outputs. Taps outside the row read as zeros (a zero product leaves a finite sum's bits
 * alone, so it is as if skipped). Per output the same taps in the same order (kernel rows,
 * then columns left to right), so the same bits as dw_dot.
 *
 * The tile's place in the row, a constant like K and S, so the tests of which taps lie inside
 * fold away except in DW_ANY: */
enum {
    DW_INSIDE, /* every tap inside */
    DW_LEFT,   /* ox0 = 0: the first pad taps outside, none at the right */
    DW_RIGHT,  /* ox0 = Wo - DW_TILE with W = S * Wo: taps past S * DW_TILE + pad outside */
    DW_RIGHT1, /* the same with W = S * Wo - 1 (stride 2, odd W) */
    DW_ANY,    /* anything else: taps tested, outputs past the row not stored */
    DW_PLACES
};
#define DW_TILE 4
#define DW_SPAN ((DW_TILE - 1) * 2 + 7) /* inputs under a tile, at most (stride 2, k 7) */
static inline __attribute__((always_inline)) void
dw_tile(float *orow, const float *img, const float *w, int oy, int ox0, int H, int W, int C,
        int Wo, int K, int S, int place, const struct gemm_epilogue *e)
{
    int pad = K / 2, i0 = ox0 * S - pad, span = (DW_TILE - 1) * S + K;
    int lo = 0, hi = span, outs = DW_TILE;
    if (place == DW_LEFT)
        lo = pad;
    else if (place == DW_RIGHT || place == DW_RIGHT1)
        hi = S * DW_TILE + pad - (place == DW_RIGHT1); /* W - i0 */
    else if (place == DW_ANY) {
        lo = i0 < 0 ? -i0 : 0;
        hi = i0 + span > W ? W - i0 : span;
        outs = ox0 + DW_TILE > Wo ? Wo - ox0 : DW_TILE;
    }
    for (int c = 0; c < C; c += 8) {
        v8f acc[DW_TILE];
        for (int p = 0; p < DW_TILE; p++)
            acc[p] = (v8f){0};
        for (int ky = 0; ky < K; ky++) {
            int iy = oy * S + ky - pad;
            if (iy < 0 || iy >= H)
                continue;
            const float *xrow = img + (size_t)iy * W * C + c;
            const float *wrow = w + (size_t)ky * K * C + c;
            v8f wk[7];
#pragma GCC unroll 7
            for (int kx = 0; kx < K; kx++)
                wk[kx] = LD8(wrow + (size_t)kx * C);
#pragma GCC unroll 16
            for (int i = 0; i < DW_SPAN; i++) {
                if (i >= span)
                    continue;
                v8f x = {0};
                if (i >= lo && i < hi)
                    x = LD8(xrow + (ptrdiff_t)(i0 + i) * C);
#pragma GCC unroll 7
                for (int kx = 0; kx < K; kx++) {
                    int d = i - kx;
                    if (d >= 0 && d % S == 0 && d / S < DW_TILE)
                        acc[d / S] += x * wk[kx];
                }
            }
        }
        for (int p = 0; p < outs; p++)
            ST8(orow + (size_t)(ox0 + p) * C + c, affine_out8(acc[p], e, c));
    }
}

/* The (kernel, stride) pairs the sliding window is compiled for. */
#define DW_WINDOWS(X) X(3, 1) X(3, 2) X(5, 1) X(5, 2) X(7, 1) X(7, 2)

/* One leaf function per kernel, stride and place: small enough for the register allocator. */
typedef void dw_tile_fn(float *orow, const float *img, const float *w, int oy, int ox0, int H,
                        int W, int C, int Wo, const struct gemm_epilogue *e);
#define DW_TILE_FN(K, S, PLACE)                                                                   \
    static void dw_tile_##K##S##_##PLACE(float *orow, const float *img, const float *w, int oy,  \
                                         int ox0, int H, int W, int C, int Wo,                   \
                                         const struct gemm_epilogue *e)                          \
    {                                                                                            \
        dw_tile(orow, img, w, oy, ox0, H, W, C, Wo, K, S, PLACE, e);                              \
    }
#define DW_TILE_FNS(K, S)                                                                         \
    DW_TILE_FN(K, S, DW_INSIDE)                                                                   \
    DW_TILE_FN(K, S, DW_LEFT) DW_TILE_FN(K, S, DW_RIGHT) DW_TILE_FN(K, S, DW_RIGHT1)              \
    DW_TILE_FN(K, S, DW_ANY)
DW_WINDOWS(DW_TILE_FNS)
#undef DW_TILE_FNS
#undef DW_TILE_FN

/* The weight gradient of a depthwise kernel row ky by the sliding window of dw_tile: for
 * DW_TILE neighbouring outputs of a row their gradients g stay in registers, each input pixel
 * under the tile's windows is loaded once and multiplied into the sums of every tap kx that
 * pairs it with one of them, and the K sums (8 channels) live in registers over the whole
 * image. dw_row_grad loads an input and a gradient per product instead. Zeros stand in for the
 * inputs outside the row and the outputs past it (checked), adding nothing to finite sums. */
static inline __attribute__((always_inline)) void
dw_grad_tile(v8f *acc, const float *grow, const float *xrow, int ox0, int W, int C, int Wo, int K,
             int S, int checked)
{
    int pad = K / 2, i0 = ox0 * S - pad, span = (DW_TILE - 1) * S + K;
    v8f g[DW_TILE];
    for (int p = 0; p < DW_TILE; p++) {
        g[p] = (v8f){0};
        if (!checked || ox0 + p < Wo)
            g[p] = LD8(grow + (size_t)(ox0 + p) * C);
    }
#pragma GCC unroll 16
    for (int i = 0; i < DW_SPAN; i++) {
        if (i >= span)
            continue;
        v8f x = {0};
        if (!checked || (i0 + i >= 0 && i0 + i < W))
            x = LD8(xrow + (ptrdiff_t)(i0 + i) * C);
#pragma GCC unroll 7
        for (int kx = 0; kx < K; kx++) {
            int d = i - kx;
            if (d >= 0 && d % S == 0 && d / S < DW_TILE)
                acc[kx] += g[d / S] * x;
        }
    }
}

static inline __attribute__((always_inline)) void
dw_grad_row(float *dw_ky, const float *gimg, const float *img, int ky, int H, int W, int C, int Ho,
            int Wo, int K, int S)
{
    int pad = K / 2;
    for (int c = 0; c < C; c += 8) {
        v8f acc[7];
        for (int kx = 0; kx < 7; kx++)
            acc[kx] = (v8f){0};
        for (int oy = 0; oy < Ho; oy++) {
            int iy = oy * S + ky - pad;
            if (iy < 0 || iy >= H)
                continue;
            const float *grow = gimg + (size_t)oy * Wo * C + c;
            const float *xrow = img + (size_t)iy * W * C + c;
            for (int ox0 = 0; ox0 < Wo; ox0 += DW_TILE) {
                int i0 = ox0 * S - pad;
                if (i0 >= 0 && i0 + (DW_TILE - 1) * S + K <= W && ox0 + DW_TILE <= Wo)
                    dw_grad_tile(acc, grow, xrow, ox0, W, C, Wo, K, S, 0);
                else
                    dw_grad_tile(acc, grow, xrow, ox0, W, C, Wo, K, S, 1);
            }
        }
        for (int kx = 0; kx < K; kx++)
            ST8(dw_ky + (size_t)kx * C + c, LD8(dw_ky + (size_t)kx * C + c) + acc[kx]);
    }
}

typedef void dw_grad_fn(float *dw_ky, const float *gimg, const float *img, int ky, int H, int W,
                        int C, int Ho, int Wo);
#define DW_GRAD_FN(K, S)                                                                          \
    static void dw_grad_##K##S(float *dw_ky, const float *gimg, const float *img, int ky, int H,  \
                               int W, int C, int Ho, int Wo)                                      \
    {                                                                                             \
        dw_grad_row(dw_ky, gimg, img, ky, H, W, C, Ho, Wo, K, S);                                 \
    }
DW_WINDOWS(DW_GRAD_FN)
#undef DW_GRAD_FN

/* The sliding-window kernels of one (kernel, stride) pair. */
struct dw_window {
    int k, stride;
    dw_tile_fn *tile[DW_PLACES]; /* by place */
    dw_grad_fn *grad;
};

#define DW_ENTRY(K, S)                                                                            \
    {K, S, {dw_tile_##K##S##_DW_INSIDE, dw_tile_##K##S##_DW_LEFT, dw_tile_##K##S##_DW_RIGHT,      \
            dw_tile_##K##S##_DW_RIGHT1, dw_tile_##K##S##_DW_ANY},                                 \
     dw_grad_##K##S},
static const struct dw_window DW_WINDOW_TABLE[] = {DW_WINDOWS(DW_ENTRY)};
#undef DW_ENTRY

/* The sliding-window kernels of kernel k and stride s for C channels (8k of them), or NULL. */
static const struct dw_window *dw_window(int k, int s, int C)
{
    for (size_t i = 0; C % 8 == 0 && i < OFFNAS_ARRAY_LEN(DW_WINDOW_TABLE); i++)
        if (DW_WINDOW_TABLE[i].k == k && DW_WINDOW_TABLE[i].stride == s)
            return &DW_WINDOW_TABLE[i];
    return NULL;
}

/* A whole output row in tiles by the sliding window: the first one at the left edge, inside
 * ones, and the last one flush with the row's end (overlapping the one before it, whose
 * outputs it writes again with the same bits), so that every tile but those of very short rows
 * knows its taps at compile time. 0 (nothing done) for channel counts and kernels it has no
 * tiles for. */
static int dw_row_window(float *orow, const float *img, const float *w, int oy, int H, int W,
                         int C, int Wo, int k, int stride, const struct gemm_epilogue *e)
{
    const struct dw_window *win = dw_window(k, stride, C);
    if (!win)
        return 0;
    dw_tile_fn *const *fn = win->tile;
    int pad = k / 2, span = (DW_TILE - 1) * stride + k, ox0 = 0;
    for (; ox0 + DW_TILE <= Wo; ox0 += DW_TILE) {
        int i0 = ox0 * stride - pad;
        if (i0 >= 0 && i0 + span <= W)
            fn[DW_INSIDE](orow, img, w, oy, ox0, H, W, C, Wo, e);
        else if (ox0 == 0 && span - pad <= W)
            fn[DW_LEFT](orow, img, w, oy, ox0, H, W, C, Wo, e);
        else
            break;
    }
    if (ox0 >= Wo)
        return 1;
    int last = Wo - DW_TILE, r = W - stride * Wo;
    int flush = last >= 0 && last * stride - pad >= 0 && (r == 0 || r == -1);
    for (; ox0 < (flush ? last : Wo); ox0 += DW_TILE)
        fn[DW_ANY](orow, img, w, oy, ox0, H, W, C, Wo, e);
    if (flush)
        fn[r ? DW_RIGHT1 : DW_RIGHT](orow, img, w, oy, last, H, W, C, Wo, e);
    return 1;
}

/* Output row oy of image b of op_depthwise_forward, then the epilogue e when not NULL
 * (inlined into each caller's own parallel loop, so the training kernel tests no e). */
static inline __attribute__((always_inline)) void
depthwise_row(float *out, const float *in, const float *w, int b, int oy, int H, int W, int C,
              int k, int stride, const struct gemm_epilogue *e)
{
    int Ho = op_conv_out_size(H, k, stride), Wo = op_conv_out_size(W, k, stride);
    const float *img = in + (size_t)b * H * W * C;
    float *orow = out + ((size_t)b * Ho + oy) * Wo * C;
    if (dw_row_window(orow, img, w, oy, H, W, C, Wo, k, stride, e))
        return;
    const float *xs[49], *ws[49];
    int in_lo, in_hi; /* DW_PIXELS of the outputs with every column tap inside at a time */
    inside_columns(W, k, stride, &in_lo, &in_hi);
    for (int ox = 0; ox < Wo; ox++) {
        int group = ox >= in_lo && ox + DW_PIXELS - 1 <= in_hi;
        int taps = window_taps(xs, ws, img, w, oy, ox, H, W, (size_t)C, (size_t)C, k, stride);
        float *o = out + (((size_t)b * Ho + oy) * Wo + ox) * C;
        if (group) {
            dw_dot_row(o, xs, (size_t)stride * C, ws, taps, C, e);
            ox += DW_PIXELS - 1;
        } else {
            dw_dot(o, xs, ws, taps, C, e);
        }
    }
}

void op_depthwise_forward(float *out, const float *in, const float *w, int B, int H, int W, int C,
                          int k, int stride)
{
    OFFNAS_ASSERT(k >= 1 && k <= 7); /* the tap lists hold 7x7 */
    int Ho = op_conv_out_size(H, k, stride);
    KERNEL_FOR(r, B * Ho, B * Ho > 8,
               depthwise_row(out, in, w, r / Ho, r % Ho, H, W, C, k, stride, NULL));
}

void op_depthwise_affine_forward(float *out, const float *in, const float *w, const float *scale,
                                 const float *shift, int B, int H, int W, int C, int k, int stride,
                                 int relu6)
{
    OFFNAS_ASSERT(k >= 1 && k <= 7);
    int Ho = op_conv_out_size(H, k, stride);
    const struct gemm_epilogue e = {.scale = scale, .shift = shift, .relu6 = relu6};
    KERNEL_FOR(r, B * Ho, B * Ho > 8,
               depthwise_row(out, in, w, r / Ho, r % Ho, H, W, C, k, stride, &e));
}

/* dw_tap[c] += sum over ox of g[ox][c] * x[ix(ox)][c] for one output row and one tap. */
static inline void dw_row_grad(float *restrict dw, const float *g, const float *x, int count,
                               size_t g_step, size_t x_step, int C)
{
    int c = 0;
    for (; c + 32 <= C; c += 32) {
        v8f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        for (int i = 0; i < count; i++) {
            const float *gp = g + i * g_step + c, *xp = x + i * x_step + c;
            a0 += LD8(gp) * LD8(xp);
            a1 += LD8(gp + 8) * LD8(xp + 8);
            a2 += LD8(gp + 16) * LD8(xp + 16);
            a3 += LD8(gp + 24) * LD8(xp + 24);
        }
        ST8(dw + c, LD8(dw + c) + a0);
        ST8(dw + c + 8, LD8(dw + c + 8) + a1);
        ST8(dw + c + 16, LD8(dw + c + 16) + a2);
        ST8(dw + c + 24, LD8(dw + c + 24) + a3);
    }
    for (; c + 8 <= C; c += 8) {
        v8f a0 = {0};
        for (int i = 0; i < count; i++)
            a0 += LD8(g + i * g_step + c) * LD8(x + i * x_step + c);
        ST8(dw + c, LD8(dw + c) + a0);
    }
    for (; c < C; c++) {
        float a = 0.0f;
        for (int i = 0; i < count; i++)
            a += g[i * g_step + c] * x[i * x_step + c];
        dw[c] += a;
    }
}

void op_depthwise_backward(float *din, float *dw, const float *dout, const float *in,
                           const float *w, int B, int H, int W, int C, int k, int stride)
{
    OFFNAS_ASSERT(k >= 1 && k <= 7);
    int pad = k / 2;
    int Ho = op_conv_out_size(H, k, stride), Wo = op_conv_out_size(W, k, stride);
    size_t wsize = dw ? (size_t)k * k * C : 0, kk = (size_t)k * k * C;
    int threads = op_threads < B ? op_threads : B;
    const struct dw_window *win = dw_window(k, stride, C);
    dw_grad_fn *grad_window = win ? win->grad : NULL;
    /* at stride 1 the input gradient is the forward's sliding window over dout with the kernel
     * turned by 180 degrees (same padding): din[y][x] = sum dout[y-pad+a][x-pad+b] w'[a][b] */
    int turned = din && stride == 1 && win;
    float *partial = scratch_get(wsize * (size_t)threads + (turned ? kk : 0));
    memset(partial, 0, wsize * (size_t)threads * sizeof(float));
    float *w_turned = partial + wsize * (size_t)threads;
    for (int t = 0; turned && t < k * k; t++)
        memcpy(w_turned + (size_t)t * C, w + (size_t)(k * k - 1 - t) * C,
               (size_t)C * sizeof(float));
#pragma omp parallel num_threads(threads)
    {
        float *dwt = partial + wsize * (size_t)omp_get_thread_num();
        const float *gs[49], *ws[49];
#pragma omp for schedule(static)
        for (int b = 0; b < B; b++) {
            const float *img = in + (size_t)b * H * W * C;
            const float *gimg = dout + (size_t)b * Ho * Wo * C;
            for (int ky = 0; dw && grad_window && ky < k; ky++)
                grad_window(dwt + (size_t)ky * k * C, gimg, img, ky, H, W, C, Ho, Wo);
            /* dw: per output row and tap, a run of output columns with valid inputs */
            for (int oy = 0; dw && !grad_window && oy < Ho; oy++)
                for (int ky = 0; ky < k; ky++) {
                    int iy = oy * stride + ky - pad;
                    if (iy < 0 || iy >= H)
                        continue;
                    for (int kx = 0; kx < k; kx++) {
                        /* ox with 0 <= ox*stride + kx - pad < W */
                        int lo = pad - kx > 0 ? (pad - kx + stride - 1) / stride : 0;
                        int hi = (W - 1 + pad - kx) / stride; /* inclusive */
                        if (hi > Wo - 1)
                            hi = Wo - 1;
                        if (hi < lo)
                            continue;
                        int ix = lo * stride + kx - pad;
                        dw_row_grad(dwt + ((size_t)ky * k + kx) * C,
                                    gimg + ((size_t)oy * Wo + lo) * C,
                                    img + ((size_t)iy * W + ix) * C, hi - lo + 1, (size_t)C,
                                    (size_t)stride * C, C);
                    }
                }
            if (!din)
                continue;
            float *dimg = din + (size_t)b * H * W * C;
            if (turned) {
                for (int iy = 0; iy < H; iy++)
                    dw_row_window(dimg + (size_t)iy * W * C, gimg, w_turned, iy, Ho, Wo, C, W, k,
                                  1, NULL);
                continue;
            }
            /* din: gather, for every input pixel, the outputs whose window covers it */
            for (int iy = 0; iy < H; iy++)
                for (int ix = 0; ix < W; ix++) {
                    /* at stride 1, DW_PIXELS inputs whose every column tap has its output */
                    int group = stride == 1 && ix >= k - 1 - pad &&
                                ix + DW_PIXELS - 1 + pad <= Wo - 1;
                    int taps = 0;
                    for (int ky = 0; ky < k; ky++) {
                        int ty = iy + pad - ky;
                        if (ty < 0 || ty % stride)
                            continue;
                        int oy = ty / stride;
                        if (oy >= Ho)
                            continue;
                        for (int kx = 0; kx < k; kx++) {
                            int tx = ix + pad - kx;
                            if (tx < 0 || tx % stride)
                                continue;
                            int ox = tx / stride;
                            if (ox >= Wo)
                                continue;
                            gs[taps] = gimg + ((size_t)oy * Wo + ox) * C;
                            ws[taps++] = w + ((size_t)ky * k + kx) * C;
                        }
                    }
                    float *d = dimg + ((size_t)iy * W + ix) * C;
                    if (group) {
                        dw_dot_row(d, gs, (size_t)C, ws, taps, C, NULL);
                        ix += DW_PIXELS - 1;
                    } else {
                        dw_dot(d, gs, ws, taps, C, NULL);
                    }
                }
        }
    }
    for (int t = 0; dw && t < threads; t++)
        for (size_t i = 0; i < wsize; i++)
            dw[i] += partial[wsize * (size_t)t + i];
}

/* ------------------------------------------------------------------------------------------ */
/* batch normalisation */

#define BN_EPS 1e-5f
#define BN_BLOCK_ROWS 64

/* The normalisation folded to y = x * scale + shift, one expression for the forward and for the
 * backward that recomputes its ReLU6 mask from x (the same floats give the same mask). */
static inline void bn_fold(float *scale, float *shift, const float *gamma, const float *beta,
                           const float *mean, const float *rstd, int C)
{
    for (int c = 0; c < C; c++) {
        scale[c] = gamma[c] * rstd[c];
        shift[c] = beta[c] - mean[c] * scale[c];
    }
}

static inline float bn_affine(float x, float scale, float shift) { return x * scale + shift; }

void op_batchnorm_eval_fold(float *scale, float *shift, const float *gamma, const float *beta,
                            const float *running_mean, const float *running_var, int C)
{
    for (int c = 0; c < C; c++) {
        scale[c] = gamma[c] / sqrtf(running_var[c] + BN_EPS);
        shift[c] = beta[c] - running_mean[c] * scale[c];
    }
}

enum { SUMS_FORWARD, SUMS_BACKWARD, SUMS_RELU6 };
#define SUMS_VECTORS 4

/* channel_sums_add's float sums of rows n0..n1 for the 8 * V channels from c, in registers over
 * the rows (V a constant once inlined: SUMS_VECTORS or 1): per channel the same operations in
 * the same order as one channel at a time, so the same bits. */
static inline void tile_sums(float *restrict s, float *restrict q, const float *x,
                             const float *shift, const float *g, const float *ys, const float *yt,
                             int n0, int n1, int C, int c, int V, int mode)
{
    v8f vs[SUMS_VECTORS], vq[SUMS_VECTORS], sh[SUMS_VECTORS], a[SUMS_VECTORS], b[SUMS_VECTORS];
    for (int v = 0; v < V; v++) {
        vs[v] = vq[v] = (v8f){0};
        sh[v] = LD8(shift + c + 8 * v);
        a[v] = b[v] = (v8f){0};
        if (mode == SUMS_RELU6) {
            a[v] = LD8(ys + c + 8 * v);
            b[v] = LD8(yt + c + 8 * v);
        }
    }
    for (int n = n0; n < n1; n++) {
        const float *row = x + (size_t)n * C + c;
        const float *grow = mode == SUMS_FORWARD ? row : g + (size_t)n * C + c;
        for (int v = 0; v < V; v++) {
            v8f xv = LD8(row + 8 * v);
            if (mode == SUMS_FORWARD) {
                v8f d = xv - sh[v];
                vs[v] += d;
                vq[v] += d * d;
                continue;
            }
            v8f gv = LD8(grow + 8 * v);
            if (mode == SUMS_RELU6) {
                v8f y = xv * a[v] + b[v];
                v8i keep = (y > 0.0f) & (y < 6.0f);
                gv = (v8f)((v8i)gv & keep);
            }
            vs[v] += gv;
            vq[v] += gv * (xv - sh[v]);
        }
    }
    for (int v = 0; v < V; v++) {
        ST8(s + c + 8 * v, vs[v]);
        ST8(q + c + 8 * v, vq[v]);
    }
}

/* Per-channel sums over the N rows of (N,C) tensors, in one pass:
 *   forward  (g == NULL): s = sum (x - x0), q = sum (x - x0)^2 with x0 the given shift row (the
 *            tensor's first row: it keeps E[x^2] - E[x]^2 from cancelling);
 *   backward (g != NULL): s = sum g', q = sum g' * (x - mean), where g' = g masked by
 *            0 < y < 6 when the ReLU6 follows: y = x * ys + yt (ys, yt: the forward's folded
 *            scale and shift, so y is recomputed from x instead of read).
 * Rows are summed in float over blocks of BN_BLOCK_ROWS, blocks in double, threads in order,
 * and the result is ADDED to sum and sumsq: a tensor can be summed chunk by chunk (chunks of
 * whole blocks), and with one thread the sums are the same bits as in one call. */
static void channel_sums_add(double *sum, double *sumsq, const float *x, const float *shift,
                             const float *g, const float *ys, const float *yt, int N, int C)
{
    int threads = op_threads;
    if (N < 4 * BN_BLOCK_ROWS)
        threads = 1;
    double *partial = sum;
    if (threads > 1) {
        partial = (double *)scratch_get((size_t)threads * 2 * C * 2);
        memset(partial, 0, (size_t)threads * 2 * C * sizeof(double));
    }
    int blocks = (N + BN_BLOCK_ROWS - 1) / BN_BLOCK_ROWS;
#pragma omp parallel num_threads(threads)
    {
        double *ds = threads > 1 ? partial + (size_t)omp_get_thread_num() * 2 * C : sum;
        double *dq = threads > 1 ? ds + C : sumsq;
        float s[C], q[C];
        int mode = !g ? SUMS_FORWARD : ys ? SUMS_RELU6 : SUMS_BACKWARD;
#pragma omp for schedule(static)
        for (int blk = 0; blk < blocks; blk++) {
            int n0 = blk * BN_BLOCK_ROWS, n1 = n0 + BN_BLOCK_ROWS < N ? n0 + BN_BLOCK_ROWS : N;
            int c = 0;
            for (; c + 8 * SUMS_VECTORS <= C; c += 8 * SUMS_VECTORS)
                tile_sums(s, q, x, shift, g, ys, yt, n0, n1, C, c, SUMS_VECTORS, mode);
            for (; c + 8 <= C; c += 8)
                tile_sums(s, q, x, shift, g, ys, yt, n0, n1, C, c, 1, mode);
            for (int k = c; k < C; k++)
                s[k] = q[k] = 0.0f;
            for (int n = n0; n < n1 && c < C; n++) /* the channels past the last 8 */
                for (int k = c; k < C; k++) {
                    float xv = x[(size_t)n * C + k], gv;
                    if (mode == SUMS_FORWARD) {
                        float d = xv - shift[k];
                        s[k] += d;
                        q[k] += d * d;
                        continue;
                    }
                    gv = g[(size_t)n * C + k];
                    if (mode == SUMS_RELU6) {
                        float y = bn_affine(xv, ys[k], yt[k]);
                        gv = (y > 0.0f && y < 6.0f) ? gv : 0.0f;
                    }
                    s[k] += gv;
                    q[k] += gv * (xv - shift[k]);
                }
            for (int c = 0; c < C; c++) {
                ds[c] += s[c];
                dq[c] += q[c];
            }
        }
    }
    if (threads > 1)
        for (int t = 0; t < threads; t++)
            for (int c = 0; c < C; c++) {
                sum[c] += partial[(size_t)t * 2 * C + c];
                sumsq[c] += partial[(size_t)t * 2 * C + C + c];
            }
}

static void channel_sums(double *sum, double *sumsq, const float *x, const float *shift,
                         const float *g, const float *ys, const float *yt, int N, int C)
{
    for (int c = 0; c < C; c++)
        sum[c] = sumsq[c] = 0.0;
    channel_sums_add(sum, sumsq, x, shift, g, ys, yt, N, C);
}

/* Rows per GEMM call of the *_sums pointwise ops: whole batch-norm blocks, about 512 KB of
 * output, so the sums read each chunk from L2 right after the GEMM wrote it. */
static int sums_chunk_rows(int C)
{
    int rows = (512 * 1024 / (int)sizeof(float) / C) / BN_BLOCK_ROWS * BN_BLOCK_ROWS;
    return rows > BN_BLOCK_ROWS ? rows : BN_BLOCK_ROWS;
}

/* out (N,C) = a (N,K) times w, (K,C) or with trans_w (C,K) transposed, chunk by chunk; after
 * each chunk its rows are added to sums (2*C, zeroed first) as channel_sums_add adds them:
 * without bn_in x = out and shift = out's first row (a forward's statistics), with it
 * x = bn_in, shift = mean and g = out masked by the ReLU6 of ys, yt (a backward's). */
static void gemm_sums(float *out, double *sums, const float *a, const float *w, int trans_w,
                      int N, int K, int C, const float *bn_in, const float *mean,
                      const float *ys, const float *yt)
{
    for (int c = 0; c < 2 * C; c++)
        sums[c] = 0.0;
    int rows = sums_chunk_rows(C);
    const float *packed = pointwise_pack(w, N, K, C, trans_w);
    for (int n0 = 0; n0 < N; n0 += rows) {
        int m = N - n0 < rows ? N - n0 : rows;
        size_t at = (size_t)n0 * C;
        pointwise_rows(out + at, a + (size_t)n0 * K, w, packed, trans_w, m, K, C);
        if (bn_in)
            channel_sums_add(sums, sums + C, bn_in + at, mean, out + at, ys, yt, m, C);
        else
            channel_sums_add(sums, sums + C, out + at, out, NULL, NULL, NULL, m, C);
    }
}

void op_pointwise_forward_sums(float *out, double *sums, const float *in, const float *w, int N,
                               int Ci, int Co)
{
    gemm_sums(out, sums, in, w, 0, N, Ci, Co, NULL, NULL, NULL, NULL);
}

static void batchnorm_forward(float *out, float *mean, float *rstd, const float *in,
                              const float *gamma, const float *beta, float *running_mean,
                              float *running_var, int N, int C, int training, float momentum,
                              int relu6, const double *sums)
{
    float scale[C], shift[C];
    if (training) {
        double own[2 * C];
        const float *x0 = in; /* shift: the first row */
        if (!sums) {
            channel_sums(own, own + C, in, x0, NULL, NULL, NULL, N, C);
            sums = own;
        }
        const double *sum = sums, *sq = sums + C;
        for (int c = 0; c < C; c++) {
            double m = sum[c] / N; /* mean of x - x0 */
            double var = sq[c] / N - m * m;
            if (var < 0)
                var = 0;
            mean[c] = (float)(m + x0[c]);
            rstd[c] = (float)(1.0 / sqrt(var + BN_EPS));
            double unbiased = N > 1 ? var * N / (N - 1) : var;
            running_mean[c] = (1 - momentum) * running_mean[c] + momentum * mean[c];
            running_var[c] = (float)((1 - momentum) * running_var[c] + momentum * unbiased);
        }
        bn_fold(scale, shift, gamma, beta, mean, rstd, C);
    } else {
        op_batchnorm_eval_fold(scale, shift, gamma, beta, running_mean, running_var, C);
    }
#pragma omp parallel for schedule(static) if (N > 256)
    for (int n = 0; n < N; n++) {
        const float *restrict x = in + (size_t)n * C;
        float *restrict y = out + (size_t)n * C;
        if (relu6) {
            for (int c = 0; c < C; c++) {
                float v = bn_affine(x[c], scale[c], shift[c]);
                v = v < 0.0f ? 0.0f : v;
                y[c] = v > 6.0f ? 6.0f : v;
            }
        } else {
            for (int c = 0; c < C; c++)
                y[c] = bn_affine(x[c], scale[c], shift[c]);
        }
    }
}

/* The batch norm backward folded per channel. With x_hat = (x - mean) * rstd and g' the incoming
 * gradient (masked by the ReLU6 when relu6: the forward's output y = x * ys + yt recomputed
 * from x, which saves reading it twice): dbeta = sum g', dgamma = sum g' x_hat,
 * dx = gamma rstd (g' - dbeta/N - x_hat dgamma/N) = k g' + a x + b. */
struct bn_grad {
    const float *k, *a, *b, *ys, *yt;
    int relu6;
};

/* Fills the coefficient arrays (C each) behind grad from the sums (own pass over in, dout when
 * NULL) and adds dgamma, dbeta. */
static void bn_grad_fold(struct bn_grad *grad, float *k, float *a, float *b, float *ys,
                         float *yt, float *dgamma, float *dbeta, const float *dout,
                         const float *in, const float *beta, const float *mean,
                         const float *rstd, const float *gamma, int N, int C,
                         const double *sums)
{
    if (beta)
        bn_fold(ys, yt, gamma, beta, mean, rstd, C);
    else
        memset(yt, 0, (size_t)C * sizeof *yt); /* unused without the ReLU6 */
    double own[2 * C];
    if (!sums) {
        channel_sums(own, own + C, in, mean, dout, beta ? ys : NULL, yt, N, C);
        sums = own;
    }
    const double *sum_g = sums, *sum_gx = sums + C;
    for (int c = 0; c < C; c++) {
        float db = (float)sum_g[c], dg = (float)(sum_gx[c] * rstd[c]);
        dbeta[c] += db;
        dgamma[c] += dg;
        k[c] = gamma[c] * rstd[c];
        /* dx = k g' + a (x - mean) + b, folded to dx = k g' + a x + b' */
        a[c] = -k[c] * rstd[c] * dg / (float)N;
        b[c] = -k[c] * db / (float)N - a[c] * mean[c];
    }
    *grad = (struct bn_grad){k, a, b, ys, yt, beta != NULL};
}

/* din = the folded backward of rows n0..n1 (din may alias dout). */
static void bn_grad_rows(float *din, const float *dout, const float *in,
                         const struct bn_grad *grad, int n0, int n1, int C)
{
    const float *k = grad->k, *a = grad->a, *b = grad->b, *ys = grad->ys, *yt = grad->yt;
#pragma omp parallel for schedule(static) if (n1 - n0 > 256)
    for (int n = n0; n < n1; n++) {
        const float *restrict x = in + (size_t)n * C, *g = dout + (size_t)n * C;
        float *dx = din + (size_t)n * C;
        if (grad->relu6) {
            for (int c = 0; c < C; c++) {
                float y = bn_affine(x[c], ys[c], yt[c]);
                float gv = (y > 0.0f && y < 6.0f) ? g[c] : 0.0f;
                dx[c] = k[c] * gv + a[c] * x[c] + b[c];
            }
        } else {
            for (int c = 0; c < C; c++)
                dx[c] = k[c] * g[c] + a[c] * x[c] + b[c];
        }
    }
}

static void batchnorm_backward(float *din, float *dgamma, float *dbeta, const float *dout,
                               const float *in, const float *beta, const float *mean,
                               const float *rstd, const float *gamma, int N, int C,
                               const double *sums)
{
    float k[C], a[C], b[C], ys[C], yt[C];
    struct bn_grad grad;
    bn_grad_fold(&grad, k, a, b, ys, yt, dgamma, dbeta, dout, in, beta, mean, rstd, gamma, N, C,
                 sums);
    bn_grad_rows(din, dout, in, &grad, 0, N, C);
}

void op_batchnorm_forward(float *out, float *mean, float *rstd, const float *in, const float *gamma,
                          const float *beta, float *running_mean, float *running_var, int N, int C,
                          int training, float momentum)
{
    batchnorm_forward(out, mean, rstd, in, gamma, beta, running_mean, running_var, N, C, training,
                      momentum, 0, NULL);
}

void op_batchnorm_backward(float *din, float *dgamma, float *dbeta, const float *dout,
                           const float *in, const float *mean, const float *rstd,
                           const float *gamma, int N, int C)
{
    batchnorm_backward(din, dgamma, dbeta, dout, in, NULL, mean, rstd, gamma, N, C, NULL);
}

void op_batchnorm_relu6_forward(float *out, float *mean, float *rstd, const float *in,
                                const float *gamma, const float *beta, float *running_mean,
                                float *running_var, int N, int C, int training, float momentum)
{
    batchnorm_forward(out, mean, rstd, in, gamma, beta, running_mean, running_var, N, C, training,
                      momentum, 1, NULL);
}

void op_batchnorm_sums_forward(float *out, float *mean, float *rstd, const float *in,
                               const double *sums, const float *gamma, const float *beta,
                               float *running_mean, float *running_var, int N, int C,
                               float momentum, int relu6)
{
    batchnorm_forward(out, mean, rstd, in, gamma, beta, running_mean, running_var, N, C, 1,
                      momentum, relu6, sums);
}

void op_batchnorm_relu6_backward(float *din, float *dgamma, float *dbeta, const float *dout,
                                 const float *in, const float *mean, const float *rstd,
                                 const float *gamma, const float *beta, int N, int C)
{
    batchnorm_backward(din, dgamma, dbeta, dout, in, beta, mean, rstd, gamma, N, C, NULL);
}

void op_batchnorm_relu6_sums_backward(float *din, float *dgamma, float *dbeta, const float *dout,
                                      const double *sums, const float *in, const float *mean,
                                      const float *rstd, const float *gamma, const float *beta,
                                      int N, int C)
{
    batchnorm_backward(din, dgamma, dbeta, dout, in, beta, mean, rstd, gamma, N, C, sums);
}

void op_pointwise_din_sums(float *din, double *sums, const float *dout, const float *w, int N,
                           int Ci, int Co, const float *x, const float *mean, const float *rstd,
                           const float *gamma, const float *beta)
{
    float ys[Ci], yt[Ci];
    bn_fold(ys, yt, gamma, beta, mean, rstd, Ci);
    gemm_sums(din, sums, dout, w, 1, N, Co, Ci, x, mean, ys, yt);
}

void op_batchnorm_relu6_pointwise_backward(float *dx, float *dw, float *dgamma, float *dbeta,
                                           float *g, const float *a, const float *x,
                                           const float *w, const float *mean, const float *rstd,
                                           const float *gamma, const float *beta, int N, int Ci,
                                           int C)
{
    float k[C], ca[C], cb[C], ys[C], yt[C];
    struct bn_grad grad;
    bn_grad_fold(&grad, k, ca, cb, ys, yt, dgamma, dbeta, g, a, beta, mean, rstd, gamma, N, C,
                 NULL);
    /* each chunk of the batch norm's gradient is used by both products while it is in L2 */
    int rows = sums_chunk_rows(C);
    const float *packed = pointwise_pack(w, N, C, Ci, 1);
    for (int n0 = 0; n0 < N; n0 += rows) {
        int m = N - n0 < rows ? N - n0 : rows;
        float *gc = g + (size_t)n0 * C;
        bn_grad_rows(g, g, a, &grad, n0, n0 + m, C);
        if (dw)
            pointwise_wgrad(dw, x + (size_t)n0 * Ci, gc, N, m, Ci, C);
        pointwise_rows(dx + (size_t)n0 * Ci, gc, w, packed, 1, m, C, Ci);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* elementwise */

void op_relu6_forward(float *out, const float *in, size_t n)
{
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float v = in[i];
        v = v < 0.0f ? 0.0f : v;
        out[i] = v > 6.0f ? 6.0f : v;
    }
}

void op_relu6_backward(float *din, const float *dout, const float *out, size_t n)
{
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++)
        din[i] = (out[i] > 0.0f && out[i] < 6.0f) ? dout[i] : 0.0f;
}

void op_add_forward(float *out, const float *a, const float *b, size_t n)
{
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

void op_avgpool_forward(float *out, const float *in, int B, int HW, int C)
{
    for (int b = 0; b < B; b++) {
        float *o = out + (size_t)b * C;
        for (int c = 0; c < C; c++)
            o[c] = 0.0f;
        for (int p = 0; p < HW; p++) {
            const float *x = in + ((size_t)b * HW + p) * C;
            for (int c = 0; c < C; c++)
                o[c] += x[c];
        }
        for (int c = 0; c < C; c++)
            o[c] /= (float)HW;
    }
}

void op_avgpool_backward(float *din, const float *dout, int B, int HW, int C)
{
    float inv = 1.0f / (float)HW;
    for (int b = 0; b < B; b++)
        for (int p = 0; p < HW; p++) {
            float *dx = din + ((size_t)b * HW + p) * C;
            const float *g = dout + (size_t)b * C;
            for (int c = 0; c < C; c++)
                dx[c] = g[c] * inv;
        }
}

void op_linear_forward(float *out, const float *in, const float *w, const float *bias, int B, int In,
                       int Out)
{
    for (int b = 0; b < B; b++)
        memcpy(out + (size_t)b * Out, bias, (size_t)Out * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, Out, In, 1.0f, in, In, w, Out, 1.0f,
                out, Out);
}

void op_linear_backward(float *din, float *dw, float *dbias, const float *dout, const float *in,
                        const float *w, int B, int In, int Out)
{
    if (dbias)
        for (int b = 0; b < B; b++)
            for (int o = 0; o < Out; o++)
                dbias[o] += dout[(size_t)b * Out + o];
    if (dw)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, In, Out, B, 1.0f, in, In, dout, Out,
                    1.0f, dw, Out);
    if (din)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, In, Out, 1.0f, dout, Out, w, Out,
                    0.0f, din, In);
}

float op_softmax_xent_forward(float *probs, int *correct, const float *logits,
                              const unsigned char *labels, int B, int K, float label_smoothing)
{
    double loss = 0.0;
    int hits = 0;
    for (int b = 0; b < B; b++) {
        const float *z = logits + (size_t)b * K;
        float *p = probs + (size_t)b * K;
        int arg = 0;
        for (int k = 1; k < K; k++)
            if (z[k] > z[arg])
                arg = k;
        hits += arg == labels[b];
        double sum = 0.0;
        for (int k = 0; k < K; k++)
            sum += exp((double)z[k] - z[arg]);
        double log_sum = log(sum) + z[arg];
        double sample = 0.0;
        for (int k = 0; k < K; k++) {
            double logp = z[k] - log_sum;
            p[k] = (float)exp(logp);
            double target = label_smoothing / K + (k == labels[b] ? 1.0 - label_smoothing : 0.0);
            sample -= target * logp;
        }
        loss += sample;
    }
    if (correct)
        *correct = hits;
    return (float)(loss / B);
}

void op_softmax_xent_backward(float *dlogits, const float *probs, const unsigned char *labels,
                              int B, int K, float label_smoothing)
{
    float inv = 1.0f / (float)B;
    for (int b = 0; b < B; b++)
        for (int k = 0; k < K; k++) {
            float target = label_smoothing / K + (k == labels[b] ? 1.0f - label_smoothing : 0.0f);
            dlogits[(size_t)b * K + k] = (probs[(size_t)b * K + k] - target) * inv;
        }
}

void op_channel_mask_forward(float *out, const float *in, const float *mask, int N, int C)
{
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            out[(size_t)n * C + c] = in[(size_t)n * C + c] * mask[c];
}

void op_channel_mask_backward(float *din, float *dmask, const float *dout, const float *in,
                              const float *mask, int N, int C)
{
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            size_t i = (size_t)n * C + c;
            if (dmask)
                dmask[c] += dout[i] * in[i];
            din[i] = dout[i] * mask[c];
        }
}

/* ------------------------------------------------------------------------------------------ */
/* op names */

int op_spec_parse(struct op_spec *spec, const char *text)
{
    if (strcmp(text, "skip") == 0) {
        *spec = (struct op_spec){ .kind = OP_SKIP, .kernel = 0, .expand = 0 };
        return 0;
    }
    const char *p = text;
    int kernel = 0, expand = 0;
    if (*p++ != 'k' || !isdigit((unsigned char)*p))
        goto bad;
    while (isdigit((unsigned char)*p) && kernel < 100)
        kernel = kernel * 10 + (*p++ - '0');
    if (*p++ != 'e' || !isdigit((unsigned char)*p))
        goto bad;
    while (isdigit((unsigned char)*p) && expand < 100)
        expand = expand * 10 + (*p++ - '0');
    if (*p != '\0')
        goto bad;
    if (kernel != 3 && kernel != 5 && kernel != 7)
        return offnas_error("op '%s': kernel must be 3, 5 or 7", text);
    if (expand < 1 || expand > 8)
        return offnas_error("op '%s': expansion must be 1..8", text);
    *spec = (struct op_spec){ .kind = OP_BLOCK, .kernel = kernel, .expand = expand };
    return 0;
bad:
    return offnas_error("'%s' is not an op (kKeE with K in 3, 5, 7 and E in 1..8, or skip)", text);
}

char *op_spec_name(const struct op_spec *spec, char *buf)
{
    if (spec->kind == OP_SKIP)
        snprintf(buf, 16, "skip");
    else
        snprintf(buf, 16, "k%de%d", spec->kernel % 1000, spec->expand % 1000);
    return buf;
}
