/* test_gemm: the register-tiled products of src/gemm.h against float64 loops.
 *
 * The shapes walk every path: whole and partial row tiles (N % 8), several row chunks (N > 256),
 * two, one and partial 16-wide column panels, 8-wide and scalar column tails in gemm_tn_add, and
 * K below and above one tile. Buffers have their exact size, so the sanitizer build catches a
 * read or write past a row.
 *
 * Tolerance: |got - ref| <= 1e-6 * (1 + sum over the shared dimension of |x| |y|) per element
 * (float32 rounding of a sum of that many products). Thread counts: gemm_packed gives the
 * same bits with 1 and 2 threads; gemm_tn_add agrees within the tolerance.
 */
#include "common.h"
#include "gemm.h"
#include "rng.h"
#include "testing.h"

#include <omp.h>
#include <stdlib.h>

#define GEMM_RTOL 1e-6

static struct rng rng;

static float rnd(void) { return (float)(2.0 * rng_uniform(&rng) - 1.0); }

static float *frand(size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = rnd();
    return p;
}

static const int SHAPES[][3] = {
    /* N, K, M */
    {1, 1, 1},    {3, 5, 7},   {8, 16, 16},  {13, 9, 21},  {40, 24, 8},  {57, 7, 40},
    {300, 16, 48}, {517, 33, 72}, {264, 96, 24}, {70, 144, 64}, {9, 3, 100}, {600, 2, 33},
};

/* max over elements of |got - ref| / (1 + sum |x||y|), the check's measure */
static double worst;

static void compare(const char *what, const float *got, const double *ref, const double *mag,
                    size_t n, int N, int K, int M)
{
    int ok = 1;
    for (size_t i = 0; i < n; i++) {
        double err = fabs(got[i] - ref[i]) / (1.0 + mag[i]);
        if (err > worst)
            worst = err;
        if (err > GEMM_RTOL && ok) {
            fprintf(stderr, "%s N%d K%d M%d: element %zu = %.9g, reference %.9g\n", what, N, K,
                    M, i, got[i], ref[i]);
            ok = 0;
        }
    }
    CU_ASSERT(ok);
}

TEST(packed_products_match_float64)
{
    rng_seed(&rng, 11, 0);
    for (size_t s = 0; s < OFFNAS_ARRAY_LEN(SHAPES); s++) {
        int N = SHAPES[s][0], K = SHAPES[s][1], M = SHAPES[s][2];
        float *a = frand((size_t)N * K), *b = frand((size_t)K * M), *bt = frand((size_t)M * K);
        float *c = frand((size_t)N * M), *ct = frand((size_t)N * M);
        double *ref = malloc((size_t)N * M * sizeof *ref), *reft = malloc((size_t)N * M * sizeof *reft);
        double *mag = malloc((size_t)N * M * sizeof *mag), *magt = malloc((size_t)N * M * sizeof *magt);
        for (int n = 0; n < N; n++)
            for (int m = 0; m < M; m++) {
                double r = 0, rt = 0, g = 0, gt = 0;
                for (int k = 0; k < K; k++) {
                    double x = a[(size_t)n * K + k];
                    r += x * b[(size_t)k * M + m];
                    rt += x * bt[(size_t)m * K + k];
                    g += fabs(x * b[(size_t)k * M + m]);
                    gt += fabs(x * bt[(size_t)m * K + k]);
                }
                ref[(size_t)n * M + m] = r, reft[(size_t)n * M + m] = rt;
                mag[(size_t)n * M + m] = g, magt[(size_t)n * M + m] = gt;
            }
        gemm_packed(c, a, gemm_pack(b, K, M, 0), N, K, M);
        gemm_packed(ct, a, gemm_pack(bt, K, M, 1), N, K, M);
        compare("gemm_packed (b)", c, ref, mag, (size_t)N * M, N, K, M);
        compare("gemm_packed (b^T)", ct, reft, magt, (size_t)N * M, N, K, M);
        free(a), free(b), free(bt), free(c), free(ct), free(ref), free(reft), free(mag), free(magt);
    }
    fprintf(stderr, "gemm_packed: worst error %.2g of the tolerance's scale (%.0e)\n", worst,
            GEMM_RTOL);
}

