/* test_op: every op of src/op.h against naive float64 references written in this file.
 *
 * The references are direct loops (no im2col, no BLAS), written from the conventions in op.h
 * and nothing else. Forward tests compare the float32 op with the reference; gradient tests
 * compare the float32 backward with central finite differences of the float64 reference
 * forward of L = sum(out * R) for a fixed random R (so dout = R), on every element.
 *
 * Tolerances:
 *   forward:   max |got - ref| <= 1e-4 * (1 + max |ref|)          (FWD_RTOL)
 *   gradients: |analytic - numeric| <= 2e-3 * max(1, |numeric|)    (GRAD_RTOL), h = 1e-4
 *   threads:   |x(1 thread) - x(2 threads)| <= 1e-5 * (1 + max |x|) per tensor
 *   exact identities (2x accumulation, aliasing, NULL din): 1e-6 * (1 + |x|)
 */
#include "common.h"
#include "op.h"
#include "testing.h"

#include <float.h>
#include <stdint.h>
#include <stdlib.h>

#define FWD_RTOL 1e-4
#define GRAD_RTOL 2e-3
#define FD_STEP 1e-4
#define THREAD_RTOL 1e-5
#define SAME_RTOL 1e-6
#define BN_EPS 1e-5

/* ---------- small deterministic RNG (splitmix64) ---------- */

static uint64_t rng_state;

static void rng_seed(uint64_t seed) { rng_state = seed; }

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi). */
static double rng_uniform(double lo, double hi)
{
    return lo + (hi - lo) * ((double)(rng_next() >> 11) * (1.0 / 9007199254740992.0));
}

static void fill_uniform(float *x, size_t n, double lo, double hi)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)rng_uniform(lo, hi);
}

/* ---------- buffers ---------- */

/* Exact-size allocations, so the sanitizer catches any write past a tensor. */
static float *fnew(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof *p);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        abort();
    }
    return p;
}

static double *dnew(size_t n)
{
    double *p = calloc(n ? n : 1, sizeof *p);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        abort();
    }
    return p;
}

static float *frand(size_t n, double lo, double hi)
{
    float *p = fnew(n);
    fill_uniform(p, n, lo, hi);
    return p;
}

static double *to_double(const float *x, size_t n)
{
    double *d = dnew(n);
    for (size_t i = 0; i < n; i++)
        d[i] = x[i];
    return d;
}

static float *fcopy(const float *x, size_t n)
{
    float *p = fnew(n);
    memcpy(p, x, n * sizeof *p);
    return p;
}

static void ffill(float *x, size_t n, float v)
{
    for (size_t i = 0; i < n; i++)
        x[i] = v;
}

/* ---------- comparisons ---------- */

/* Forward check: max |got - ref| <= FWD_RTOL * (1 + max |ref|). Prints the worst element. */
static int close_fwd(const char *what, const float *got, const double *ref, size_t n)
{
    double maxref = 0, maxerr = 0;
    size_t worst = 0;
    int finite = 1;
    for (size_t i = 0; i < n; i++) {
        if (fabs(ref[i]) > maxref)
            maxref = fabs(ref[i]);
        if (!isfinite(got[i]))
            finite = 0;
        double e = fabs((double)got[i] - ref[i]);
        if (!(e <= maxerr)) {
            maxerr = e;
            worst = i;
        }
    }
    double tol = FWD_RTOL * (1 + maxref);
    int ok = finite && maxerr <= tol;
    if (!ok)
        fprintf(stderr, "\n  %s: element %zu of %zu: got %.9g, expected %.9g, max err %.3g > tol %.3g\n",
                what, worst, n, n ? (double)got[worst] : 0.0, n ? ref[worst] : 0.0, maxerr, tol);
    return ok;
}

/* Gradient check, every element: |a - n| <= GRAD_RTOL * max(1, |n|). Prints the first few
 * failures and the count. */
static int close_grad(const char *what, const float *analytic, const double *numeric, size_t n)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        double a = analytic[i], g = numeric[i];
        double tol = GRAD_RTOL * fmax(1.0, fabs(g));
        if (!(fabs(a - g) <= tol)) {
            if (bad < 4)
                fprintf(stderr, "\n  %s: element %zu of %zu: analytic %.9g, numeric %.9g, |diff| %.3g > tol %.3g",
                        what, i, n, a, g, fabs(a - g), tol);
            bad++;
        }
    }
    if (bad)
        fprintf(stderr, "\n  %s: %zu of %zu elements wrong\n", what, bad, n);
    return bad == 0;
}

/* Two float tensors agree: |a - b| <= rtol * (1 + max |b|) on every element. */
static int close_same(const char *what, const float *a, const float *b, size_t n, double rtol)
{
    double maxb = 0, maxerr = 0;
    size_t worst = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(b[i]) > maxb)
            maxb = fabs(b[i]);
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]);
        if (!(e <= maxerr)) {
            maxerr = e;
            worst = i;
        }
    }
    double tol = rtol * (1 + maxb);
    int ok = maxerr <= tol;
    if (!ok)
        fprintf(stderr, "\n  %s: element %zu of %zu: %.9g vs %.9g, |diff| %.3g > tol %.3g\n", what,
                worst, n, (double)a[worst], (double)b[worst], maxerr, tol);
    return ok;
}

/* ---------- float64 references ---------- */

static int ref_out_size(int n, int k, int stride)
{
    int pad = k / 2;
    return (n + 2 * pad - k) / stride + 1;
}

/* out (B,Ho,Wo,Co) = conv of in (B,H,W,Ci), padding k/2: dense with w (k,k,Ci,Co), or depthwise
 * (Ci = Co) with w (k,k,C), where output channel c reads input channel c alone. */
static void ref_conv_any(double *out, const double *in, const double *w, int B, int H, int W,
                         int Ci, int Co, int k, int stride, int depthwise)
{
    int pad = k / 2, Ho = ref_out_size(H, k, stride), Wo = ref_out_size(W, k, stride);
    for (int b = 0; b < B; b++)
        for (int oy = 0; oy < Ho; oy++)
            for (int ox = 0; ox < Wo; ox++)
                for (int co = 0; co < Co; co++) {
                    double acc = 0;
                    for (int ky = 0; ky < k; ky++)
                        for (int kx = 0; kx < k; kx++) {
                            int iy = oy * stride + ky - pad, ix = ox * stride + kx - pad;
                            if (iy < 0 || iy >= H || ix < 0 || ix >= W)
                                continue;
                            size_t tap = (size_t)ky * k + kx;
                            for (int ci = depthwise ? co : 0; ci < (depthwise ? co + 1 : Ci); ci++)
                                acc += in[(((size_t)b * H + iy) * W + ix) * Ci + ci] *
                                       (depthwise ? w[tap * Ci + ci]
                                                  : w[(tap * Ci + ci) * Co + co]);
                        }
                    out[(((size_t)b * Ho + oy) * Wo + ox) * Co + co] = acc;
                }
}

/* out (B,Ho,Wo,Co) = dense conv of in (B,H,W,Ci) with w (k,k,Ci,Co), padding k/2. */
static void ref_conv(double *out, const double *in, const double *w, int B, int H, int W, int Ci,
                     int Co, int k, int stride)
{
    ref_conv_any(out, in, w, B, H, W, Ci, Co, k, stride, 0);
}

/* out (B,Ho,Wo,C) = depthwise conv of in (B,H,W,C) with w (k,k,C), padding k/2. */
static void ref_depthwise(double *out, const double *in, const double *w, int B, int H, int W,
                          int C, int k, int stride)
{
    ref_conv_any(out, in, w, B, H, W, C, C, k, stride, 1);
}

/* out (N,Co) = in (N,Ci) @ w (Ci,Co). */
static void ref_pointwise(double *out, const double *in, const double *w, int N, int Ci, int Co)
{
    for (int n = 0; n < N; n++)
        for (int co = 0; co < Co; co++) {
            double acc = 0;
            for (int ci = 0; ci < Ci; ci++)
                acc += in[(size_t)n * Ci + ci] * w[(size_t)ci * Co + co];
            out[(size_t)n * Co + co] = acc;
        }
}

/* Batch statistics per channel of in (N,C): mean, biased and unbiased variance. */
static void ref_batch_stats(double *mean, double *var_biased, double *var_unbiased, const double *in,
                            int N, int C)
{
    for (int c = 0; c < C; c++) {
        double s = 0;
        for (int n = 0; n < N; n++)
            s += in[(size_t)n * C + c];
        double m = s / N, ss = 0;
        for (int n = 0; n < N; n++) {
            double d = in[(size_t)n * C + c] - m;
            ss += d * d;
        }
        mean[c] = m;
        if (var_biased)
            var_biased[c] = ss / N;
        if (var_unbiased)
            var_unbiased[c] = N > 1 ? ss / (N - 1) : 0;
    }
}

/* Training-mode batch norm of in (N,C): batch mean, biased variance, eps 1e-5. */
static void ref_batchnorm_train(double *out, const double *in, const double *gamma,
                                const double *beta, int N, int C)
{
    double *mean = dnew(C), *var = dnew(C);
    ref_batch_stats(mean, var, NULL, in, N, C);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            out[(size_t)n * C + c] =
                gamma[c] * (in[(size_t)n * C + c] - mean[c]) / sqrt(var[c] + BN_EPS) + beta[c];
    free(mean);
    free(var);
}

/* Eval-mode batch norm with given running statistics. */
static void ref_batchnorm_eval(double *out, const double *in, const double *gamma,
                               const double *beta, const double *rmean, const double *rvar, int N,
                               int C)
{
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            out[(size_t)n * C + c] =
                gamma[c] * (in[(size_t)n * C + c] - rmean[c]) / sqrt(rvar[c] + BN_EPS) + beta[c];
}

static void ref_relu6(double *out, const double *in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = in[i] < 0 ? 0 : in[i] > 6 ? 6 : in[i];
}

/* out (B,C) = mean over HW of in (B,HW,C). */
static void ref_avgpool(double *out, const double *in, int B, int HW, int C)
{
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            double s = 0;
            for (int p = 0; p < HW; p++)
                s += in[((size_t)b * HW + p) * C + c];
            out[(size_t)b * C + c] = s / HW;
        }
}

/* out (B,O) = in (B,I) @ w (I,O) + bias (O). */
static void ref_linear(double *out, const double *in, const double *w, const double *bias, int B,
                       int In, int Out)
{
    for (int b = 0; b < B; b++)
        for (int o = 0; o < Out; o++) {
            double acc = bias[o];
            for (int i = 0; i < In; i++)
                acc += in[(size_t)b * In + i] * w[(size_t)i * Out + o];
            out[(size_t)b * Out + o] = acc;
        }
}

/* Mean softmax cross-entropy over B rows of logits (B,K), target eps/K on every class plus
 * 1-eps on the label. probs (B,K) may be NULL. */
static double ref_xent(double *probs, const double *logits, const unsigned char *labels, int B,
                       int K, double eps)
{
    double total = 0;
    for (int b = 0; b < B; b++) {
        const double *z = logits + (size_t)b * K;
        double m = z[0];
        for (int k = 1; k < K; k++)
            if (z[k] > m)
                m = z[k];
        double s = 0;
        for (int k = 0; k < K; k++)
            s += exp(z[k] - m);
        double lse = m + log(s);
        for (int k = 0; k < K; k++) {
            double target = eps / K + (k == labels[b] ? 1 - eps : 0);
            total += target * (lse - z[k]);
            if (probs)
                probs[(size_t)b * K + k] = exp(z[k] - lse);
        }
    }
    return total / B;
}

/* out (N,C) = in (N,C) * mask (C). */
static void ref_channel_mask(double *out, const double *in, const double *mask, int N, int C)
{
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            out[(size_t)n * C + c] = in[(size_t)n * C + c] * mask[c];
}

/* ---------- finite differences ---------- */

