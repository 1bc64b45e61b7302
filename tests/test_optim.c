/* test_optim: the optimizers and the learning-rate schedule against float64 references written
 * here from the formulas in optim.h (PyTorch semantics for SGD and Adam).
 *
 * Tolerance: every element after several steps, |got - ref| <= 1e-5 * (1 + |ref|) (STEP_RTOL);
 * schedule values within 1e-9 * base (computed in double).
 */
#include "common.h"
#include "optim.h"
#include "testing.h"

#include <stdint.h>
#include <stdlib.h>

#define STEP_RTOL 1e-5
#define PI 3.14159265358979323846

static uint64_t rng_state;

static void rng_seed(uint64_t seed) { rng_state = seed; }

/* splitmix64, uniform in [lo, hi) */
static double rng_uniform(double lo, double hi)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return lo + (hi - lo) * ((double)(z >> 11) * (1.0 / 9007199254740992.0));
}

static float *frand(size_t n, double lo, double hi)
{
    float *p = calloc(n, sizeof *p);
    if (!p)
        abort();
    for (size_t i = 0; i < n; i++)
        p[i] = (float)rng_uniform(lo, hi);
    return p;
}

static double *to_double(const float *x, size_t n)
{
    double *d = calloc(n, sizeof *d);
    if (!d)
        abort();
    for (size_t i = 0; i < n; i++)
        d[i] = x[i];
    return d;
}

/* Asserts every element of got against ref: |got - ref| <= STEP_RTOL * (1 + |ref|); prints
 * the first few failures as "what part: element ...". */
static void expect_close(const char *what, const char *part, const float *got, const double *ref,
                         size_t n)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        double tol = STEP_RTOL * (1 + fabs(ref[i]));
        if (!(fabs((double)got[i] - ref[i]) <= tol)) {
            if (bad < 4)
                fprintf(stderr, "\n  %s %s: element %zu of %zu: got %.9g, expected %.9g, tol %.3g",
                        what, part, i, n, (double)got[i], ref[i], tol);
            bad++;
        }
    }
    if (bad)
        fprintf(stderr, "\n  %s %s: %zu of %zu elements wrong\n", what, part, bad, n);
    CU_ASSERT(bad == 0);
}

/* ---------- SGD ---------- */

static void ref_sgd(double *p, const double *g, double *buf, const float *decay, size_t n,
                    double lr, double momentum, double wd)
{
    for (size_t i = 0; i < n; i++) {
        double d = g[i] + ((decay == NULL || decay[i] != 0) ? wd * p[i] : 0);
        buf[i] = momentum * buf[i] + d;
        p[i] -= lr * buf[i];
    }
}

/* Several steps with fresh gradients each time; checks params and the momentum buffer. */
static void run_sgd(const char *what, size_t n, int with_mask, float lr, float momentum, float wd)
{
    float *p = frand(n, -1, 1), *buf = calloc(n, sizeof(float)), *decay = NULL;
    double *rp = to_double(p, n), *rbuf = calloc(n, sizeof(double));
    if (with_mask) {
        decay = calloc(n, sizeof(float));
        for (size_t i = 0; i < n; i++)
            decay[i] = (i % 3 == 0) ? 0.0f : 1.0f;
    }
    for (int step = 0; step < 6; step++) {
        float *g = frand(n, -1, 1);
        double *rg = to_double(g, n);
        optim_sgd_step(p, g, buf, decay, n, lr, momentum, wd);
        ref_sgd(rp, rg, rbuf, decay, n, lr, momentum, wd);
        free(g), free(rg);
    }
    expect_close(what, "params", p, rp, n);
    expect_close(what, "momentum buffer", buf, rbuf, n);
    free(p), free(buf), free(decay), free(rp), free(rbuf);
}

TEST(sgd_matches_reference)
{
    rng_seed(1);
    run_sgd("sgd momentum 0.9 wd 0.1 decay NULL", 37, 0, 0.05f, 0.9f, 0.1f);
    run_sgd("sgd momentum 0.9 wd 0.1 decay mask", 37, 1, 0.05f, 0.9f, 0.1f);
    run_sgd("sgd momentum 0 wd 0", 37, 0, 0.1f, 0.0f, 0.0f);
    run_sgd("sgd momentum 0 wd 0.05 decay mask", 37, 1, 0.1f, 0.0f, 0.05f);
}

