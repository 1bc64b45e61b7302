/* latency_fit: the CSV reader of `offnas profile fit` and the non-negative least-squares cost
 * model it fits; see latency_fit.h. */
#define _POSIX_C_SOURCE 200809L
#include "latency_fit.h"

#include "check.h"
#include "common.h"

#include <errno.h>
#include <math.h>
#include <string.h>

void latency_block_features(double f[LATENCY_FIT_TERMS], int hin, int hout, int cin, int cout,
                            int expand, int kernel)
{
    double pin = (double)hin * hin, pout = (double)hout * hout, hidden = (double)cin * expand;
    double expand_macs = expand > 1 ? pin * cin * hidden : 0.0;
    /* elements each conv reads and writes: expand (in, hidden), depthwise (hidden at hin,
     * hidden at hout), project (hidden, out) */
    double expand_io = expand > 1 ? pin * cin + pin * hidden : 0.0;
    double io = expand_io + pin * hidden + 2.0 * pout * hidden + pout * cout;
    f[LATENCY_FIT_PW] = expand_macs + pout * hidden * cout;
    f[LATENCY_FIT_DW] = pout * kernel * kernel * hidden;
    f[LATENCY_FIT_BYTES] = 4.0 * io;
    f[LATENCY_FIT_BIAS] = 1.0;
}

#define FIT_MAX_TERMS 8

/* Least squares y ~ X c on the n columns idx[0..n) of X (rows x terms, row-major), the other
 * coefficients 0: columns scaled to unit RMS for conditioning, normal equations in double
 * solved by Gauss-Jordan elimination with partial pivoting. Returns 0, or -1 if singular. */
static int least_squares(double *coef, const double *X, const double *y, int rows, int terms,
                         const int *idx, int n)
{
    double scale[FIT_MAX_TERMS] = {0}, A[FIT_MAX_TERMS][FIT_MAX_TERMS + 1];
    for (int a = 0; a < n; a++) {
        for (int r = 0; r < rows; r++)
            scale[a] += X[r * terms + idx[a]] * X[r * terms + idx[a]];
        scale[a] = scale[a] > 0 ? sqrt(scale[a] / rows) : 1.0;
    }
    for (int a = 0; a < n; a++) {
        for (int b = 0; b <= n; b++)
            A[a][b] = 0.0;
        for (int r = 0; r < rows; r++) {
            double xa = X[r * terms + idx[a]] / scale[a];
            for (int b = 0; b < n; b++)
                A[a][b] += xa * X[r * terms + idx[b]] / scale[b];
            A[a][n] += xa * y[r];
        }
    }
    for (int p = 0; p < n; p++) {
        int best = p;
        for (int r = p + 1; r < n; r++)
            if (fabs(A[r][p]) > fabs(A[best][p]))
                best = r;
        if (fabs(A[best][p]) < 1e-12 * rows)
            return -1;
        for (int b = 0; b <= n; b++) {
            double tmp = A[p][b];
            A[p][b] = A[best][b];
            A[best][b] = tmp;
        }
        for (int r = 0; r < n; r++) {
            if (r == p)
                continue;
            double m = A[r][p] / A[p][p];
            for (int b = p; b <= n; b++)
                A[r][b] -= m * A[p][b];
        }
    }
    memset(coef, 0, (size_t)terms * sizeof *coef);
    for (int a = 0; a < n; a++)
        coef[idx[a]] = A[a][n] / A[a][a] / scale[a];
    return 0;
}

/* Least squares y ~ X c (X rows x terms, row-major) with every coefficient >= 0: a coefficient
 * that comes out negative is dropped (the most negative first) and the rest refitted. Returns
 * 0, or -1 if a system is singular. */
static int fit_nonnegative(double *coef, const double *X, const double *y, int rows, int terms)
{
    OFFNAS_ASSERT(terms <= FIT_MAX_TERMS);
    int active[FIT_MAX_TERMS];
    for (int j = 0; j < terms; j++)
        active[j] = 1;
    for (;;) {
        int idx[FIT_MAX_TERMS], n = 0;
        for (int j = 0; j < terms; j++)
            if (active[j])
                idx[n++] = j;
        OFFNAS_TRY(least_squares(coef, X, y, rows, terms, idx, n));
        int worst = -1;
        for (int a = 0; a < n; a++)
            if (coef[idx[a]] < 0 && (worst < 0 || coef[idx[a]] < coef[worst]))
                worst = idx[a];
        if (worst < 0)
            return 0;
        active[worst] = 0;
    }
}

/* Columns the fit reads, by name. */
enum { COL_DEVICE, COL_OP_TYPE, COL_INPUT_H, COL_IN_C, COL_OUT_C, COL_EXPAND, COL_KERNEL,
       COL_STRIDE, COL_SE, COL_LATENCY, COL_COUNT };