enum ref_op { REF_CONV, REF_DEPTHWISE, REF_POINTWISE, REF_BATCHNORM, REF_RELU6, REF_AVGPOOL,
              REF_LINEAR, REF_XENT, REF_CHANNEL_MASK };

/* One problem for the finite-difference driver: the op's float64 inputs (in; w = weights,
 * gamma or mask; b = beta or bias), sizes, and R. The objective is sum(out * R), or the loss
 * itself for REF_XENT. */
struct problem {
    enum ref_op op;
    int B, H, W, Ci, Co, k, stride; /* N = B for pointwise/bn/mask; HW = H for avgpool */
    double *in, *w, *b, *R, *out;
    size_t nout;
    const unsigned char *labels;
    double smoothing;
};

static double objective(struct problem *p)
{
    switch (p->op) {
    case REF_CONV:
        ref_conv(p->out, p->in, p->w, p->B, p->H, p->W, p->Ci, p->Co, p->k, p->stride);
        break;
    case REF_DEPTHWISE:
        ref_depthwise(p->out, p->in, p->w, p->B, p->H, p->W, p->Ci, p->k, p->stride);
        break;
    case REF_POINTWISE:
        ref_pointwise(p->out, p->in, p->w, p->B, p->Ci, p->Co);
        break;
    case REF_BATCHNORM:
        ref_batchnorm_train(p->out, p->in, p->w, p->b, p->B, p->Ci);
        break;
    case REF_RELU6:
        ref_relu6(p->out, p->in, p->nout);
        break;
    case REF_AVGPOOL:
        ref_avgpool(p->out, p->in, p->B, p->H, p->Ci);
        break;
    case REF_LINEAR:
        ref_linear(p->out, p->in, p->w, p->b, p->B, p->Ci, p->Co);
        break;
    case REF_XENT:
        return ref_xent(NULL, p->in, p->labels, p->B, p->Co, p->smoothing);
    case REF_CHANNEL_MASK:
        ref_channel_mask(p->out, p->in, p->w, p->B, p->Ci);
        break;
    }
    double s = 0;
    for (size_t i = 0; i < p->nout; i++)
        s += p->out[i] * p->R[i];
    return s;
}

/* g[i] = (L(x + h e_i) - L(x - h e_i)) / 2h for every element of x, which is one of p's inputs. */
static double *numeric_grad(struct problem *p, double *x, size_t n)
{
    double *g = dnew(n);
    for (size_t i = 0; i < n; i++) {
        double saved = x[i];
        x[i] = saved + FD_STEP;
        double lp = objective(p);
        x[i] = saved - FD_STEP;
        double lm = objective(p);
        x[i] = saved;
        g[i] = (lp - lm) / (2 * FD_STEP);
    }
    return g;
}

#define CHECK(call)        \
    do {                   \
        int ok_ = (call);  \
        CU_ASSERT(ok_);    \
    } while (0)

/* ---------- shapes ---------- */

struct conv_shape {
    int B, H, W, Ci, Co, k, stride;
};

static const struct conv_shape CONV_FWD_SHAPES[] = {
    {1, 7, 7, 3, 8, 3, 1}, {3, 7, 7, 3, 8, 3, 2}, {3, 5, 9, 4, 5, 1, 1}, {1, 9, 9, 2, 3, 5, 2},
    {3, 8, 8, 4, 6, 3, 2}, {2, 5, 5, 3, 4, 5, 1}, {1, 7, 5, 16, 24, 1, 2}, {3, 28, 28, 1, 16, 3, 1},
    {1, 1, 1, 3, 2, 3, 1}, {2, 14, 14, 16, 24, 3, 2},
};

static const struct conv_shape CONV_GRAD_SHAPES[] = {
    {1, 5, 5, 2, 3, 3, 1}, {3, 5, 7, 2, 3, 3, 2}, {2, 5, 5, 3, 2, 1, 1}, {1, 7, 7, 2, 2, 5, 1},
    {2, 5, 5, 2, 3, 1, 2}, {1, 6, 6, 3, 2, 3, 2}, {1, 5, 5, 2, 2, 5, 2},
};

/* For depthwise: Ci is C, Co unused. */
static const struct conv_shape DW_FWD_SHAPES[] = {
    {1, 7, 7, 5, 0, 3, 1}, {3, 7, 7, 5, 0, 3, 2}, {1, 5, 5, 8, 0, 5, 1}, {3, 9, 9, 3, 0, 5, 2},
    {1, 9, 9, 4, 0, 7, 1}, {3, 7, 7, 6, 0, 7, 2}, {2, 5, 9, 16, 0, 7, 1}, {3, 8, 8, 17, 0, 3, 2},
    {1, 14, 14, 24, 0, 5, 2}, {1, 3, 3, 2, 0, 7, 1},
    /* rows wide enough for the DW_PIXELS-at-once path (with 16-, 8-wide and scalar channels) */
    {1, 12, 12, 40, 0, 3, 1}, {2, 9, 16, 18, 0, 5, 1}, {1, 13, 21, 8, 0, 7, 2},
    /* 8k channels: the sliding-window tiles, whole and checked at both ends of a row */
    {2, 28, 28, 16, 0, 3, 2}, {1, 11, 11, 48, 0, 3, 2}, {1, 7, 7, 32, 0, 7, 1},
    {1, 10, 17, 24, 0, 5, 2}, {1, 6, 9, 8, 0, 7, 2}, {1, 2, 3, 8, 0, 3, 1},
};

static const struct conv_shape DW_GRAD_SHAPES[] = {
    {1, 5, 5, 3, 0, 3, 1}, {3, 5, 5, 2, 0, 3, 2}, {1, 7, 7, 2, 0, 5, 1}, {2, 5, 7, 3, 0, 5, 2},
    {1, 7, 7, 2, 0, 7, 1}, {3, 7, 7, 2, 0, 7, 2}, {1, 6, 6, 2, 0, 3, 2},
    /* channel counts that take the 32- and 8-wide vector paths and the scalar tail */
    {2, 9, 9, 18, 0, 5, 2}, {1, 6, 5, 42, 0, 3, 1}, {1, 5, 5, 40, 0, 7, 2},
    /* stride-1 rows wide enough for the input gradient's DW_PIXELS-at-once path */
    {1, 6, 12, 40, 0, 3, 1}, {2, 7, 13, 18, 0, 5, 1}, {1, 9, 16, 3, 0, 7, 1},
    /* 8k channels: the sliding-window weight gradient (and at stride 1 the input gradient) */
    {1, 6, 7, 8, 0, 5, 1}, {1, 7, 6, 16, 0, 3, 2}, {1, 5, 9, 8, 0, 7, 1}, {2, 4, 4, 8, 0, 3, 1},
    {1, 9, 10, 8, 0, 5, 2},
};

/* ---------- conv problems ---------- */

/* The float buffers of one conv (or depthwise) problem of shape s: in, w and, with_dout, R (the
 * gradient of out) drawn in that order in [-1, 1); out, din and for a dense conv col and dcol
 * zero. A depthwise shape has Ci channels in and out and w (k,k,Ci). */
struct conv_bufs {
    struct conv_shape s;
    int depthwise;
    size_t nin, nw, nout, ncol;
    float *in, *w, *R, *out, *col, *dcol, *din;
};

static struct conv_bufs conv_bufs_new(struct conv_shape s, int depthwise, int with_dout)
{
    struct conv_bufs c = {.s = s, .depthwise = depthwise};
    int Ho = ref_out_size(s.H, s.k, s.stride), Wo = ref_out_size(s.W, s.k, s.stride);
    c.nin = (size_t)s.B * s.H * s.W * s.Ci;
    c.nw = (size_t)s.k * s.k * s.Ci * (depthwise ? 1 : s.Co);
    c.nout = (size_t)s.B * Ho * Wo * (depthwise ? s.Ci : s.Co);
    c.ncol = depthwise ? 0 : (size_t)s.B * Ho * Wo * s.k * s.k * s.Ci;
    c.in = frand(c.nin, -1, 1);
    c.w = frand(c.nw, -1, 1);
    c.R = with_dout ? frand(c.nout, -1, 1) : NULL;
    c.out = fnew(c.nout);
    c.col = depthwise ? NULL : fnew(c.ncol);
    c.dcol = depthwise ? NULL : fnew(c.ncol);
    c.din = fnew(c.nin);
    return c;
}

static void conv_bufs_free(struct conv_bufs *c)
{
    free(c->in), free(c->w), free(c->R), free(c->out), free(c->col), free(c->dcol), free(c->din);
}

/* "conv B1 H5 W5 Ci2 Co3 k3 s1 PART" (or "depthwise B1 H5 W5 C3 k3 s1 PART"); static buffer. */
static const char *conv_label(const struct conv_bufs *c, const char *part)
{
    static char what[128];
    struct conv_shape s = c->s;
    if (c->depthwise)
        snprintf(what, sizeof what, "depthwise B%d H%d W%d C%d k%d s%d %s", s.B, s.H, s.W, s.Ci,
                 s.k, s.stride, part);
    else
        snprintf(what, sizeof what, "conv B%d H%d W%d Ci%d Co%d k%d s%d %s", s.B, s.H, s.W, s.Ci,
                 s.Co, s.k, s.stride, part);
    return what;
}

/* c's din and dw (the backward's results) against central differences of its reference. */
static void check_conv_grads(const struct conv_bufs *c, const float *dw)
{
    struct conv_shape s = c->s;
    struct problem p = {.op = c->depthwise ? REF_DEPTHWISE : REF_CONV, .B = s.B, .H = s.H,
                        .W = s.W, .Ci = s.Ci, .Co = s.Co, .k = s.k, .stride = s.stride,
                        .in = to_double(c->in, c->nin), .w = to_double(c->w, c->nw),
                        .R = to_double(c->R, c->nout), .out = dnew(c->nout), .nout = c->nout};
    double *g_in = numeric_grad(&p, p.in, c->nin), *g_w = numeric_grad(&p, p.w, c->nw);
    CHECK(close_grad(conv_label(c, "din"), c->din, g_in, c->nin));
    CHECK(close_grad(conv_label(c, "dw"), dw, g_w, c->nw));
    free(p.in), free(p.w), free(p.R), free(p.out), free(g_in), free(g_w);
}

/* ---------- forward tests ---------- */

TEST(conv_out_size_matches_padding_rule)
{
    for (int n = 1; n <= 30; n++)
        for (int k = 1; k <= 7; k += 2)
            for (int s = 1; s <= 2; s++)
                EXPECT_EQ_INT(op_conv_out_size(n, k, s), ref_out_size(n, k, s));
    EXPECT_EQ_INT(op_conv_out_size(7, 3, 2), 4);
    EXPECT_EQ_INT(op_conv_out_size(28, 3, 2), 14);
    EXPECT_EQ_INT(op_conv_out_size(5, 5, 1), 5);
}

TEST(conv_forward_matches_reference)
{
    rng_seed(101);
    for (size_t t = 0; t < OFFNAS_ARRAY_LEN(CONV_FWD_SHAPES); t++) {
        struct conv_bufs c = conv_bufs_new(CONV_FWD_SHAPES[t], 0, 0);
        struct conv_shape s = c.s;
        ffill(c.out, c.nout, 1e30f);
        op_conv_forward(c.out, c.col, c.in, c.w, s.B, s.H, s.W, s.Ci, s.Co, s.k, s.stride);
        double *din = to_double(c.in, c.nin), *dw = to_double(c.w, c.nw), *ref = dnew(c.nout);
        ref_conv(ref, din, dw, s.B, s.H, s.W, s.Ci, s.Co, s.k, s.stride);
        CHECK(close_fwd(conv_label(&c, "out"), c.out, ref, c.nout));
        conv_bufs_free(&c);
        free(din), free(dw), free(ref);
    }
}