/* One step by hand: buf starts at 0, so buf = g + wd*p and p -= lr*buf, and a 0 in the decay
 * mask removes the weight-decay term for that element only. */
TEST(sgd_single_step_by_hand)
{
    float p[2] = {2.0f, 2.0f}, g[2] = {0.5f, 0.5f}, buf[2] = {0, 0}, decay[2] = {1.0f, 0.0f};
    optim_sgd_step(p, g, buf, decay, 2, 0.1f, 0.9f, 0.25f);
    EXPECT_NEAR(buf[0], 0.5 + 0.25 * 2.0, 1e-7);
    EXPECT_NEAR(buf[1], 0.5, 1e-7);
    EXPECT_NEAR(p[0], 2.0 - 0.1 * 1.0, 1e-6);
    EXPECT_NEAR(p[1], 2.0 - 0.1 * 0.5, 1e-6);
    /* second step with the same gradient: buf = 0.9*buf + d */
    optim_sgd_step(p, g, buf, decay, 2, 0.1f, 0.9f, 0.25f);
    EXPECT_NEAR(buf[1], 0.9 * 0.5 + 0.5, 1e-6);
    EXPECT_NEAR(p[1], 2.0 - 0.05 - 0.1 * 0.95, 1e-6);
    EXPECT_NEAR(buf[0], 0.9 * 1.0 + 0.5 + 0.25 * 1.9, 1e-6);
    EXPECT_NEAR(p[0], 1.9 - 0.1 * (0.9 + 0.5 + 0.25 * 1.9), 1e-6);
}

/* ---------- Adam ---------- */

static void ref_adam(double *p, const double *g, double *m, double *v, size_t n, double lr,
                     double b1, double b2, double eps, double wd, long t)
{
    double bc1 = 1 - pow(b1, (double)t), bc2 = 1 - pow(b2, (double)t);
    for (size_t i = 0; i < n; i++) {
        double d = g[i] + wd * p[i];
        m[i] = b1 * m[i] + (1 - b1) * d;
        v[i] = b2 * v[i] + (1 - b2) * d * d;
        double mhat = m[i] / bc1, vhat = v[i] / bc2;
        p[i] -= lr * mhat / (sqrt(vhat) + eps);
    }
}

static void run_adam(const char *what, size_t n, float lr, float b1, float b2, float eps, float wd,
                     int steps)
{
    float *p = frand(n, -1, 1), *m = calloc(n, sizeof(float)), *v = calloc(n, sizeof(float));
    double *rp = to_double(p, n), *rm = calloc(n, sizeof(double)), *rv = calloc(n, sizeof(double));
    for (long t = 1; t <= steps; t++) {
        float *g = frand(n, -1, 1);
        double *rg = to_double(g, n);
        optim_adam_step(p, g, m, v, n, lr, b1, b2, eps, wd, t);
        ref_adam(rp, rg, rm, rv, n, lr, b1, b2, eps, wd, t);
        free(g), free(rg);
    }
    expect_close(what, "params", p, rp, n);
    expect_close(what, "first moment", m, rm, n);
    expect_close(what, "second moment", v, rv, n);
    free(p), free(m), free(v), free(rp), free(rm), free(rv);
}

TEST(adam_matches_reference)
{
    rng_seed(2);
    run_adam("adam default betas", 41, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 7);
    run_adam("adam weight decay 0.1", 41, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.1f, 7);
    run_adam("adam betas 0.5 0.9 eps 1e-3", 41, 3e-2f, 0.5f, 0.9f, 1e-3f, 0.0f, 5);
}

/* Buffers large enough for the multi-threaded path (n > 65536 in optim.c) give the same steps. */
TEST(optimizers_large_buffer_match_reference)
{
    rng_seed(4);
    run_sgd("sgd n 200003 decay mask", 200003, 1, 0.05f, 0.9f, 0.01f);
    run_adam("adam n 200003", 200003, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 3);
}

/* Bias correction: at t = 1, mhat = g and vhat = g^2, so each parameter moves by lr * sign(g)
 * (up to eps), whatever the gradient's size. */
TEST(adam_first_step_is_lr_times_sign)
{
    float p[4] = {0, 0, 0, 0}, g[4] = {1e-3f, -5.0f, 100.0f, -0.25f}, m[4] = {0}, v[4] = {0};
    optim_adam_step(p, g, m, v, 4, 0.01f, 0.9f, 0.999f, 1e-8f, 0.0f, 1);
    EXPECT_NEAR(p[0], -0.01, 1e-6);
    EXPECT_NEAR(p[1], 0.01, 1e-6);
    EXPECT_NEAR(p[2], -0.01, 1e-6);
    EXPECT_NEAR(p[3], 0.01, 1e-6);
}

