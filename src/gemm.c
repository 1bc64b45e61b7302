/* gemm: register-tiled products for the pointwise convolutions (see gemm.h).
 *
 * A tile of GEMM_ROWS rows by two 16-wide column panels of the result lives in 16 vector
 * registers while the shared dimension is walked: per step two vector loads of the packed small
 * matrix and GEMM_ROWS scalars of the long one, broadcast into 2 * GEMM_ROWS fused multiply-adds.
 * The long operand is read where it lies, in chunks of GEMM_CHUNK rows that stay in L2 while
 * every column panel passes over them. GCC's vector extensions keep it portable: 16-wide vectors
 * are one AVX-512 register, or four NEON ones on the device build. */
#include "gemm.h"

#include "common.h"

#include <omp.h>
#include <string.h>

#define GEMM_PANEL 16 /* columns per vector */
#define GEMM_ROWS 8   /* result rows per register tile */
#define GEMM_CHUNK 256 /* rows of the long operand per L2 pass */

/* Grown, never shrunk: the packed small matrix and gemm_tn_add's per-thread partial sums. */
static float *pack_buf, *partial_buf;
static size_t pack_floats, partial_floats;

static float *grow(float **buf, size_t *have, size_t floats)
{
    if (floats > *have) {
        free(*buf);
        *buf = offnas_malloc(floats * sizeof(float));
        *have = floats;
    }
    return *buf;
}

/* Panel p holds rows k = 0..K-1 of the columns 16p..16p+15 of b (K,M), or of b^T when b is
 * (M,K), zero past column M. */
const float *gemm_pack(const float *b, int K, int M, int transposed)
{
    int panels = (M + GEMM_PANEL - 1) / GEMM_PANEL;
    float *bp = grow(&pack_buf, &pack_floats, (size_t)panels * K * GEMM_PANEL);
    for (int p = 0; p < panels; p++)
        for (int k = 0; k < K; k++) {
            float *dst = bp + ((size_t)p * K + k) * GEMM_PANEL;
            for (int j = 0; j < GEMM_PANEL; j++) {
                int col = p * GEMM_PANEL + j;
                dst[j] = col >= M ? 0.0f
                         : transposed ? b[(size_t)col * K + k]
                                      : b[(size_t)k * M + col];
            }
        }
    return bp;
}

/* The first n (< 16) floats of v to dst. */
static inline void store_part(float *dst, v16f v, int n)
{
    float lanes[GEMM_PANEL];
    memcpy(lanes, &v, sizeof lanes);
    memcpy(dst, lanes, (size_t)n * sizeof(float));
}

static inline void store_cols(float *dst, v16f v, int n)
{
    if (n >= GEMM_PANEL)
        ST16(dst, v);
    else
        store_part(dst, v, n);
}

/* c rows 0..rows-1, columns col..col+16*panels-1 (clipped at M) = a rows times the packed
 * panels bp (K rows of 16 each, the second right after the first). */
static inline __attribute__((always_inline)) void
tile_nn(float *c, const float *a, const float *bp, int K, int M, int col, int rows, int panels)
{
    v16f acc[GEMM_ROWS][2];
    for (int r = 0; r < rows; r++)
        acc[r][0] = acc[r][1] = (v16f){0};
    const float *b1 = bp + (size_t)K * GEMM_PANEL;
    for (int k = 0; k < K; k++) {
        v16f x0 = LD16(bp + (size_t)k * GEMM_PANEL);
        v16f x1 = panels == 2 ? LD16(b1 + (size_t)k * GEMM_PANEL) : (v16f){0};
        for (int r = 0; r < rows; r++) {
            float s = a[(size_t)r * K + k];
            acc[r][0] += s * x0;
            if (panels == 2)
                acc[r][1] += s * x1;
        }
    }
    for (int r = 0; r < rows; r++) {
        float *dst = c + (size_t)r * M + col;
        store_cols(dst, acc[r][0], M - col);
        if (panels == 2)
            store_cols(dst + GEMM_PANEL, acc[r][1], M - col - GEMM_PANEL);
    }
}