TEST(depthwise_forward_matches_reference)
{
    rng_seed(102);
    for (size_t t = 0; t < OFFNAS_ARRAY_LEN(DW_FWD_SHAPES); t++) {
        struct conv_bufs c = conv_bufs_new(DW_FWD_SHAPES[t], 1, 0);
        struct conv_shape s = c.s;
        ffill(c.out, c.nout, 1e30f);
        op_depthwise_forward(c.out, c.in, c.w, s.B, s.H, s.W, s.Ci, s.k, s.stride);
        double *din = to_double(c.in, c.nin), *dw = to_double(c.w, c.nw), *ref = dnew(c.nout);
        ref_depthwise(ref, din, dw, s.B, s.H, s.W, s.Ci, s.k, s.stride);
        CHECK(close_fwd(conv_label(&c, "out"), c.out, ref, c.nout));
        conv_bufs_free(&c);
        free(din), free(dw), free(ref);
    }
}

TEST(pointwise_forward_matches_reference)
{
    static const int shapes[][3] = {{1, 1, 1}, {1, 3, 5}, {49, 8, 16}, {147, 16, 24}, {75, 17, 3}, {2, 64, 128}};
    rng_seed(103);
    for (size_t t = 0; t < OFFNAS_ARRAY_LEN(shapes); t++) {
        int N = shapes[t][0], Ci = shapes[t][1], Co = shapes[t][2];
        size_t nin = (size_t)N * Ci, nw = (size_t)Ci * Co, nout = (size_t)N * Co;
        float *in = frand(nin, -1, 1), *w = frand(nw, -1, 1), *out = fnew(nout);
        ffill(out, nout, 1e30f);
        op_pointwise_forward(out, in, w, N, Ci, Co);
        double *din = to_double(in, nin), *dw = to_double(w, nw), *ref = dnew(nout);
        ref_pointwise(ref, din, dw, N, Ci, Co);
        char what[96];
        snprintf(what, sizeof what, "pointwise N%d Ci%d Co%d out", N, Ci, Co);
        CHECK(close_fwd(what, out, ref, nout));
        free(in), free(w), free(out), free(din), free(dw), free(ref);
    }
}

TEST(batchnorm_forward_training_matches_reference)
{
    static const int shapes[][2] = {{2, 1}, {18, 4}, {49, 5}, {147, 24}, {3, 7}, {200, 45}};
    rng_seed(104);
    for (size_t t = 0; t < OFFNAS_ARRAY_LEN(shapes); t++) {
        int N = shapes[t][0], C = shapes[t][1];
        size_t n = (size_t)N * C;
        float *in = frand(n, -2, 3), *gamma = frand(C, 0.5, 1.5), *beta = frand(C, -1, 1);
        float *out = fnew(n), *mean = fnew(C), *rstd = fnew(C);
        float *rmean = frand(C, -1, 1), *rvar = frand(C, 0.5, 2);
        op_batchnorm_forward(out, mean, rstd, in, gamma, beta, rmean, rvar, N, C, 1, 0.1f);
        double *d_in = to_double(in, n), *d_g = to_double(gamma, C), *d_b = to_double(beta, C);
        double *ref = dnew(n), *ref_mean = dnew(C), *var = dnew(C), *ref_rstd = dnew(C);
        ref_batchnorm_train(ref, d_in, d_g, d_b, N, C);
        ref_batch_stats(ref_mean, var, NULL, d_in, N, C);
        for (int c = 0; c < C; c++)
            ref_rstd[c] = 1 / sqrt(var[c] + BN_EPS);
        char what[96];
        snprintf(what, sizeof what, "batchnorm train N%d C%d out", N, C);
        CHECK(close_fwd(what, out, ref, n));
        snprintf(what, sizeof what, "batchnorm train N%d C%d saved mean", N, C);
        CHECK(close_fwd(what, mean, ref_mean, C));
        snprintf(what, sizeof what, "batchnorm train N%d C%d saved rstd = 1/sqrt(biased var + eps)", N, C);
        CHECK(close_fwd(what, rstd, ref_rstd, C));
        free(in), free(gamma), free(beta), free(out), free(mean), free(rstd), free(rmean), free(rvar);
        free(d_in), free(d_g), free(d_b), free(ref), free(ref_mean), free(var), free(ref_rstd);
    }
}

/* A channel whose values are all equal has variance 0: the output must be beta, finite. */
TEST(batchnorm_constant_channel_is_finite)
{
    int N = 6, C = 2;
    float in[12], gamma[2] = {1.5f, 0.7f}, beta[2] = {0.25f, -0.5f}, out[12], mean[2], rstd[2];
    float rmean[2] = {0, 0}, rvar[2] = {1, 1};
    for (int n = 0; n < N; n++) {
        in[n * C] = 3.0f;
        in[n * C + 1] = (float)n;
    }
    op_batchnorm_forward(out, mean, rstd, in, gamma, beta, rmean, rvar, N, C, 1, 0.1f);
    for (int n = 0; n < N; n++) {
        EXPECT_NEAR(out[n * C], beta[0], 1e-4);
        CU_ASSERT(isfinite(out[n * C + 1]));
    }
    EXPECT_NEAR(rvar[0], 0.9, 1e-6); /* batch variance 0 */
}

TEST(batchnorm_running_stats_update)
{
    static const int shapes[][2] = {{2, 3}, {18, 4}, {147, 24}};
    static const float momenta[] = {0.1f, 0.01f, 1.0f};
    rng_seed(105);
    for (size_t t = 0; t < OFFNAS_ARRAY_LEN(shapes); t++) {
        int N = shapes[t][0], C = shapes[t][1];
        float m = momenta[t];
        size_t n = (size_t)N * C;
        float *in = frand(n, -2, 3), *gamma = frand(C, 0.5, 1.5), *beta = frand(C, -1, 1);
        float *out = fnew(n), *mean = fnew(C), *rstd = fnew(C);
        float *rmean = frand(C, -1, 1), *rvar = frand(C, 0.5, 2);
        double *old_mean = to_double(rmean, C), *old_var = to_double(rvar, C);
        op_batchnorm_forward(out, mean, rstd, in, gamma, beta, rmean, rvar, N, C, 1, m);
        double *d_in = to_double(in, n), *bmean = dnew(C), *uvar = dnew(C);
        double *exp_mean = dnew(C), *exp_var = dnew(C);
        ref_batch_stats(bmean, NULL, uvar, d_in, N, C);
        for (int c = 0; c < C; c++) {
            exp_mean[c] = (1 - (double)m) * old_mean[c] + m * bmean[c];
            exp_var[c] = (1 - (double)m) * old_var[c] + m * uvar[c]; /* unbiased, N/(N-1) */
        }
        char what[128];
        snprintf(what, sizeof what, "batchnorm N%d C%d momentum %g running_mean", N, C, m);
        CHECK(close_fwd(what, rmean, exp_mean, C));
        snprintf(what, sizeof what, "batchnorm N%d C%d momentum %g running_var (unbiased)", N, C, m);
        CHECK(close_fwd(what, rvar, exp_var, C));
        free(in), free(gamma), free(beta), free(out), free(mean), free(rstd), free(rmean), free(rvar);
        free(old_mean), free(old_var), free(d_in), free(bmean), free(uvar), free(exp_mean), free(exp_var);
    }
}

TEST(batchnorm_eval_uses_running_stats)
{
    rng_seed(106);
    int N = 30, C = 7;
    size_t n = (size_t)N * C;
    float *in = frand(n, -2, 3), *gamma = frand(C, 0.5, 1.5), *beta = frand(C, -1, 1);
    float *out = fnew(n), *mean = fnew(C), *rstd = fnew(C);
    float *rmean = frand(C, -1, 1), *rvar = frand(C, 0.5, 2);
    float *rmean0 = fcopy(rmean, C), *rvar0 = fcopy(rvar, C);
    op_batchnorm_forward(out, mean, rstd, in, gamma, beta, rmean, rvar, N, C, 0, 0.1f);
    double *d_in = to_double(in, n), *d_g = to_double(gamma, C), *d_b = to_double(beta, C);
    double *d_rm = to_double(rmean0, C), *d_rv = to_double(rvar0, C), *ref = dnew(n);
    ref_batchnorm_eval(ref, d_in, d_g, d_b, d_rm, d_rv, N, C);
    CHECK(close_fwd("batchnorm eval N30 C7 out", out, ref, n));
    /* eval leaves the running averages alone */
    CU_ASSERT(memcmp(rmean, rmean0, C * sizeof(float)) == 0);
    CU_ASSERT(memcmp(rvar, rvar0, C * sizeof(float)) == 0);
    /* eval may run in place */
    float *inplace = fcopy(in, n);
    op_batchnorm_forward(inplace, mean, rstd, inplace, gamma, beta, rmean, rvar, N, C, 0, 0.1f);
    CHECK(close_fwd("batchnorm eval in place", inplace, ref, n));
    free(in), free(gamma), free(beta), free(out), free(mean), free(rstd), free(rmean), free(rvar);
    free(rmean0), free(rvar0), free(d_in), free(d_g), free(d_b), free(d_rm), free(d_rv), free(ref);
    free(inplace);
}

/* Eval-mode batch-norm statistics and parameters for C channels, and the affine they fold to. */
struct eval_bn {
    float *gamma, *beta, *rmean, *rvar, *scale, *shift;
    double *d_gamma, *d_beta, *d_rmean, *d_rvar;
};

static struct eval_bn eval_bn_new(int C)
{
    struct eval_bn e = {.gamma = frand(C, 0.5, 1.5), .beta = frand(C, -1, 1),
                        .rmean = frand(C, -1, 1), .rvar = frand(C, 0.5, 2), .scale = fnew(C),
                        .shift = fnew(C)};
    op_batchnorm_eval_fold(e.scale, e.shift, e.gamma, e.beta, e.rmean, e.rvar, C);
    e.d_gamma = to_double(e.gamma, C), e.d_beta = to_double(e.beta, C);
    e.d_rmean = to_double(e.rmean, C), e.d_rvar = to_double(e.rvar, C);
    return e;
}

static void eval_bn_free(struct eval_bn *e)
{
    free(e->gamma), free(e->beta), free(e->rmean), free(e->rvar), free(e->scale), free(e->shift);
    free(e->d_gamma), free(e->d_beta), free(e->d_rmean), free(e->d_rvar);
}

/* ref = act(bn_eval(ref) [+ residual]) in place, the float64 composition the affine ops fuse. */
static void ref_affine(double *ref, const struct eval_bn *e, const double *residual, size_t N,
                       int C, int relu6)
{
    ref_batchnorm_eval(ref, ref, e->d_gamma, e->d_beta, e->d_rmean, e->d_rvar, (int)N, C);
    for (size_t i = 0; residual && i < N * C; i++)
        ref[i] += residual[i];
    if (relu6)
        ref_relu6(ref, ref, N * C);
}