/* Both optimizers minimise a quadratic 0.5 * sum (x - target)^2. */
TEST(optimizers_minimise_a_quadratic)
{
    rng_seed(3);
    size_t n = 16;
    float *target = frand(n, -2, 2);
    float *x = calloc(n, sizeof(float)), *buf = calloc(n, sizeof(float)), *g = calloc(n, sizeof(float));
    for (int step = 0; step < 300; step++) {
        for (size_t i = 0; i < n; i++)
            g[i] = x[i] - target[i];
        optim_sgd_step(x, g, buf, NULL, n, 0.05f, 0.9f, 0.0f);
    }
    for (size_t i = 0; i < n; i++)
        EXPECT_NEAR(x[i], target[i], 1e-3);
    float *y = calloc(n, sizeof(float)), *m = calloc(n, sizeof(float)), *v = calloc(n, sizeof(float));
    for (long t = 1; t <= 2000; t++) {
        for (size_t i = 0; i < n; i++)
            g[i] = y[i] - target[i];
        optim_adam_step(y, g, m, v, n, 0.01f, 0.9f, 0.999f, 1e-8f, 0.0f, t);
    }
    for (size_t i = 0; i < n; i++)
        EXPECT_NEAR(y[i], target[i], 1e-2);
    free(target), free(x), free(buf), free(g), free(y), free(m), free(v);
}

/* ---------- learning-rate schedule ---------- */

TEST(cosine_lr_without_warmup)
{
    double base = 0.4;
    long total = 100;
    EXPECT_NEAR(optim_cosine_lr(base, 0, total, 0), base, 1e-9 * base);
    EXPECT_NEAR(optim_cosine_lr(base, 50, total, 0), base / 2, 1e-9 * base);
    EXPECT_NEAR(optim_cosine_lr(base, 25, total, 0), base * 0.5 * (1 + cos(PI * 0.25)), 1e-9 * base);
    EXPECT_NEAR(optim_cosine_lr(base, total, total, 0), 0, 1e-9 * base);
    for (long s = 0; s < total; s++) {
        double a = optim_cosine_lr(base, s, total, 0), b = optim_cosine_lr(base, s + 1, total, 0);
        CU_ASSERT(b <= a);
        EXPECT_NEAR(a, base * 0.5 * (1 + cos(PI * (double)s / (double)total)), 1e-9 * base);
    }
}

/* Warm-up rises linearly (slope base/warmup): step s (0-based) gets base * (s + 1) / warmup, so
 * base is reached at its last step; then the cosine runs from base at step warmup to 0 at step
 * total. */
TEST(cosine_lr_with_warmup)
{
    double base = 0.1;
    long total = 110, warmup = 10;
    for (long s = 0; s + 1 < warmup; s++) {
        double a = optim_cosine_lr(base, s, total, warmup), b = optim_cosine_lr(base, s + 1, total, warmup);
        EXPECT_NEAR(b - a, base / warmup, 1e-9 * base);
        EXPECT_NEAR(a, base * (double)(s + 1) / (double)warmup, 1e-9 * base);
    }
    EXPECT_NEAR(optim_cosine_lr(base, warmup, total, warmup), base, 1e-9 * base);
    EXPECT_NEAR(optim_cosine_lr(base, 60, total, warmup), base / 2, 1e-9 * base);
    EXPECT_NEAR(optim_cosine_lr(base, total, total, warmup), 0, 1e-9 * base);
    for (long s = warmup; s <= total; s++) {
        double expect = base * 0.5 * (1 + cos(PI * (double)(s - warmup) / (double)(total - warmup)));
        EXPECT_NEAR(optim_cosine_lr(base, s, total, warmup), expect, 1e-9 * base);
    }
}

static const struct test_case TESTS[] = {
    CASE(sgd_matches_reference),
    CASE(sgd_single_step_by_hand),
    CASE(adam_matches_reference),
    CASE(optimizers_large_buffer_match_reference),
    CASE(adam_first_step_is_lr_times_sign),
    CASE(optimizers_minimise_a_quadratic),
    CASE(cosine_lr_without_warmup),
    CASE(cosine_lr_with_warmup),
};

TEST_MAIN("optim", TESTS)