/* Rows n0..n1 of c = a bp, every column. */
static void rows_nn(float *c, const float *a, const float *bp, int n0, int n1, int K, int M)
{
    int panels = (M + GEMM_PANEL - 1) / GEMM_PANEL;
    for (int p = 0; p < panels; p += 2) {
        const float *panel = bp + (size_t)p * K * GEMM_PANEL;
        int col = p * GEMM_PANEL, two = p + 1 < panels;
        int n = n0;
        for (; n + GEMM_ROWS <= n1; n += GEMM_ROWS) {
            float *cn = c + (size_t)n * M;
            const float *an = a + (size_t)n * K;
            if (two)
                tile_nn(cn, an, panel, K, M, col, GEMM_ROWS, 2);
            else
                tile_nn(cn, an, panel, K, M, col, GEMM_ROWS, 1);
        }
        if (n < n1)
            tile_nn(c + (size_t)n * M, a + (size_t)n * K, panel, K, M, col, n1 - n, two ? 2 : 1);
    }
}

void gemm_packed(float *c, const float *a, const float *bp, int N, int K, int M)
{
    int chunks = (N + GEMM_CHUNK - 1) / GEMM_CHUNK;
#pragma omp parallel for schedule(static) if (chunks > 1 && omp_get_max_threads() > 1)
    for (int ch = 0; ch < chunks; ch++) {
        int n0 = ch * GEMM_CHUNK, n1 = n0 + GEMM_CHUNK < N ? n0 + GEMM_CHUNK : N;
        rows_nn(c, a, bp, n0, n1, K, M);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* c = act(a b * scale + shift + residual), b read in place: a tile of rows by P 16-wide panels
 * and H (0 or 1) 8-wide half panel of columns, all in one pass over the rows' k (so a row's
 * scalar is broadcast once for every column of the tile), the epilogue on the registers. */

#define AFFINE_PANELS 3 /* at most: 8 rows x 3 panels = 24 accumulators */

/* The weights of columns j.. as a tile reads them: panel q's row k at at[q * panel + k * row]. */
struct affine_cols {
    const float *at;
    size_t panel, row;
};

static inline __attribute__((always_inline)) void
tile_affine(float *c, const float *a, struct affine_cols bc, int K, int M, int j, int rows, int P,
            int H, const struct gemm_epilogue *e, const float *res)
{
    v16f acc[GEMM_ROWS][AFFINE_PANELS];
    v8f half[GEMM_ROWS];
    for (int r = 0; r < rows; r++) {
        for (int q = 0; q < P; q++)
            acc[r][q] = (v16f){0};
        half[r] = (v8f){0};
    }
    const float *bk = bc.at;
    for (int k = 0; k < K; k++, bk += bc.row) {
        v16f x[AFFINE_PANELS];
        for (int q = 0; q < P; q++)
            x[q] = LD16(bk + q * bc.panel);
        v8f xh = H ? LD8(bk + P * bc.panel) : (v8f){0};
        for (int r = 0; r < rows; r++) {
            float s = a[(size_t)r * K + k];
            for (int q = 0; q < P; q++)
                acc[r][q] += s * x[q];
            if (H)
                half[r] += s * xh;
        }
    }
    for (int r = 0; r < rows; r++) {
        float *dst = c + (size_t)r * M + j;
        const float *rr = res ? res + (size_t)r * M + j : NULL;
        for (int q = 0; q < P; q++)
            ST16(dst + q * GEMM_PANEL, gemm_epilogue16(acc[r][q], e, j + q * GEMM_PANEL,
                                                       rr ? rr + q * GEMM_PANEL : NULL));
        if (H)
            ST8(dst + P * GEMM_PANEL, gemm_epilogue8(half[r], e, j + P * GEMM_PANEL,
                                                     rr ? rr + P * GEMM_PANEL : NULL));
    }
}

/* b (K,M) in place, or packed by gemm_pack when bp is not NULL (j a multiple of 16). */
static inline __attribute__((always_inline)) void
rows_affine_tiles(float *c, const float *a, const float *b, const float *bp, int n0, int n1, int K,
                  int M, int j, int P, int H, const struct gemm_epilogue *e)
{
    struct affine_cols bc = {b + j, GEMM_PANEL, (size_t)M};
    if (bp)
        bc = (struct affine_cols){bp + (size_t)(j / GEMM_PANEL) * K * GEMM_PANEL,
                                  (size_t)K * GEMM_PANEL, GEMM_PANEL};
    int n = n0;
    for (; n + GEMM_ROWS <= n1; n += GEMM_ROWS)
        tile_affine(c + (size_t)n * M, a + (size_t)n * K, bc, K, M, j, GEMM_ROWS, P, H, e,
                    e->residual ? e->residual + (size_t)n * M : NULL);
    if (n < n1)
        tile_affine(c + (size_t)n * M, a + (size_t)n * K, bc, K, M, j, n1 - n, P, H, e,
                    e->residual ? e->residual + (size_t)n * M : NULL);
}

/* Rows n0..n1 of the product, every column: tiles 48 wide while more than 48 columns are left
 * (64 as two of 32), then one tile of what is left in 16- and 8-wide panels (16 to 40
 * columns), then the columns past the last 8 one by one (the same k order). */
static void rows_affine(float *c, const float *a, const float *b, const float *bp, int n0, int n1,
                        int K, int M, const struct gemm_epilogue *e)
{
    int j = 0;
    while (M - j >= 48 && M - j != 64) {
        rows_affine_tiles(c, a, b, bp, n0, n1, K, M, j, 3, 0, e);
        j += 48;
    }
    if (M - j == 64) {
        rows_affine_tiles(c, a, b, bp, n0, n1, K, M, j, 2, 0, e);
        j += 32;
    }
    int P = (M - j) / GEMM_PANEL, H = (M - j) % GEMM_PANEL >= 8;
    switch (P * 2 + H) {
    case 1: rows_affine_tiles(c, a, b, bp, n0, n1, K, M, j, 0, 1, e); break;
    case 2: rows_affine_tiles(c, a, b, bp, n0, n1, K, M, j, 1, 0, e); break;
    case 3: rows_affine_tiles(c, a, b, bp, n0, n1, K, M, j, 1, 1, e); break;
    case 4: rows_affine_tiles(c, a, b, bp, n0, n1, K, M, j, 2, 0, e); break;
    case 5: rows_affine_tiles(c, a, b, bp, n0, n1, K, M, j, 2, 1, e); break;
    default: break;
    }
    j += P * GEMM_PANEL + H * 8;
    for (int n = n0; j < M && n < n1; n++)
        for (int jj = j; jj < M; jj++) {
            float s = 0.0f;
            for (int k = 0; k < K; k++)
                s += a[(size_t)n * K + k] * b[(size_t)k * M + jj];
            c[(size_t)n * M + jj] =
                gemm_epilogue1(s, e, jj, e->residual ? e->residual + (size_t)n * M + jj : NULL);
        }
}

/* Weights of more floats than this are packed first: read in place, a tile's K rows of 48
 * columns lie M floats apart, and past L1 that costs more than the copy. Batch-1 products of
 * the camera network (microbenchmark, 2 jobs beside it): 196 x 192 -> 1152 took 1029 us in
 * place, 815 packed, 705 in OpenBLAS (no epilogue); 196 x 128 -> 768: 432, 338, 313. The
 * default network's largest weights (144 x 64) stay below and in place. */
#define AFFINE_PACK_FLOATS 16384

void gemm_affine(float *c, const float *a, const float *b, int N, int K, int M,
                 const struct gemm_epilogue *e)
{
    const float *bp = (size_t)K * M > AFFINE_PACK_FLOATS ? gemm_pack(b, K, M, 0) : NULL;
    int chunks = (N + GEMM_CHUNK - 1) / GEMM_CHUNK;
    KERNEL_FOR(ch, chunks, chunks > 1, int n0 = ch * GEMM_CHUNK;
               rows_affine(c, a, b, bp, n0, n0 + GEMM_CHUNK < N ? n0 + GEMM_CHUNK : N, K, M, e));
}

/* ------------------------------------------------------------------------------------------ */
/* c (K,M) += a^T g: a tile of rows i..i+rows-1 of c (columns of a) by W columns of g (32, 16 or
 * 8) summed over the rows n0..n1 in registers, then added to c. */

static inline __attribute__((always_inline)) void
tile_tn(float *c, const float *a, const float *g, int n0, int n1, int K, int M, int i, int j,
        int rows, int width)
{
    v16f acc[GEMM_ROWS][2];
    v8f half[GEMM_ROWS];
    for (int r = 0; r < rows; r++) {
        acc[r][0] = acc[r][1] = (v16f){0};
        half[r] = (v8f){0};
    }
    for (int n = n0; n < n1; n++) {
        const float *gn = g + (size_t)n * M + j, *an = a + (size_t)n * K + i;
        if (width == 8) {
            v8f x = LD8(gn);
            for (int r = 0; r < rows; r++)
                half[r] += an[r] * x;
            continue;
        }
        v16f x0 = LD16(gn);
        v16f x1 = width == 32 ? LD16(gn + GEMM_PANEL) : (v16f){0};
        for (int r = 0; r < rows; r++) {
            acc[r][0] += an[r] * x0;
            if (width == 32)
                acc[r][1] += an[r] * x1;
        }
    }
    for (int r = 0; r < rows; r++) {
        float *dst = c + (size_t)(i + r) * M + j;
        if (width == 8) {
            ST8(dst, LD8(dst) + half[r]);
            continue;
        }
        ST16(dst, LD16(dst) + acc[r][0]);
        if (width == 32)
            ST16(dst + GEMM_PANEL, LD16(dst + GEMM_PANEL) + acc[r][1]);
    }
}

static inline __attribute__((always_inline)) void
rows_tn_width(float *c, const float *a, const float *g, int n0, int n1, int K, int M, int j,
              int width)
{
    int i = 0;
    for (; i + GEMM_ROWS <= K; i += GEMM_ROWS)
        tile_tn(c, a, g, n0, n1, K, M, i, j, GEMM_ROWS, width);
    if (i < K)
        tile_tn(c, a, g, n0, n1, K, M, i, j, K - i, width);
}

static void rows_tn(float *c, const float *a, const float *g, int n0, int n1, int K, int M)
{
    int j = 0;
    for (; j + 2 * GEMM_PANEL <= M; j += 2 * GEMM_PANEL)
        rows_tn_width(c, a, g, n0, n1, K, M, j, 32);
    for (; j + GEMM_PANEL <= M; j += GEMM_PANEL)
        rows_tn_width(c, a, g, n0, n1, K, M, j, 16);
    for (; j + 8 <= M; j += 8)
        rows_tn_width(c, a, g, n0, n1, K, M, j, 8);
    for (int i = 0; j < M && i < K; i++) /* the columns past the last 8 */
        for (int jj = j; jj < M; jj++) {
            float s = 0.0f;
            for (int n = n0; n < n1; n++)
                s += a[(size_t)n * K + i] * g[(size_t)n * M + jj];
            c[(size_t)i * M + jj] += s;
        }
}

void gemm_tn_add(float *c, const float *a, const float *g, int N, int K, int M)
{
    int chunks = (N + GEMM_CHUNK - 1) / GEMM_CHUNK;
    int threads = omp_get_max_threads();
    if (threads > chunks)
        threads = chunks;
    if (threads <= 1) {
        for (int n0 = 0; n0 < N; n0 += GEMM_CHUNK)
            rows_tn(c, a, g, n0, n0 + GEMM_CHUNK < N ? n0 + GEMM_CHUNK : N, K, M);
        return;
    }
    size_t size = (size_t)K * M;
    float *partial = grow(&partial_buf, &partial_floats, size * (size_t)threads);
    memset(partial, 0, size * (size_t)threads * sizeof(float));
#pragma omp parallel num_threads(threads)
    {
        float *own = partial + size * (size_t)omp_get_thread_num();
#pragma omp for schedule(static)
        for (int ch = 0; ch < chunks; ch++) {
            int n0 = ch * GEMM_CHUNK, n1 = n0 + GEMM_CHUNK < N ? n0 + GEMM_CHUNK : N;
            rows_tn(own, a, g, n0, n1, K, M);
        }
    }
    for (int t = 0; t < threads; t++)
        for (size_t x = 0; x < size; x++)
            c[x] += partial[size * (size_t)t + x];
}