TEST(affine_forwards_match_conv_then_eval_batchnorm)
{
    char what[128];
    rng_seed(120);
    /* pointwise, with every tile of gemm_affine (48, 32+32, 40, 32, 24, 16 and 8 wide, the
     * scalar tail; whole and partial row tiles; weights in place and packed), the residual and
     * both activations */
    static const int pw[][3] = {{1, 1, 1},     {9, 5, 7},    {17, 16, 48}, {49, 96, 24},
                                {300, 24, 72}, {70, 13, 61}, {8, 144, 40}, {5, 8, 64},
                                {12, 7, 16},   {20, 9, 96},  {3, 4, 144},  {11, 6, 32},
                                /* weights of more than 16384 floats: packed first */
                                {9, 130, 136}, {20, 200, 100}};
    for (size_t t = 0; t < OFFNAS_ARRAY_LEN(pw); t++)
        for (int variant = 0; variant < 2; variant++) {
            int N = pw[t][0], Ci = pw[t][1], Co = pw[t][2], relu6 = !variant;
            size_t nin = (size_t)N * Ci, nout = (size_t)N * Co;
            float *in = frand(nin, -1, 1), *w = frand((size_t)Ci * Co, -1, 1), *out = fnew(nout);
            float *res = variant ? frand(nout, -1, 1) : NULL;
            struct eval_bn e = eval_bn_new(Co);
            ffill(out, nout, 1e30f);
            op_pointwise_affine_forward(out, in, w, e.scale, e.shift, res, N, Ci, Co, relu6);
            double *din = to_double(in, nin), *dw = to_double(w, (size_t)Ci * Co);
            double *dres = res ? to_double(res, nout) : NULL, *ref = dnew(nout);
            ref_pointwise(ref, din, dw, N, Ci, Co);
            ref_affine(ref, &e, dres, (size_t)N, Co, relu6);
            snprintf(what, sizeof what, "pointwise affine N%d Ci%d Co%d %s", N, Ci, Co,
                     variant ? "+residual" : "relu6");
            CHECK(close_fwd(what, out, ref, nout));
            free(in), free(w), free(out), free(res), free(din), free(dw), free(dres), free(ref);
            eval_bn_free(&e);
        }
    /* depthwise: the same sums as op_depthwise_forward and the same affine as the eval batch
     * norm, so the same bits as the two ops in a row */
    for (size_t t = 0; t < OFFNAS_ARRAY_LEN(DW_FWD_SHAPES); t++) {
        struct conv_bufs c = conv_bufs_new(DW_FWD_SHAPES[t], 1, 0);
        struct conv_shape s = c.s;
        struct eval_bn e = eval_bn_new(s.Ci);
        float *fused = fnew(c.nout), *mean = fnew(s.Ci), *rstd = fnew(s.Ci);
        ffill(fused, c.nout, 1e30f);
        op_depthwise_affine_forward(fused, c.in, c.w, e.scale, e.shift, s.B, s.H, s.W, s.Ci, s.k,
                                    s.stride, 1);
        op_depthwise_forward(c.out, c.in, c.w, s.B, s.H, s.W, s.Ci, s.k, s.stride);
        op_batchnorm_relu6_forward(c.out, mean, rstd, c.out, e.gamma, e.beta, e.rmean, e.rvar,
                                   (int)(c.nout / s.Ci), s.Ci, 0, 0.1f);
        int same = !memcmp(fused, c.out, c.nout * sizeof(float));
        if (!same)
            fprintf(stderr, "\n  %s: fused and composed differ\n", conv_label(&c, "out"));
        CU_ASSERT(same);
        /* and both against float64 */
        double *din = to_double(c.in, c.nin), *dw = to_double(c.w, c.nw), *ref = dnew(c.nout);
        ref_depthwise(ref, din, dw, s.B, s.H, s.W, s.Ci, s.k, s.stride);
        ref_affine(ref, &e, NULL, c.nout / s.Ci, s.Ci, 1);
        CHECK(close_fwd(conv_label(&c, "affine out"), fused, ref, c.nout));
        conv_bufs_free(&c);
        eval_bn_free(&e);
        free(fused), free(mean), free(rstd), free(din), free(dw), free(ref);
    }
    /* the stem's direct convolution */
    for (size_t t = 0; t < OFFNAS_ARRAY_LEN(CONV_FWD_SHAPES); t++) {
        struct conv_bufs c = conv_bufs_new(CONV_FWD_SHAPES[t], 0, 0);
        struct conv_shape s = c.s;
        struct eval_bn e = eval_bn_new(s.Co);
        for (int relu6 = 0; relu6 < 2; relu6++) {
            ffill(c.out, c.nout, 1e30f);
            op_conv_affine_forward(c.out, c.in, c.w, e.scale, e.shift, s.B, s.H, s.W, s.Ci, s.Co,
                                   s.k, s.stride, relu6);
            double *din = to_double(c.in, c.nin), *dw = to_double(c.w, c.nw), *ref = dnew(c.nout);
            ref_conv(ref, din, dw, s.B, s.H, s.W, s.Ci, s.Co, s.k, s.stride);
            ref_affine(ref, &e, NULL, c.nout / s.Co, s.Co, relu6);
            CHECK(close_fwd(conv_label(&c, relu6 ? "affine relu6 out" : "affine out"), c.out, ref,
                            c.nout));
            free(din), free(dw), free(ref);
        }
        conv_bufs_free(&c);
        eval_bn_free(&e);
    }
}

TEST(relu6_forward_matches_reference)
{
    rng_seed(107);
    size_t n = 1001;
    float *in = frand(n, -3, 9), *out = fnew(n);
    in[0] = 0, in[1] = 6, in[2] = -0.0f, in[3] = 5.999f, in[4] = 1e-7f, in[5] = 100;
    op_relu6_forward(out, in, n);
    double *d_in = to_double(in, n), *ref = dnew(n);
    ref_relu6(ref, d_in, n);
    CHECK(close_fwd("relu6 out", out, ref, n));
    float *inplace = fcopy(in, n);
    op_relu6_forward(inplace, inplace, n);
    CHECK(close_fwd("relu6 in place", inplace, ref, n));
    free(in), free(out), free(d_in), free(ref), free(inplace);
}

TEST(add_forward_and_aliasing)
{
    rng_seed(108);
    size_t n = 333;
    float *a = frand(n, -1, 1), *b = frand(n, -1, 1), *out = fnew(n);
    double *ref = dnew(n);
    for (size_t i = 0; i < n; i++)
        ref[i] = (double)a[i] + b[i];
    op_add_forward(out, a, b, n);
    CHECK(close_fwd("add out", out, ref, n));
    float *a2 = fcopy(a, n), *b2 = fcopy(b, n);
    op_add_forward(a2, a2, b, n);
    CHECK(close_fwd("add out aliasing a", a2, ref, n));
    op_add_forward(b2, a, b2, n);
    CHECK(close_fwd("add out aliasing b", b2, ref, n));
    free(a), free(b), free(out), free(ref), free(a2), free(b2);
}

TEST(avgpool_forward_matches_reference)
{
    static const int shapes[][3] = {{1, 1, 3}, {3, 49, 8}, {2, 25, 128}, {1, 9, 1}};
    rng_seed(109);
    for (size_t t = 0; t < OFFNAS_ARRAY_LEN(shapes); t++) {
        int B = shapes[t][0], HW = shapes[t][1], C = shapes[t][2];
        size_t nin = (size_t)B * HW * C, nout = (size_t)B * C;
        float *in = frand(nin, -1, 3), *out = fnew(nout);
        op_avgpool_forward(out, in, B, HW, C);
        double *d_in = to_double(in, nin), *ref = dnew(nout);
        ref_avgpool(ref, d_in, B, HW, C);
        char what[96];
        snprintf(what, sizeof what, "avgpool B%d HW%d C%d out", B, HW, C);
        CHECK(close_fwd(what, out, ref, nout));
        free(in), free(out), free(d_in), free(ref);
    }
}

TEST(linear_forward_matches_reference)
{
    static const int shapes[][3] = {{1, 1, 1}, {3, 128, 10}, {1, 7, 5}, {5, 64, 33}};
    rng_seed(110);
    for (size_t t = 0; t < OFFNAS_ARRAY_LEN(shapes); t++) {
        int B = shapes[t][0], In = shapes[t][1], Out = shapes[t][2];
        size_t nin = (size_t)B * In, nw = (size_t)In * Out, nout = (size_t)B * Out;
        float *in = frand(nin, -1, 1), *w = frand(nw, -1, 1), *bias = frand(Out, -1, 1);
        float *out = fnew(nout);
        ffill(out, nout, 1e30f);
        op_linear_forward(out, in, w, bias, B, In, Out);
        double *d_in = to_double(in, nin), *d_w = to_double(w, nw), *d_b = to_double(bias, Out);
        double *ref = dnew(nout);
        ref_linear(ref, d_in, d_w, d_b, B, In, Out);
        char what[96];
        snprintf(what, sizeof what, "linear B%d In%d Out%d out", B, In, Out);
        CHECK(close_fwd(what, out, ref, nout));
        free(in), free(w), free(bias), free(out), free(d_in), free(d_w), free(d_b), free(ref);
    }
}

TEST(softmax_xent_forward_loss_probs_correct)
{
    static const float smoothings[] = {0.0f, 0.1f, 0.3f};
    rng_seed(111);
    int B = 7, K = 10;
    for (size_t t = 0; t < OFFNAS_ARRAY_LEN(smoothings); t++) {
        float eps = smoothings[t];
        size_t n = (size_t)B * K;
        float *logits = frand(n, -3, 3), *probs = fnew(n);
        unsigned char labels[7];
        int expect_correct = 0;
        for (int b = 0; b < B; b++) {
            int am = 0;
            for (int k = 1; k < K; k++)
                if (logits[b * K + k] > logits[b * K + am])
                    am = k;
            /* rows 0, 2, 4, 6 are labelled with their argmax, the others with a different class */
            labels[b] = (unsigned char)(b % 2 == 0 ? am : (am + 1 + b) % K);
            expect_correct += labels[b] == am;
        }
        int correct = -1;
        float loss = op_softmax_xent_forward(probs, &correct, logits, labels, B, K, eps);
        double *d_logits = to_double(logits, n), *ref_probs = dnew(n);
        double ref_loss = ref_xent(ref_probs, d_logits, labels, B, K, eps);
        EXPECT_NEAR(loss, ref_loss, FWD_RTOL * (1 + fabs(ref_loss)));
        CHECK(close_fwd("softmax probs", probs, ref_probs, n));
        EXPECT_EQ_INT(correct, expect_correct);
        EXPECT_EQ_INT(expect_correct, 4);
        /* correct may be NULL */
        float loss2 = op_softmax_xent_forward(probs, NULL, logits, labels, B, K, eps);
        EXPECT_NEAR(loss2, ref_loss, FWD_RTOL * (1 + fabs(ref_loss)));
        free(logits), free(probs), free(d_logits), free(ref_probs);
    }
}

/* Large logits must not overflow exp(): the max is subtracted first. */
TEST(softmax_xent_forward_large_logits_stable)
{
    int B = 2, K = 4;
    float logits[8] = {1000, 999, 998, -1000, -500, -501, -499, -1000};
    unsigned char labels[2] = {0, 3};
    float probs[8];
    int correct = -1;
    float loss = op_softmax_xent_forward(probs, &correct, logits, labels, B, K, 0.1f);
    double d_logits[8], ref_probs[8];
    for (int i = 0; i < 8; i++)
        d_logits[i] = logits[i];
    double ref_loss = ref_xent(ref_probs, d_logits, labels, B, K, 0.1);
    CU_ASSERT(isfinite(loss));
    EXPECT_NEAR(loss, ref_loss, FWD_RTOL * (1 + fabs(ref_loss)));
    CHECK(close_fwd("softmax probs, large logits", probs, ref_probs, 8));
    EXPECT_EQ_INT(correct, 1);
}

TEST(channel_mask_forward_and_aliasing)
{
    rng_seed(112);
    int N = 21, C = 6;
    size_t n = (size_t)N * C;
    float *in = frand(n, -2, 2), *out = fnew(n);
    float mask[6] = {1, 0, 1, 1, 0, 0.25f};
    op_channel_mask_forward(out, in, mask, N, C);
    double *d_in = to_double(in, n), *d_mask = to_double(mask, C), *ref = dnew(n);
    ref_channel_mask(ref, d_in, d_mask, N, C);
    CHECK(close_fwd("channel mask out", out, ref, n));
    float *inplace = fcopy(in, n);
    op_channel_mask_forward(inplace, inplace, mask, N, C);
    CHECK(close_fwd("channel mask in place", inplace, ref, n));
    free(in), free(out), free(d_in), free(d_mask), free(ref), free(inplace);
}

/* ---------- gradient tests ---------- */