static const char *const COLUMN_NAMES[] = {"device", "op_type", "input_h", "in_channels",
                                           "out_channels", "expand_ratio", "kernel", "stride",
                                           "se", "latency_ms"};
_Static_assert(OFFNAS_ARRAY_LEN(COLUMN_NAMES) == COL_COUNT, "a name for every column");

#define CSV_MAX_FIELDS 64

/* Splits line in place at commas into fields; returns their number (or CSV_MAX_FIELDS + 1). */
static int split_fields(char *line, char **fields)
{
    int n = 0;
    for (char *p = line;;) {
        if (n == CSV_MAX_FIELDS)
            return n + 1;
        fields[n++] = p;
        char *comma = strchr(p, ',');
        if (!comma)
            return n;
        *comma = 0;
        p = comma + 1;
    }
}

static int parse_long(const char *text, long *out)
{
    char *end;
    errno = 0;
    *out = strtol(text, &end, 10);
    return errno || end == text || *end ? -1 : 0;
}

struct csv_rows {
    double *X, *y; /* block rows: features, ms */
    int count, capacity;
    double *stem_X, *stem_y; /* firstconv rows: MACs, 1; ms */
    int stem_count, stem_capacity;
};

static void push_row(double **X, double **y, int *count, int *capacity, const double *f, int terms,
                     double ms)
{
    if (*count == *capacity) {
        *capacity = *capacity ? 2 * *capacity : 256;
        double *nx = realloc(*X, (size_t)*capacity * terms * sizeof **X);
        double *ny = realloc(*y, (size_t)*capacity * sizeof **y);
        OFFNAS_ASSERT(nx && ny);
        *X = nx;
        *y = ny;
    }
    memcpy(*X + (size_t)*count * terms, f, (size_t)terms * sizeof *f);
    (*y)[(*count)++] = ms;
}

/* One data line (already split); adds it to rows if it is a block or stem row. */
static int csv_row(struct csv_rows *rows, struct latency_fit *fit, char **fields,
                   const int *col, const char *path, int line)
{
    const char *device = fields[col[COL_DEVICE]], *type = fields[col[COL_OP_TYPE]];
    if (strlen(device) >= sizeof fit->device)
        return offnas_error("%s:%d: device: longer than %zu characters", path, line,
                            sizeof fit->device - 1);
    if (!fit->device[0])
        snprintf(fit->device, sizeof fit->device, "%s", device);
    else if (strcmp(fit->device, device))
        return offnas_error("%s:%d: device: '%.40s' differs from '%s' of the first row", path,
                            line, device, fit->device);
    char *end;
    errno = 0;
    const char *ms_text = fields[col[COL_LATENCY]];
    double ms = strtod(ms_text, &end);
    if (errno || end == ms_text || *end || !isfinite(ms) || ms <= 0 ||
        ms > CHECK_MAX_LATENCY_MS)
        return offnas_error("%s:%d: latency_ms: '%.40s' is not a number of ms in (0, %g]", path,
                            line, ms_text, CHECK_MAX_LATENCY_MS);
    int is_block = !strcmp(type, "conv"), is_stem = !strcmp(type, "firstconv");
    if (!is_block && !is_stem)
        return 0;
    long v[COL_COUNT];
    for (int c = COL_INPUT_H; c <= COL_SE; c++)
        if (parse_long(fields[col[c]], &v[c]))
            return offnas_error("%s:%d: %s: '%.40s' is not an integer", path, line,
                                COLUMN_NAMES[c], fields[col[c]]);
    /* the plausible range of each shape column (expand_ratio: blocks only; -1 on stems) */
    static const struct {
        int column;
        long lo, hi;
    } ranges[] = {{COL_INPUT_H, 1, 100000}, {COL_IN_C, 1, 100000}, {COL_OUT_C, 1, 100000},
                  {COL_KERNEL, 1, 15},      {COL_STRIDE, 1, 8},     {COL_EXPAND, 1, 64}};
    for (size_t r = 0; r < OFFNAS_ARRAY_LEN(ranges); r++) {
        long x = v[ranges[r].column];
        if ((is_block || ranges[r].column != COL_EXPAND) && (x < ranges[r].lo || x > ranges[r].hi))
            return offnas_error("%s:%d: %s: %ld is not in %ld..%ld", path, line,
                                COLUMN_NAMES[ranges[r].column], x, ranges[r].lo, ranges[r].hi);
    }
    long hin = v[COL_INPUT_H], cin = v[COL_IN_C], cout = v[COL_OUT_C], k = v[COL_KERNEL],
         s = v[COL_STRIDE], e = v[COL_EXPAND];
    int hout = (int)(hin / s) > 0 ? (int)(hin / s) : 1; /* nn-Meter: hw // stride */
    if (is_block) {
        if (v[COL_SE] != 0)
            return 0; /* squeeze-excitation blocks: not in our space */
        double f[LATENCY_FIT_TERMS];
        latency_block_features(f, (int)hin, hout, (int)cin, (int)cout, (int)e, (int)k);
        push_row(&rows->X, &rows->y, &rows->count, &rows->capacity, f, LATENCY_FIT_TERMS, ms);
    } else {
        double f[2] = {(double)hout * hout * k * k * cin * cout, 1.0};
        push_row(&rows->stem_X, &rows->stem_y, &rows->stem_count, &rows->stem_capacity, f, 2, ms);
    }
    return 0;
}