TEST(tn_add_matches_float64_and_accumulates)
{
    rng_seed(&rng, 12, 0);
    for (size_t s = 0; s < OFFNAS_ARRAY_LEN(SHAPES); s++) {
        int N = SHAPES[s][0], K = SHAPES[s][1], M = SHAPES[s][2];
        float *a = frand((size_t)N * K), *g = frand((size_t)N * M), *c = frand((size_t)K * M);
        double *ref = malloc((size_t)K * M * sizeof *ref), *mag = malloc((size_t)K * M * sizeof *mag);
        for (int k = 0; k < K; k++)
            for (int m = 0; m < M; m++) {
                double r = c[(size_t)k * M + m], q = fabs(r);
                for (int n = 0; n < N; n++) {
                    double p = (double)a[(size_t)n * K + k] * g[(size_t)n * M + m];
                    r += p;
                    q += fabs(p);
                }
                ref[(size_t)k * M + m] = r, mag[(size_t)k * M + m] = q;
            }
        gemm_tn_add(c, a, g, N, K, M);
        compare("gemm_tn_add", c, ref, mag, (size_t)K * M, N, K, M);
        free(a), free(g), free(c), free(ref), free(mag);
    }
}

/* A product packed once and done chunk by chunk is the whole product, bit for bit. */
TEST(packed_chunks_equal_one_call)
{
    rng_seed(&rng, 13, 0);
    int N = 777, K = 40, M = 24;
    float *a = frand((size_t)N * K), *b = frand((size_t)M * K);
    float *whole = frand((size_t)N * M), *chunked = frand((size_t)N * M);
    gemm_packed(whole, a, gemm_pack(b, K, M, 1), N, K, M);
    const float *packed = gemm_pack(b, K, M, 1);
    for (int n0 = 0; n0 < N; n0 += 100)
        gemm_packed(chunked + (size_t)n0 * M, a + (size_t)n0 * K, packed,
                    N - n0 < 100 ? N - n0 : 100, K, M);
    CU_ASSERT(memcmp(whole, chunked, (size_t)N * M * sizeof *whole) == 0);
    free(a), free(b), free(whole), free(chunked);
}

TEST(threads_one_and_two_agree)
{
    rng_seed(&rng, 14, 0);
    int N = 1500, K = 48, M = 72;
    float *a = frand((size_t)N * K), *b = frand((size_t)K * M), *g = frand((size_t)N * M);
    float *c1 = frand((size_t)N * M), *c2 = frand((size_t)N * M);
    float *d1 = calloc((size_t)K * M, sizeof *d1), *d2 = calloc((size_t)K * M, sizeof *d2);
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    gemm_packed(c1, a, gemm_pack(b, K, M, 0), N, K, M);
    gemm_tn_add(d1, a, g, N, K, M);
    omp_set_num_threads(2);
    gemm_packed(c2, a, gemm_pack(b, K, M, 0), N, K, M);
    gemm_tn_add(d2, a, g, N, K, M);
    omp_set_num_threads(threads);
    CU_ASSERT(memcmp(c1, c2, (size_t)N * M * sizeof *c1) == 0);
    for (size_t i = 0; i < (size_t)K * M; i++)
        EXPECT_NEAR(d1[i], d2[i], GEMM_RTOL * (double)N);
    free(a), free(b), free(g), free(c1), free(c2), free(d1), free(d2);
}

static const struct test_case TESTS[] = {
    CASE(packed_products_match_float64),
    CASE(tn_add_matches_float64_and_accumulates),
    CASE(packed_chunks_equal_one_call),
    CASE(threads_one_and_two_agree),
};

TEST_MAIN("gemm", TESTS)