TEST(conv_backward_matches_finite_differences)
{
    rng_seed(201);
    for (size_t t = 0; t < OFFNAS_ARRAY_LEN(CONV_GRAD_SHAPES); t++) {
        struct conv_bufs c = conv_bufs_new(CONV_GRAD_SHAPES[t], 0, 1);
        struct conv_shape s = c.s;
        float *dw = fnew(c.nw);
        ffill(c.din, c.nin, 123.0f); /* din is overwritten, not accumulated */
        op_conv_forward(c.out, c.col, c.in, c.w, s.B, s.H, s.W, s.Ci, s.Co, s.k, s.stride);
        op_conv_backward(c.din, dw, c.dcol, c.R, c.col, c.w, s.B, s.H, s.W, s.Ci, s.Co, s.k,
                         s.stride);
        check_conv_grads(&c, dw);
        conv_bufs_free(&c);
        free(dw);
    }
}

TEST(depthwise_backward_matches_finite_differences)
{
    rng_seed(202);
    for (size_t t = 0; t < OFFNAS_ARRAY_LEN(DW_GRAD_SHAPES); t++) {
        struct conv_bufs c = conv_bufs_new(DW_GRAD_SHAPES[t], 1, 1);
        struct conv_shape s = c.s;
        float *dw = fnew(c.nw);
        ffill(c.din, c.nin, 123.0f);
        op_depthwise_forward(c.out, c.in, c.w, s.B, s.H, s.W, s.Ci, s.k, s.stride);
        op_depthwise_backward(c.din, dw, c.R, c.in, c.w, s.B, s.H, s.W, s.Ci, s.k, s.stride);
        check_conv_grads(&c, dw);
        conv_bufs_free(&c);
        free(dw);
    }
}

TEST(pointwise_backward_matches_finite_differences)
{
    static const int shapes[][3] = {{1, 1, 1}, {6, 3, 5}, {25, 8, 4}, {9, 5, 16}};
    rng_seed(203);
    for (size_t t = 0; t < OFFNAS_ARRAY_LEN(shapes); t++) {
        int N = shapes[t][0], Ci = shapes[t][1], Co = shapes[t][2];
        size_t nin = (size_t)N * Ci, nw = (size_t)Ci * Co, nout = (size_t)N * Co;
        float *in = frand(nin, -1, 1), *w = frand(nw, -1, 1), *R = frand(nout, -1, 1);
        float *din = fnew(nin), *dw = fnew(nw);
        ffill(din, nin, 123.0f);
        op_pointwise_backward(din, dw, R, in, w, N, Ci, Co);
        struct problem p = {.op = REF_POINTWISE, .B = N, .Ci = Ci, .Co = Co,
                            .in = to_double(in, nin), .w = to_double(w, nw),
                            .R = to_double(R, nout), .out = dnew(nout), .nout = nout};
        double *g_in = numeric_grad(&p, p.in, nin), *g_w = numeric_grad(&p, p.w, nw);
        char what[96];
        snprintf(what, sizeof what, "pointwise N%d Ci%d Co%d din", N, Ci, Co);
        CHECK(close_grad(what, din, g_in, nin));
        snprintf(what, sizeof what, "pointwise N%d Ci%d Co%d dw", N, Ci, Co);
        CHECK(close_grad(what, dw, g_w, nw));
        free(in), free(w), free(R), free(din), free(dw);
        free(p.in), free(p.w), free(p.R), free(p.out), free(g_in), free(g_w);
    }
}

TEST(batchnorm_backward_matches_finite_differences)
{
    static const int shapes[][2] = {{2, 3}, {5, 2}, {18, 4}, {27, 3}, {70, 45}};
    rng_seed(204);
    for (size_t t = 0; t < OFFNAS_ARRAY_LEN(shapes); t++) {
        int N = shapes[t][0], C = shapes[t][1];
        size_t n = (size_t)N * C;
        float *in = frand(n, -2, 3), *gamma = frand(C, 0.5, 1.5), *beta = frand(C, -1, 1);
        float *R = frand(n, -1, 1), *out = fnew(n), *mean = fnew(C), *rstd = fnew(C);
        float *rmean = fnew(C), *rvar = fnew(C);
        ffill(rvar, C, 1);
        float *din = fnew(n), *dgamma = fnew(C), *dbeta = fnew(C);
        ffill(din, n, 123.0f);
        op_batchnorm_forward(out, mean, rstd, in, gamma, beta, rmean, rvar, N, C, 1, 0.1f);
        op_batchnorm_backward(din, dgamma, dbeta, R, in, mean, rstd, gamma, N, C);
        struct problem p = {.op = REF_BATCHNORM, .B = N, .Ci = C, .in = to_double(in, n),
                            .w = to_double(gamma, C), .b = to_double(beta, C),
                            .R = to_double(R, n), .out = dnew(n), .nout = n};
        double *g_in = numeric_grad(&p, p.in, n), *g_g = numeric_grad(&p, p.w, C);
        double *g_b = numeric_grad(&p, p.b, C);
        char what[96];
        snprintf(what, sizeof what, "batchnorm N%d C%d din", N, C);
        CHECK(close_grad(what, din, g_in, n));
        snprintf(what, sizeof what, "batchnorm N%d C%d dgamma", N, C);
        CHECK(close_grad(what, dgamma, g_g, C));
        snprintf(what, sizeof what, "batchnorm N%d C%d dbeta", N, C);
        CHECK(close_grad(what, dbeta, g_b, C));
        /* din may alias dout */
        float *alias = fcopy(R, n), *dgamma2 = fnew(C), *dbeta2 = fnew(C);
        op_batchnorm_backward(alias, dgamma2, dbeta2, alias, in, mean, rstd, gamma, N, C);
        snprintf(what, sizeof what, "batchnorm N%d C%d din aliasing dout", N, C);
        CHECK(close_same(what, alias, din, n, SAME_RTOL));
        snprintf(what, sizeof what, "batchnorm N%d C%d dgamma with din aliasing dout", N, C);
        CHECK(close_same(what, dgamma2, dgamma, C, SAME_RTOL));
        snprintf(what, sizeof what, "batchnorm N%d C%d dbeta with din aliasing dout", N, C);
        CHECK(close_same(what, dbeta2, dbeta, C, SAME_RTOL));
        free(in), free(gamma), free(beta), free(R), free(out), free(mean), free(rstd), free(rmean);
        free(rvar), free(din), free(dgamma), free(dbeta), free(alias), free(dgamma2), free(dbeta2);
        free(p.in), free(p.w), free(p.b), free(p.R), free(p.out), free(g_in), free(g_g), free(g_b);
    }
}

/* Inputs kept at least 0.01 away from the kinks at 0 and 6, so the finite difference with
 * h = 1e-4 never straddles one. */
static void fill_away_from_relu6_kinks(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float v;
        do
            v = (float)rng_uniform(-2, 8);
        while (fabsf(v) < 0.01f || fabsf(v - 6) < 0.01f);
        x[i] = v;
    }
}

TEST(relu6_backward_matches_finite_differences)
{
    rng_seed(205);
    size_t n = 300;
    float *in = fnew(n), *out = fnew(n), *R = frand(n, -1, 1), *din = fnew(n);
    fill_away_from_relu6_kinks(in, n);
    ffill(din, n, 123.0f);
    op_relu6_forward(out, in, n);
    op_relu6_backward(din, R, out, n);
    struct problem p = {.op = REF_RELU6, .in = to_double(in, n), .R = to_double(R, n),
                        .out = dnew(n), .nout = n};
    double *g_in = numeric_grad(&p, p.in, n);
    CHECK(close_grad("relu6 n300 din", din, g_in, n));
    free(in), free(out), free(R), free(din), free(p.in), free(p.R), free(p.out), free(g_in);
}

/* The backward takes the forward OUTPUT, so the forward may run in place and the backward may
 * then overwrite dout: in -> relu6 in place -> backward with din == dout. Values exactly at 0
 * and 6 (and beyond) get gradient 0, since the rule is 0 < out < 6. */
TEST(relu6_backward_in_place_uses_output)
{
    rng_seed(206);
    size_t n = 257;
    float *x = fnew(n), *g = frand(n, -1, 1);
    fill_away_from_relu6_kinks(x, n);
    x[0] = 0, x[1] = 6, x[2] = -1, x[3] = 7, x[4] = 3, x[5] = 1e-3f, x[6] = 5.99f;
    double *expect = dnew(n);
    for (size_t i = 0; i < n; i++)
        expect[i] = (x[i] > 0 && x[i] < 6) ? g[i] : 0.0;
    op_relu6_forward(x, x, n);  /* x now holds the output */
    op_relu6_backward(g, g, x, n);
    CHECK(close_fwd("relu6 din with out aliasing in and din aliasing dout", g, expect, n));
    EXPECT_NEAR(g[0], 0, 0);
    EXPECT_NEAR(g[1], 0, 0);
    EXPECT_NEAR(g[2], 0, 0);
    EXPECT_NEAR(g[3], 0, 0);
    free(x), free(g), free(expect);
}

TEST(avgpool_backward_matches_finite_differences)
{
    static const int shapes[][3] = {{1, 1, 3}, {3, 9, 4}, {2, 25, 5}};
    rng_seed(207);
    for (size_t t = 0; t < OFFNAS_ARRAY_LEN(shapes); t++) {
        int B = shapes[t][0], HW = shapes[t][1], C = shapes[t][2];
        size_t nin = (size_t)B * HW * C, nout = (size_t)B * C;
        float *in = frand(nin, -1, 1), *R = frand(nout, -1, 1), *din = fnew(nin);
        ffill(din, nin, 123.0f);
        op_avgpool_backward(din, R, B, HW, C);
        struct problem p = {.op = REF_AVGPOOL, .B = B, .H = HW, .Ci = C, .in = to_double(in, nin),
                            .R = to_double(R, nout), .out = dnew(nout), .nout = nout};
        double *g_in = numeric_grad(&p, p.in, nin);
        char what[96];
        snprintf(what, sizeof what, "avgpool B%d HW%d C%d din", B, HW, C);
        CHECK(close_grad(what, din, g_in, nin));
        free(in), free(R), free(din), free(p.in), free(p.R), free(p.out), free(g_in);
    }
}

TEST(linear_backward_matches_finite_differences)
{
    static const int shapes[][3] = {{1, 1, 1}, {3, 16, 10}, {4, 7, 5}};
    rng_seed(208);
    for (size_t t = 0; t < OFFNAS_ARRAY_LEN(shapes); t++) {
        int B = shapes[t][0], In = shapes[t][1], Out = shapes[t][2];
        size_t nin = (size_t)B * In, nw = (size_t)In * Out, nout = (size_t)B * Out;
        float *in = frand(nin, -1, 1), *w = frand(nw, -1, 1), *bias = frand(Out, -1, 1);
        float *R = frand(nout, -1, 1), *din = fnew(nin), *dw = fnew(nw), *dbias = fnew(Out);
        ffill(din, nin, 123.0f);
        op_linear_backward(din, dw, dbias, R, in, w, B, In, Out);
        struct problem p = {.op = REF_LINEAR, .B = B, .Ci = In, .Co = Out,
                            .in = to_double(in, nin), .w = to_double(w, nw),
                            .b = to_double(bias, Out), .R = to_double(R, nout), .out = dnew(nout),
                            .nout = nout};
        double *g_in = numeric_grad(&p, p.in, nin), *g_w = numeric_grad(&p, p.w, nw);
        double *g_b = numeric_grad(&p, p.b, Out);
        char what[96];
        snprintf(what, sizeof what, "linear B%d In%d Out%d din", B, In, Out);
        CHECK(close_grad(what, din, g_in, nin));
        snprintf(what, sizeof what, "linear B%d In%d Out%d dw", B, In, Out);
        CHECK(close_grad(what, dw, g_w, nw));
        snprintf(what, sizeof what, "linear B%d In%d Out%d dbias", B, In, Out);
        CHECK(close_grad(what, dbias, g_b, Out));
        free(in), free(w), free(bias), free(R), free(din), free(dw), free(dbias);
        free(p.in), free(p.w), free(p.b), free(p.R), free(p.out), free(g_in), free(g_w), free(g_b);
    }
}