/* The header line, split into n fields: col[c] gets the field of every column the fit reads. */
static int find_columns(int col[COL_COUNT], char **fields, int n, const char *path)
{
    if (n > CSV_MAX_FIELDS)
        return offnas_error("%s:1: more than %d columns", path, CSV_MAX_FIELDS);
    for (int c = 0; c < COL_COUNT; c++) {
        col[c] = -1;
        for (int i = 0; i < n; i++)
            if (!strcmp(fields[i], COLUMN_NAMES[c]))
                col[c] = i;
        if (col[c] < 0)
            return offnas_error("%s:1: %s: header has no such column", path, COLUMN_NAMES[c]);
    }
    return 0;
}

/* Refuses a data line (split into n fields) without the header's columns or with an empty
 * field. */
static int check_fields(char **fields, int n, int columns, const char *path, int line)
{
    if (n > CSV_MAX_FIELDS)
        return offnas_error("%s:%d: more than %d fields, the header has %d", path, line,
                            CSV_MAX_FIELDS, columns);
    if (n != columns)
        return offnas_error("%s:%d: %d fields, the header has %d", path, line, n, columns);
    for (int i = 0; i < n; i++)
        if (!fields[i][0])
            return offnas_error("%s:%d: field %d is empty", path, line, i + 1);
    return 0;
}