/* Objective here is the mean loss itself. B = 2 keeps the gradients (~1/B) large against the
 * absolute floor of the tolerance, and smoothing 0.3 makes the eps/K term (0.03/B per class)
 * well above it. */
static void check_xent_backward(float eps, int B, int K, uint64_t seed)
{
    rng_seed(seed);
    size_t n = (size_t)B * K;
    float *logits = frand(n, -3, 3), *probs = fnew(n), *dlogits = fnew(n);
    unsigned char labels[16];
    for (int b = 0; b < B; b++)
        labels[b] = (unsigned char)((b * 7 + 3) % K);
    ffill(dlogits, n, 123.0f);
    op_softmax_xent_forward(probs, NULL, logits, labels, B, K, eps);
    op_softmax_xent_backward(dlogits, probs, labels, B, K, eps);
    struct problem p = {.op = REF_XENT, .B = B, .Co = K, .in = to_double(logits, n),
                        .labels = labels, .smoothing = eps};
    double *g = numeric_grad(&p, p.in, n);
    char what[96];
    snprintf(what, sizeof what, "softmax xent B%d K%d smoothing %g dlogits", B, K, eps);
    CHECK(close_grad(what, dlogits, g, n));
    /* rows of dlogits sum to zero */
    for (int b = 0; b < B; b++) {
        double s = 0;
        for (int k = 0; k < K; k++)
            s += dlogits[b * K + k];
        EXPECT_NEAR(s, 0, 1e-6);
    }
    /* dlogits may alias probs */
    op_softmax_xent_backward(probs, probs, labels, B, K, eps);
    snprintf(what, sizeof what, "softmax xent B%d K%d smoothing %g dlogits aliasing probs", B, K, eps);
    CHECK(close_same(what, probs, dlogits, n, SAME_RTOL));
    /* A tighter check than the generic one, scaled to the gradient size (~1/B): catches a
     * wrong smoothing target on the label class. */
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        if (fabs(dlogits[i] - g[i]) > 1e-4)
            bad++;
    EXPECT_EQ_INT(bad, 0);
    free(logits), free(probs), free(dlogits), free(p.in), free(g);
}

TEST(softmax_xent_backward_no_smoothing)
{
    check_xent_backward(0.0f, 2, 5, 209);
    check_xent_backward(0.0f, 3, 10, 210);
}

TEST(softmax_xent_backward_label_smoothing)
{
    check_xent_backward(0.3f, 2, 5, 211);
    check_xent_backward(0.1f, 3, 10, 212);
}

TEST(channel_mask_backward_matches_finite_differences)
{
    rng_seed(213);
    int N = 15, C = 5;
    size_t n = (size_t)N * C;
    float *in = frand(n, -2, 2), *R = frand(n, -1, 1), *din = fnew(n), *dmask = fnew(C);
    float mask[5] = {1, 0, 1, 0.5f, 0};
    ffill(din, n, 123.0f);
    op_channel_mask_backward(din, dmask, R, in, mask, N, C);
    struct problem p = {.op = REF_CHANNEL_MASK, .B = N, .Ci = C, .in = to_double(in, n),
                        .w = to_double(mask, C), .R = to_double(R, n), .out = dnew(n), .nout = n};
    double *g_in = numeric_grad(&p, p.in, n), *g_m = numeric_grad(&p, p.w, C);
    CHECK(close_grad("channel mask N15 C5 din", din, g_in, n));
    CHECK(close_grad("channel mask N15 C5 dmask", dmask, g_m, C));
    /* dmask may be NULL; din may alias dout */
    float *alias = fcopy(R, n);
    op_channel_mask_backward(alias, NULL, alias, in, mask, N, C);
    CHECK(close_same("channel mask din, dmask NULL, din aliasing dout", alias, din, n, SAME_RTOL));
    free(in), free(R), free(din), free(dmask), free(alias);
    free(p.in), free(p.w), free(p.R), free(p.out), free(g_in), free(g_m);
}

/* ---------- conventions: accumulation and NULL din ---------- */

/* Checks that g2 == 2 * g1 and that g_pre == pre + g1 (accumulation, not overwrite). */
static void check_accumulated(const char *what, const float *g1, const float *g2,
                              const float *pre, const float *g_pre, size_t n)
{
    float *twice = fnew(n), *sum = fnew(n);
    for (size_t i = 0; i < n; i++) {
        twice[i] = 2 * g1[i];
        sum[i] = pre[i] + g1[i];
    }
    char buf[128];
    snprintf(buf, sizeof buf, "%s after two calls (expect 2x)", what);
    CHECK(close_same(buf, g2, twice, n, SAME_RTOL));
    snprintf(buf, sizeof buf, "%s on non-zero start (expect start + g)", what);
    CHECK(close_same(buf, g_pre, sum, n, SAME_RTOL));
    free(twice), free(sum);
}

TEST(backward_accumulates_parameter_gradients)
{
    rng_seed(301);
    { /* conv */
        struct conv_bufs c = conv_bufs_new((struct conv_shape){2, 6, 5, 3, 4, 3, 2}, 0, 1);
        struct conv_shape s = c.s;
        size_t nw = c.nw;
        float *g1 = fnew(nw), *g2 = fnew(nw), *pre = frand(nw, -1, 1), *gp = fcopy(pre, nw);
        op_conv_forward(c.out, c.col, c.in, c.w, s.B, s.H, s.W, s.Ci, s.Co, s.k, s.stride);
        float *g[4] = {g1, g2, g2, gp};
        for (int i = 0; i < 4; i++)
            op_conv_backward(c.din, g[i], c.dcol, c.R, c.col, c.w, s.B, s.H, s.W, s.Ci, s.Co,
                             s.k, s.stride);
        check_accumulated("conv dw", g1, g2, pre, gp, nw);
        conv_bufs_free(&c);
        free(g1), free(g2), free(pre), free(gp);
    }
    { /* depthwise */
        struct conv_bufs c = conv_bufs_new((struct conv_shape){2, 7, 7, 5, 0, 5, 1}, 1, 1);
        struct conv_shape s = c.s;
        size_t nw = c.nw;
        float *g1 = fnew(nw), *g2 = fnew(nw), *pre = frand(nw, -1, 1), *gp = fcopy(pre, nw);
        float *g[4] = {g1, g2, g2, gp};
        for (int i = 0; i < 4; i++)
            op_depthwise_backward(c.din, g[i], c.R, c.in, c.w, s.B, s.H, s.W, s.Ci, s.k,
                                  s.stride);
        check_accumulated("depthwise dw", g1, g2, pre, gp, nw);
        conv_bufs_free(&c);
        free(g1), free(g2), free(pre), free(gp);
    }
    { /* pointwise */
        int N = 20, Ci = 6, Co = 7;
        size_t nin = (size_t)N * Ci, nw = (size_t)Ci * Co, nout = (size_t)N * Co;
        float *in = frand(nin, -1, 1), *w = frand(nw, -1, 1), *R = frand(nout, -1, 1);
        float *din = fnew(nin), *g1 = fnew(nw), *g2 = fnew(nw), *pre = frand(nw, -1, 1);
        float *gp = fcopy(pre, nw);
        op_pointwise_backward(din, g1, R, in, w, N, Ci, Co);
        op_pointwise_backward(din, g2, R, in, w, N, Ci, Co);
        op_pointwise_backward(din, g2, R, in, w, N, Ci, Co);
        op_pointwise_backward(din, gp, R, in, w, N, Ci, Co);
        check_accumulated("pointwise dw", g1, g2, pre, gp, nw);
        free(in), free(w), free(R), free(din), free(g1), free(g2), free(pre), free(gp);
    }
    { /* batch norm */
        int N = 12, C = 4;
        size_t n = (size_t)N * C;
        float *in = frand(n, -2, 3), *gamma = frand(C, 0.5, 1.5), *beta = frand(C, -1, 1);
        float *R = frand(n, -1, 1), *out = fnew(n), *mean = fnew(C), *rstd = fnew(C);
        float *rmean = fnew(C), *rvar = fnew(C), *din = fnew(n);
        float *gg1 = fnew(C), *gg2 = fnew(C), *ggp_pre = frand(C, -1, 1), *ggp = fcopy(ggp_pre, C);
        float *gb1 = fnew(C), *gb2 = fnew(C), *gbp_pre = frand(C, -1, 1), *gbp = fcopy(gbp_pre, C);
        op_batchnorm_forward(out, mean, rstd, in, gamma, beta, rmean, rvar, N, C, 1, 0.1f);
        op_batchnorm_backward(din, gg1, gb1, R, in, mean, rstd, gamma, N, C);
        op_batchnorm_backward(din, gg2, gb2, R, in, mean, rstd, gamma, N, C);
        op_batchnorm_backward(din, gg2, gb2, R, in, mean, rstd, gamma, N, C);
        op_batchnorm_backward(din, ggp, gbp, R, in, mean, rstd, gamma, N, C);
        check_accumulated("batchnorm dgamma", gg1, gg2, ggp_pre, ggp, C);
        check_accumulated("batchnorm dbeta", gb1, gb2, gbp_pre, gbp, C);
        free(in), free(gamma), free(beta), free(R), free(out), free(mean), free(rstd), free(rmean);
        free(rvar), free(din), free(gg1), free(gg2), free(ggp_pre), free(ggp), free(gb1), free(gb2);
        free(gbp_pre), free(gbp);
    }
    { /* linear */
        int B = 3, In = 8, Out = 5;
        size_t nin = (size_t)B * In, nw = (size_t)In * Out, nout = (size_t)B * Out;
        float *in = frand(nin, -1, 1), *w = frand(nw, -1, 1), *R = frand(nout, -1, 1);
        float *din = fnew(nin), *gw1 = fnew(nw), *gw2 = fnew(nw), *gwp_pre = frand(nw, -1, 1);
        float *gwp = fcopy(gwp_pre, nw), *gb1 = fnew(Out), *gb2 = fnew(Out);
        float *gbp_pre = frand(Out, -1, 1), *gbp = fcopy(gbp_pre, Out);
        op_linear_backward(din, gw1, gb1, R, in, w, B, In, Out);
        op_linear_backward(din, gw2, gb2, R, in, w, B, In, Out);
        op_linear_backward(din, gw2, gb2, R, in, w, B, In, Out);
        op_linear_backward(din, gwp, gbp, R, in, w, B, In, Out);
        check_accumulated("linear dw", gw1, gw2, gwp_pre, gwp, nw);
        check_accumulated("linear dbias", gb1, gb2, gbp_pre, gbp, Out);
        free(in), free(w), free(R), free(din), free(gw1), free(gw2), free(gwp_pre), free(gwp);
        free(gb1), free(gb2), free(gbp_pre), free(gbp);
    }
    { /* channel mask */
        int N = 10, C = 4;
        size_t n = (size_t)N * C;
        float *in = frand(n, -1, 1), *R = frand(n, -1, 1), *din = fnew(n);
        float mask[4] = {1, 0, 1, 1};
        float *g1 = fnew(C), *g2 = fnew(C), *pre = frand(C, -1, 1), *gp = fcopy(pre, C);
        op_channel_mask_backward(din, g1, R, in, mask, N, C);
        op_channel_mask_backward(din, g2, R, in, mask, N, C);
        op_channel_mask_backward(din, g2, R, in, mask, N, C);
        op_channel_mask_backward(din, gp, R, in, mask, N, C);
        check_accumulated("channel mask dmask", g1, g2, pre, gp, C);
        free(in), free(R), free(din), free(g1), free(g2), free(pre), free(gp);
    }
}

/* Input gradients are overwritten: calling backward twice gives the same din. */
TEST(backward_overwrites_input_gradients)
{
    rng_seed(302);
    int B = 2, H = 5, W = 5, C = 3, Co = 4, k = 3, s = 1;
    size_t nin = (size_t)B * H * W * C, nout_c = (size_t)B * H * W * Co, nw = (size_t)k * k * C * Co;
    size_t ncol = (size_t)B * H * W * k * k * C;
    float *in = frand(nin, -1, 1), *w = frand(nw, -1, 1), *R = frand(nout_c, -1, 1);
    float *out = fnew(nout_c), *col = fnew(ncol), *dcol = fnew(ncol), *dw = fnew(nw);
    float *d1 = fnew(nin), *d2 = fnew(nin);
    op_conv_forward(out, col, in, w, B, H, W, C, Co, k, s);
    op_conv_backward(d1, dw, dcol, R, col, w, B, H, W, C, Co, k, s);
    op_conv_backward(d2, dw, dcol, R, col, w, B, H, W, C, Co, k, s);
    op_conv_backward(d2, dw, dcol, R, col, w, B, H, W, C, Co, k, s);
    CHECK(close_same("conv din after two calls", d2, d1, nin, SAME_RTOL));

    float *wd = frand((size_t)k * k * C, -1, 1), *Rd = frand(nin, -1, 1), *dwd = fnew((size_t)k * k * C);
    op_depthwise_backward(d1, dwd, Rd, in, wd, B, H, W, C, k, s);
    op_depthwise_backward(d2, dwd, Rd, in, wd, B, H, W, C, k, s);
    op_depthwise_backward(d2, dwd, Rd, in, wd, B, H, W, C, k, s);
    CHECK(close_same("depthwise din after two calls", d2, d1, nin, SAME_RTOL));

    int N = B * H * W;
    float *wp = frand((size_t)C * Co, -1, 1), *dwp = fnew((size_t)C * Co);
    op_pointwise_backward(d1, dwp, R, in, wp, N, C, Co);
    op_pointwise_backward(d2, dwp, R, in, wp, N, C, Co);
    op_pointwise_backward(d2, dwp, R, in, wp, N, C, Co);
    CHECK(close_same("pointwise din after two calls", d2, d1, nin, SAME_RTOL));
    free(in), free(w), free(R), free(out), free(col), free(dcol), free(dw), free(d1), free(d2);
    free(wd), free(Rd), free(dwd), free(wp), free(dwp);
}

/* Where the header allows din == NULL, the parameter gradients are still right. */
TEST(backward_accepts_null_din)
{
    rng_seed(303);
    { /* conv */
        struct conv_bufs c = conv_bufs_new((struct conv_shape){2, 7, 5, 3, 4, 3, 2}, 0, 1);
        struct conv_shape s = c.s;
        float *dw1 = fnew(c.nw), *dw2 = fnew(c.nw);
        op_conv_forward(c.out, c.col, c.in, c.w, s.B, s.H, s.W, s.Ci, s.Co, s.k, s.stride);
        op_conv_backward(c.din, dw1, c.dcol, c.R, c.col, c.w, s.B, s.H, s.W, s.Ci, s.Co, s.k,
                         s.stride);
        op_conv_backward(NULL, dw2, c.dcol, c.R, c.col, c.w, s.B, s.H, s.W, s.Ci, s.Co, s.k,
                         s.stride);
        CHECK(close_same("conv dw with din NULL", dw2, dw1, c.nw, SAME_RTOL));
        conv_bufs_free(&c);
        free(dw1), free(dw2);
    }
    { /* pointwise */
        int N = 30, Ci = 5, Co = 6;
        size_t nin = (size_t)N * Ci, nw = (size_t)Ci * Co, nout = (size_t)N * Co;
        float *in = frand(nin, -1, 1), *w = frand(nw, -1, 1), *R = frand(nout, -1, 1);
        float *din = fnew(nin), *dw1 = fnew(nw), *dw2 = fnew(nw);
        op_pointwise_backward(din, dw1, R, in, w, N, Ci, Co);
        op_pointwise_backward(NULL, dw2, R, in, w, N, Ci, Co);
        CHECK(close_same("pointwise dw with din NULL", dw2, dw1, nw, SAME_RTOL));
        free(in), free(w), free(R), free(din), free(dw1), free(dw2);
    }
    { /* linear */
        int B = 4, In = 9, Out = 3;
        size_t nin = (size_t)B * In, nw = (size_t)In * Out, nout = (size_t)B * Out;
        float *in = frand(nin, -1, 1), *w = frand(nw, -1, 1), *R = frand(nout, -1, 1);
        float *din = fnew(nin), *dw1 = fnew(nw), *dw2 = fnew(nw), *db1 = fnew(Out), *db2 = fnew(Out);
        op_linear_backward(din, dw1, db1, R, in, w, B, In, Out);
        op_linear_backward(NULL, dw2, db2, R, in, w, B, In, Out);
        CHECK(close_same("linear dw with din NULL", dw2, dw1, nw, SAME_RTOL));
        CHECK(close_same("linear dbias with din NULL", db2, db1, Out, SAME_RTOL));
        free(in), free(w), free(R), free(din), free(dw1), free(dw2), free(db1), free(db2);
    }
}

/* ---------- threads ---------- */

struct thread_run {
    float *conv_out, *conv_din, *conv_dw;
    float *dw_out, *dw_din, *dw_dw;
    float *bn_out, *bn_din, *bn_dgamma, *bn_dbeta, *bn_rmean, *bn_rvar;
};

enum { TB = 4, TH = 14, TW = 14, TCI = 16, TCO = 24, TK = 3, TS = 1, TC = 24, TKD = 5 };

static void thread_inputs(float **in, float **w, float **R, float **wd, float **Rd, float **gamma,
                          float **beta)
{
    rng_seed(401);
    size_t nin = (size_t)TB * TH * TW * TCI, nout = (size_t)TB * TH * TW * TCO;
    size_t nind = (size_t)TB * TH * TW * TC;
    *in = frand(nin, -1, 1);
    *w = frand((size_t)TK * TK * TCI * TCO, -1, 1);
    *R = frand(nout, -1, 1);
    *wd = frand((size_t)TKD * TKD * TC, -1, 1);
    *Rd = frand(nind, -1, 1);
    *gamma = frand(TC, 0.5, 1.5);
    *beta = frand(TC, -1, 1);
}

static struct thread_run thread_compute(const float *in, const float *w, const float *R,
                                        const float *wd, const float *Rd, const float *gamma,
                                        const float *beta)
{
    struct thread_run r;
    size_t nin = (size_t)TB * TH * TW * TCI, nout = (size_t)TB * TH * TW * TCO;
    size_t ncol = (size_t)TB * TH * TW * TK * TK * TCI, nw = (size_t)TK * TK * TCI * TCO;
    float *col = fnew(ncol), *dcol = fnew(ncol);
    r.conv_out = fnew(nout), r.conv_din = fnew(nin), r.conv_dw = fnew(nw);
    op_conv_forward(r.conv_out, col, in, w, TB, TH, TW, TCI, TCO, TK, TS);
    op_conv_backward(r.conv_din, r.conv_dw, dcol, R, col, w, TB, TH, TW, TCI, TCO, TK, TS);
    free(col), free(dcol);

    /* depthwise on the conv output (C = TCO = TC channels), stride 2 */
    int Ho = ref_out_size(TH, TKD, 2), Wo = ref_out_size(TW, TKD, 2);
    size_t nind = (size_t)TB * TH * TW * TC, noutd = (size_t)TB * Ho * Wo * TC;
    r.dw_out = fnew(noutd), r.dw_din = fnew(nind), r.dw_dw = fnew((size_t)TKD * TKD * TC);
    op_depthwise_forward(r.dw_out, r.conv_out, wd, TB, TH, TW, TC, TKD, 2);
    op_depthwise_backward(r.dw_din, r.dw_dw, Rd, r.conv_out, wd, TB, TH, TW, TC, TKD, 2);

    /* batch norm over all pixels of the conv output */
    int N = TB * TH * TW;
    float *mean = fnew(TC), *rstd = fnew(TC);
    r.bn_out = fnew(nind), r.bn_din = fnew(nind), r.bn_dgamma = fnew(TC), r.bn_dbeta = fnew(TC);
    r.bn_rmean = fnew(TC), r.bn_rvar = fnew(TC);
    ffill(r.bn_rvar, TC, 1);
    op_batchnorm_forward(r.bn_out, mean, rstd, r.conv_out, gamma, beta, r.bn_rmean, r.bn_rvar, N, TC,
                         1, 0.1f);
    op_batchnorm_backward(r.bn_din, r.bn_dgamma, r.bn_dbeta, Rd, r.conv_out, mean, rstd, gamma, N,
                          TC);
    free(mean), free(rstd);
    return r;
}

static void thread_run_free(struct thread_run *r)
{
    free(r->conv_out), free(r->conv_din), free(r->conv_dw), free(r->dw_out), free(r->dw_din);
    free(r->dw_dw), free(r->bn_out), free(r->bn_din), free(r->bn_dgamma), free(r->bn_dbeta);
    free(r->bn_rmean), free(r->bn_rvar);
}

TEST(threads_one_and_two_agree)
{
    int saved = op_get_threads();
    float *in, *w, *R, *wd, *Rd, *gamma, *beta;
    thread_inputs(&in, &w, &R, &wd, &Rd, &gamma, &beta);
    op_set_threads(1);
    EXPECT_EQ_INT(op_get_threads(), 1);
    struct thread_run one = thread_compute(in, w, R, wd, Rd, gamma, beta);
    op_set_threads(2);
    EXPECT_EQ_INT(op_get_threads(), 2);
    struct thread_run two = thread_compute(in, w, R, wd, Rd, gamma, beta);
    op_set_threads(saved);

    size_t nin = (size_t)TB * TH * TW * TCI, nout = (size_t)TB * TH * TW * TCO;
    size_t nw = (size_t)TK * TK * TCI * TCO, nind = (size_t)TB * TH * TW * TC;
    int Ho = ref_out_size(TH, TKD, 2), Wo = ref_out_size(TW, TKD, 2);
    size_t noutd = (size_t)TB * Ho * Wo * TC;
    CHECK(close_same("threads conv out", two.conv_out, one.conv_out, nout, THREAD_RTOL));
    CHECK(close_same("threads conv din", two.conv_din, one.conv_din, nin, THREAD_RTOL));
    CHECK(close_same("threads conv dw", two.conv_dw, one.conv_dw, nw, THREAD_RTOL));
    CHECK(close_same("threads depthwise out", two.dw_out, one.dw_out, noutd, THREAD_RTOL));
    CHECK(close_same("threads depthwise din", two.dw_din, one.dw_din, nind, THREAD_RTOL));
    CHECK(close_same("threads depthwise dw", two.dw_dw, one.dw_dw, (size_t)TKD * TKD * TC, THREAD_RTOL));
    CHECK(close_same("threads batchnorm out", two.bn_out, one.bn_out, nind, THREAD_RTOL));
    CHECK(close_same("threads batchnorm din", two.bn_din, one.bn_din, nind, THREAD_RTOL));
    CHECK(close_same("threads batchnorm dgamma", two.bn_dgamma, one.bn_dgamma, TC, THREAD_RTOL));
    CHECK(close_same("threads batchnorm dbeta", two.bn_dbeta, one.bn_dbeta, TC, THREAD_RTOL));
    CHECK(close_same("threads batchnorm running_mean", two.bn_rmean, one.bn_rmean, TC, THREAD_RTOL));
    CHECK(close_same("threads batchnorm running_var", two.bn_rvar, one.bn_rvar, TC, THREAD_RTOL));

    /* and both are right: a spot check of the 2-thread conv against the reference */
    double *d_in = to_double(in, nin), *d_w = to_double(w, nw), *ref = dnew(nout);
    ref_conv(ref, d_in, d_w, TB, TH, TW, TCI, TCO, TK, TS);
    CHECK(close_fwd("threads conv out vs reference", two.conv_out, ref, nout));
    free(d_in), free(d_w), free(ref);

    thread_run_free(&one), thread_run_free(&two);
    free(in), free(w), free(R), free(wd), free(Rd), free(gamma), free(beta);
}