static int read_csv(struct csv_rows *rows, struct latency_fit *fit, const char *path)
{
    FILE *in = fopen(path, "r");
    if (!in)
        return offnas_error("%s: cannot open: %s", path, strerror(errno));
    char *line = NULL, *fields[CSV_MAX_FIELDS + 1];
    size_t cap = 0;
    int col[COL_COUNT], columns = 0, line_no = 0, rc = 0;
    ssize_t len;
    while (!rc && (len = getline(&line, &cap, in)) >= 0) {
        line_no++;
        if ((size_t)len != strlen(line)) {
            rc = offnas_error("%s:%d: NUL byte in line", path, line_no);
            break;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        if (len == 0) {
            rc = offnas_error("%s:%d: empty line", path, line_no);
            break;
        }
        int n = split_fields(line, fields);
        if (line_no == 1) {
            rc = find_columns(col, fields, n, path);
            columns = n;
            continue;
        }
        rc = check_fields(fields, n, columns, path, line_no);
        if (!rc)
            rc = csv_row(rows, fit, fields, col, path, line_no);
    }
    if (!rc && ferror(in))
        rc = offnas_error("%s: read error: %s", path, strerror(errno));
    if (!rc && line_no == 0)
        rc = offnas_error("%s: empty file (no header)", path);
    free(line);
    fclose(in);
    return rc;
}

static double dot(const double *a, const double *b, int n)
{
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* The block model: fitted on the rows whose index is not 4 mod 5, its held-out errors on the
 * others. */
static int fit_blocks(struct latency_fit *fit, const struct csv_rows *rows, const char *path)
{
    const int T = LATENCY_FIT_TERMS;
    int n = rows->count, train = 0, test = 0;
    double *X = offnas_malloc((size_t)n * T * sizeof *X), *y = offnas_malloc((size_t)n * sizeof *y);
    for (int r = 0; r < n; r++)
        if (r % 5 != 4) {
            memcpy(X + (size_t)train * T, rows->X + (size_t)r * T, (size_t)T * sizeof *X);
            y[train++] = rows->y[r];
        }
    int rc = 0;
    if (fit_nonnegative(fit->coef, X, y, train, T))
        rc = offnas_error("%s: the MBConv rows do not determine the model (singular fit)", path);
    double abs_pct = 0.0, sq = 0.0;
    for (int r = 4; r < n && !rc; r += 5, test++) {
        double err = dot(fit->coef, rows->X + (size_t)r * T, T) - rows->y[r];
        abs_pct += fabs(err) / rows->y[r];
        sq += err * err;
    }
    fit->train_rows = train;
    fit->test_rows = test;
    fit->mape = test ? 100.0 * abs_pct / test : 0.0;
    fit->rmse_ms = test ? sqrt(sq / test) : 0.0;
    free(X);
    free(y);
    /* what latency_load refuses in a table: not written, refused here naming the CSV */
    if (!rc && (check_double(path, "held-out mape", fit->mape, 0.0, LATENCY_MAX_FIT_MAPE) ||
                check_double(path, "held-out rmse_ms", fit->rmse_ms, 0.0, CHECK_MAX_LATENCY_MS)))
        rc = -1;
    for (int j = 0; j < T && !rc; j++)
        if (!isfinite(fit->coef[j]))
            rc = offnas_error("%s: the fitted model: coefficient %d is %g", path, j, fit->coef[j]);
    return rc;
}

/* The stem model from the firstconv rows; without two usable ones a stem is costed as
 * pointwise MACs plus a block's bias. */
static void fit_stem(struct latency_fit *fit, const struct csv_rows *rows)
{
    fit->stem_rows = rows->stem_count;
    if (rows->stem_count < 2 ||
        fit_nonnegative(fit->stem_coef, rows->stem_X, rows->stem_y, rows->stem_count, 2)) {
        fit->stem_coef[0] = fit->coef[LATENCY_FIT_PW];
        fit->stem_coef[1] = fit->coef[LATENCY_FIT_BIAS];
        fit->stem_rows = 0;
    }
}

int latency_fit_csv(struct latency_fit *fit, const char *path)
{
    memset(fit, 0, sizeof *fit);
    snprintf(fit->source, sizeof fit->source, "fit: %s", path);
    struct csv_rows rows = {0};
    int rc = read_csv(&rows, fit, path);
    if (!rc && rows.count < 10)
        rc = offnas_error("%s: %d MBConv rows (op_type conv, se 0); the fit needs at least 10",
                          path, rows.count);
    if (!rc)
        rc = fit_blocks(fit, &rows, path);
    if (!rc)
        fit_stem(fit, &rows);
    free(rows.X);
    free(rows.y);
    free(rows.stem_X);
    free(rows.stem_y);
    return rc;
}

int latency_fit_table(struct latency_table *t, const struct latency_fit *fit,
                      const struct net *net, double scale)
{
    OFFNAS_ASSERT(t->slot_count == net->layer_count + 2);
    int L = net->layer_count;
    double ms[LATENCY_MAX_SLOTS][NET_MAX_CANDIDATES] = {{0}};
    ms[0][0] = fit->stem_coef[0] * net->stem_side * net->stem_side * 9.0 * net->in_channels *
                   net->stem_channels +
               fit->stem_coef[1];
    for (int l = 0; l < L; l++) {
        const struct net_layer *layer = &net->layers[l];
        for (int i = 0; i < layer->candidate_count; i++) {
            const struct net_block *blk = &layer->cand[i];
            if (blk->spec.kind == OP_SKIP)
                continue;
            double f[LATENCY_FIT_TERMS];
            latency_block_features(f, layer->hin, layer->hout, layer->cin, layer->cout,
                                   blk->spec.expand, blk->kernel);
            ms[l + 1][i] = dot(fit->coef, f, LATENCY_FIT_TERMS);
        }
    }
    /* head: 1x1 conv + pool + linear, costed as a block without depthwise part */
    int last_c = L ? net->layers[L - 1].cout : net->stem_channels;
    int hw = L ? net->layers[L - 1].hout : net->stem_side;
    double pix = (double)hw * hw;
    double head[LATENCY_FIT_TERMS] = {
        [LATENCY_FIT_PW] = pix * last_c * net->head_channels +
                           (double)net->head_channels * net->classes,
        [LATENCY_FIT_DW] = 0.0,
        [LATENCY_FIT_BYTES] = 4.0 * (pix * last_c + 2.0 * pix * net->head_channels +
                                     net->head_channels + net->classes),
        [LATENCY_FIT_BIAS] = 1.0,
    };
    ms[L + 1][0] = dot(fit->coef, head, LATENCY_FIT_TERMS);
    for (int s = 0; s < t->slot_count; s++)
        for (int i = 0; i < t->op_count[s]; i++) {
            double v = ms[s][i] * scale;
            if (!isfinite(v) || v < 0 || v > CHECK_MAX_LATENCY_MS)
                return offnas_error("%s: the fitted model gives %g ms for (slot %d, op %d) at "
                                    "scale %g, not in [0, %g]",
                                    fit->source + strlen("fit: "), v, s, i, scale,
                                    CHECK_MAX_LATENCY_MS);
            t->median[s][i] = t->p10[s][i] = t->p90[s][i] = v;
            t->repeats[s][i] = 0;
        }
    snprintf(t->source, sizeof t->source, "%s", fit->source);
    snprintf(t->cpu, sizeof t->cpu, "%s", fit->device);
    t->fit_mape = fit->mape;
    t->fit_rmse_ms = fit->rmse_ms;
    return 0;
}