/* The fused batch norm + ReLU6 equals batch norm then ReLU6, forward and backward (same
 * tolerance as other same-math comparisons, SAME_RTOL scaled by the values), with din
 * aliasing dout, at N above the multi-threaded threshold. */
TEST(batchnorm_relu6_fused_equals_composition)
{
    rng_seed(99);
    int N = 700, C = 24;
    size_t n = (size_t)N * C;
    float *in = frand(n, -3.0, 9.0), *g = frand(n, -1.0, 1.0);
    float *gamma = frand(C, 0.5, 2.0), *beta = frand(C, -1.0, 3.0);
    float *y1 = fnew(n), *y2 = fnew(n), *d1 = fcopy(g, n), *d2 = fnew(n);
    float m1[24], r1[24], m2[24], r2[24], rm1[24] = {0}, rv1[24], rm2[24] = {0}, rv2[24];
    float dg1[24] = {0}, db1[24] = {0}, dg2[24] = {0}, db2[24] = {0};
    for (int c = 0; c < C; c++)
        rv1[c] = rv2[c] = 1.0f;
    op_set_threads(2);
    op_batchnorm_relu6_forward(y1, m1, r1, in, gamma, beta, rm1, rv1, N, C, 1, 0.1f);
    op_batchnorm_relu6_backward(d1, dg1, db1, d1, in, m1, r1, gamma, beta, N, C);
    op_batchnorm_forward(y2, m2, r2, in, gamma, beta, rm2, rv2, N, C, 1, 0.1f);
    op_relu6_forward(y2, y2, n);
    op_relu6_backward(d2, g, y2, n);
    op_batchnorm_backward(d2, dg2, db2, d2, in, m2, r2, gamma, N, C);
    op_set_threads(1);
    CHECK(close_same("fused out", y1, y2, n, SAME_RTOL));
    CHECK(close_same("fused mean", m1, m2, C, SAME_RTOL));
    CHECK(close_same("fused running var", rv1, rv2, C, SAME_RTOL));
    CHECK(close_same("fused din", d1, d2, n, SAME_RTOL));
    CHECK(close_same("fused dgamma", dg1, dg2, C, SAME_RTOL));
    CHECK(close_same("fused dbeta", db1, db2, C, SAME_RTOL));
    int clipped = 0;
    for (size_t i = 0; i < n; i++)
        clipped += y1[i] == 0.0f || y1[i] == 6.0f;
    CU_ASSERT(clipped > 0 && clipped < (int)n); /* the ReLU6 mask was exercised */
    free(in), free(g), free(gamma), free(beta), free(y1), free(y2), free(d1), free(d2);
}

/* The expand convolution's fused backward (batch norm + ReLU6, then both products, chunk by
 * chunk) gives what op_batchnorm_relu6_backward then op_pointwise_backward give, within
 * SAME_RTOL: several chunks (C = 64: 2048 rows each) and a partial last one, one and two
 * threads, with and without the weight gradient. */
TEST(batchnorm_relu6_pointwise_backward_equals_composition)
{
    rng_seed(98);
    int N = 4500, ci = 24, C = 64;
    size_t na = (size_t)N * C, nx = (size_t)N * ci;
    float *a = frand(na, -3.0, 9.0), *x = frand(nx, -1, 1), *w = frand((size_t)ci * C, -0.5, 0.5);
    float *g = frand(na, -1.0, 1.0), *gamma = frand(C, 0.5, 2.0), *beta = frand(C, -1.0, 3.0);
    float *y = fnew(na), *mean = fnew(C), *rstd = fnew(C), *rm = fnew(C), *rv = fnew(C);
    op_batchnorm_relu6_forward(y, mean, rstd, a, gamma, beta, rm, rv, N, C, 1, 0.1f);
    for (int threads = 1; threads <= 2; threads++)
        for (int weights = 0; weights <= 1; weights++) {
            op_set_threads(threads);
            float *g1 = fcopy(g, na), *g2 = fcopy(g, na), *dx1 = fnew(nx), *dx2 = fnew(nx);
            float *dw1 = fnew((size_t)ci * C), *dw2 = fnew((size_t)ci * C);
            float *dg1 = fnew(C), *db1 = fnew(C), *dg2 = fnew(C), *db2 = fnew(C);
            op_batchnorm_relu6_pointwise_backward(dx1, weights ? dw1 : NULL, dg1, db1, g1, a, x,
                                                  w, mean, rstd, gamma, beta, N, ci, C);
            op_batchnorm_relu6_backward(g2, dg2, db2, g2, a, mean, rstd, gamma, beta, N, C);
            op_pointwise_backward(dx2, weights ? dw2 : NULL, g2, x, w, N, ci, C);
            CHECK(close_same("fused expand ga", g1, g2, na, SAME_RTOL));
            CHECK(close_same("fused expand dx", dx1, dx2, nx, SAME_RTOL));
            CHECK(close_same("fused expand dw", dw1, dw2, (size_t)ci * C, SAME_RTOL));
            CHECK(close_same("fused expand dgamma", dg1, dg2, C, SAME_RTOL));
            CHECK(close_same("fused expand dbeta", db1, db2, C, SAME_RTOL));
            if (!weights) /* NULL dw leaves it alone */
                for (int i = 0; i < ci * C; i++)
                    CU_ASSERT_EQUAL(dw1[i], 0.0f);
            free(g1), free(g2), free(dx1), free(dx2), free(dw1), free(dw2);
            free(dg1), free(db1), free(dg2), free(db2);
        }
    op_set_threads(1);
    free(a), free(x), free(w), free(g), free(gamma), free(beta), free(y), free(mean), free(rstd);
    free(rm), free(rv);
}

/* The pointwise GEMMs that gather the batch norm's sums as they write (forward, and the input
 * gradient ahead of a batch norm + ReLU6) give what the GEMM and the batch norm's own pass
 * give: bit for bit with one thread, within SAME_RTOL with two. Shapes with several GEMM
 * chunks, a partial last block of rows, and widths past the 32- and 8-channel tiles. */
static int sums_case(int N, int ci, int co, int relu6, int threads)
{
    size_t nx = (size_t)N * ci, na = (size_t)N * co;
    float *x = frand(nx, -1, 1), *w = frand((size_t)ci * co, -0.5, 0.5), *gy = frand(nx, -1, 1);
    float *gamma = frand(co, 0.5, 2.0), *beta = frand(co, -1.0, 3.0);
    float *a1 = fnew(na), *y1 = fnew(na), *a2 = fnew(na), *y2 = fnew(na);
    float *m1 = fnew(co), *s1 = fnew(co), *m2 = fnew(co), *s2 = fnew(co);
    float *rm1 = fnew(co), *rv1 = fnew(co), *rm2 = fnew(co), *rv2 = fnew(co);
    float *g1 = fnew(na), *g2 = fnew(na), *dg1 = fnew(co), *db1 = fnew(co), *dg2 = fnew(co);
    float *db2 = fnew(co);
    double *sums = dnew(2 * (size_t)co);
    ffill(rv1, co, 1), ffill(rv2, co, 1);
    op_set_threads(threads);
    op_pointwise_forward_sums(a1, sums, x, w, N, ci, co);
    op_batchnorm_sums_forward(y1, m1, s1, a1, sums, gamma, beta, rm1, rv1, N, co, 0.1f, relu6);
    op_pointwise_forward(a2, x, w, N, ci, co);
    if (relu6)
        op_batchnorm_relu6_forward(y2, m2, s2, a2, gamma, beta, rm2, rv2, N, co, 1, 0.1f);
    else
        op_batchnorm_forward(y2, m2, s2, a2, gamma, beta, rm2, rv2, N, co, 1, 0.1f);
    if (relu6) { /* backward: the gradient of a from that of x (x = relu6(bn(a)) w^T) */
        op_pointwise_din_sums(g1, sums, gy, w, N, co, ci, a1, m1, s1, gamma, beta);
        op_batchnorm_relu6_sums_backward(g1, dg1, db1, g1, sums, a1, m1, s1, gamma, beta, N, co);
        op_pointwise_backward(g2, NULL, gy, NULL, w, N, co, ci);
        op_batchnorm_relu6_backward(g2, dg2, db2, g2, a2, m2, s2, gamma, beta, N, co);
    }
    op_set_threads(1);
    double tol = threads == 1 ? 0 : SAME_RTOL;
    char what[96];
    int ok = 1;
#define SAME(name, a, b, n)                                                                        \
    snprintf(what, sizeof what, "sums N%d %d->%d relu6 %d threads %d: %s", N, ci, co, relu6,     \
             threads, name);                                                                       \
    ok &= close_same(what, a, b, n, tol)
    SAME("pointwise out", a1, a2, na);
    SAME("batch norm out", y1, y2, na);
    SAME("mean", m1, m2, co);
    SAME("rstd", s1, s2, co);
    SAME("running var", rv1, rv2, co);
    SAME("din", g1, g2, na);
    SAME("dgamma", dg1, dg2, co);
    SAME("dbeta", db1, db2, co);
#undef SAME
    free(x), free(w), free(gy), free(gamma), free(beta), free(a1), free(y1), free(a2), free(y2);
    free(m1), free(s1), free(m2), free(s2), free(rm1), free(rv1), free(rm2), free(rv2), free(g1);
    free(g2), free(dg1), free(db1), free(dg2), free(db2), free(sums);
    return ok;
}

TEST(pointwise_sums_equal_the_batchnorm_pass)
{
    static const int shapes[][3] = {{8000, 7, 45}, {5000, 45, 13}, {3000, 16, 96}, {130, 3, 5}};
    rng_seed(77);
    for (size_t t = 0; t < OFFNAS_ARRAY_LEN(shapes); t++)
        for (int relu6 = 0; relu6 <= 1; relu6++)
            for (int threads = 1; threads <= 2; threads++)
                CU_ASSERT(sums_case(shapes[t][0], shapes[t][1], shapes[t][2], relu6, threads));
}

static const struct test_case TESTS[] = {
    CASE(conv_out_size_matches_padding_rule),
    CASE(conv_forward_matches_reference),
    CASE(depthwise_forward_matches_reference),
    CASE(pointwise_forward_matches_reference),
    CASE(batchnorm_forward_training_matches_reference),
    CASE(batchnorm_constant_channel_is_finite),
    CASE(batchnorm_running_stats_update),
    CASE(batchnorm_eval_uses_running_stats),
    CASE(affine_forwards_match_conv_then_eval_batchnorm),
    CASE(relu6_forward_matches_reference),
    CASE(add_forward_and_aliasing),
    CASE(avgpool_forward_matches_reference),
    CASE(linear_forward_matches_reference),
    CASE(softmax_xent_forward_loss_probs_correct),
    CASE(softmax_xent_forward_large_logits_stable),
    CASE(channel_mask_forward_and_aliasing),
    CASE(conv_backward_matches_finite_differences),
    CASE(depthwise_backward_matches_finite_differences),
    CASE(pointwise_backward_matches_finite_differences),
    CASE(batchnorm_backward_matches_finite_differences),
    CASE(pointwise_sums_equal_the_batchnorm_pass),
    CASE(relu6_backward_matches_finite_differences),
    CASE(relu6_backward_in_place_uses_output),
    CASE(avgpool_backward_matches_finite_differences),
    CASE(linear_backward_matches_finite_differences),
    CASE(softmax_xent_backward_no_smoothing),
    CASE(softmax_xent_backward_label_smoothing),
    CASE(channel_mask_backward_matches_finite_differences),
    CASE(backward_accumulates_parameter_gradients),
    CASE(backward_overwrites_input_gradients),
    CASE(backward_accepts_null_din),
    CASE(threads_one_and_two_agree),
    CASE(batchnorm_relu6_fused_equals_composition),
    CASE(batchnorm_relu6_pointwise_backward_equals_composition),
};

TEST_MAIN("op", TESTS)
