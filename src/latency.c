/* latency: per-device lookup tables, their HDF5 files, measurement on this machine, the cost
 * model fitted to published phone measurements, and the network presets; see latency.h. */
#define _POSIX_C_SOURCE 200809L
#include "latency.h"

#include "common.h"
#include "h5.h"
#include "rng.h"
#include "timing.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- fingerprint ------------------------------------------------------------------------ */

/* Appends printf-style text to buf at *len, never past size (the text is then truncated; the
 * hash is taken over the full text anyway, see latency_fingerprint). */
static void append(char *buf, size_t size, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void append(char *buf, size_t size, size_t *len, const char *fmt, ...)
{
    if (*len >= size)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *len, size - *len, fmt, ap);
    va_end(ap);
    if (n > 0)
        *len = *len + (size_t)n < size ? *len + (size_t)n : size;
}

/* The canonical text, e.g. "side=28;in=1;classes=10;stem=16;layers=16/1,24/2;ops=k3e1|skip,
 * k3e1;head=128" (no spaces); a stem with stride 2 is "stem=16/2". JOB_MAX_LAYERS *
 * JOB_MAX_CANDIDATES names fit in it. */
#define SPACE_TEXT_MAX LATENCY_SPACE_MAX

uint64_t latency_fingerprint(const struct net *net, char *buf, size_t size)
{
    char text[SPACE_TEXT_MAX];
    size_t len = 0;
    append(text, sizeof text, &len, "side=%d;in=%d;classes=%d;stem=%d", net->side,
           net->in_channels, net->classes, net->stem_channels);
    /* written only when not 1, so the tables made before the stem had a stride keep theirs */
    if (net->stem_stride != 1)
        append(text, sizeof text, &len, "/%d", net->stem_stride);
    append(text, sizeof text, &len, ";layers=");
    for (int l = 0; l < net->layer_count; l++)
        append(text, sizeof text, &len, "%s%d/%d", l ? "," : "", net->layers[l].cout,
               net->layers[l].stride);
    append(text, sizeof text, &len, ";ops=");
    for (int l = 0; l < net->layer_count; l++) {
        const struct net_layer *layer = &net->layers[l];
        for (int i = 0; i < layer->candidate_count; i++) {
            char name[16];
            append(text, sizeof text, &len, "%s%s", i ? "|" : (l ? "," : ""),
                   op_spec_name(&layer->cand[i].spec, name));
        }
    }
    append(text, sizeof text, &len, ";head=%d", net->head_channels);
    OFFNAS_ASSERT(len < sizeof text - 1);
    if (buf && size) {
        strncpy(buf, text, size - 1);
        buf[size - 1] = 0;
    }
    return offnas_fnv1a64(text, len, OFFNAS_FNV1A64_SEED);
}

void latency_table_init(struct latency_table *table, const struct net *net, const char *device)
{
    memset(table, 0, sizeof *table);
    snprintf(table->device, sizeof table->device, "%s", device ? device : "");
    table->fingerprint = latency_fingerprint(net, table->space, sizeof table->space);
    table->slot_count = net->layer_count + 2;
    table->op_count[0] = 1;
    for (int l = 0; l < net->layer_count; l++)
        table->op_count[l + 1] = net->layers[l].candidate_count;
    table->op_count[net->layer_count + 1] = 1;
    table->threads = 1;
    table->fit_mape = -1.0;
    table->fit_rmse_ms = -1.0;
}

void latency_now_iso8601(char *buf, size_t size)
{
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm) == NULL || strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, size, "unknown");
}

/* CPU model from /proc/cpuinfo ("model name"), or "unknown". */
static void cpu_model(char *buf, size_t size)
{
    snprintf(buf, size, "unknown");
    FILE *in = fopen("/proc/cpuinfo", "r");
    if (!in)
        return;
    char line[512];
    while (fgets(line, sizeof line, in)) {
        if (strncmp(line, "model name", 10))
            continue;
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        v[strcspn(v, "\r\n")] = 0;
        snprintf(buf, size, "%s", v);
        break;
    }
    fclose(in);
}

void latency_stamp_here(struct latency_table *t, int threads)
{
    t->threads = threads;
    snprintf(t->source, sizeof t->source, "measured");
    if (gethostname(t->host, sizeof t->host) != 0)
        snprintf(t->host, sizeof t->host, "unknown");
    t->host[sizeof t->host - 1] = 0;
    cpu_model(t->cpu, sizeof t->cpu);
    latency_now_iso8601(t->date, sizeof t->date);
}

/* ---- measurement ------------------------------------------------------------------------ */

/* One piece of a network to time: the stem, a block (layer, op), the head or all of it. */
enum piece_kind { PIECE_STEM, PIECE_BLOCK, PIECE_HEAD, PIECE_NETWORK };

struct piece {
    struct net *net;
    enum piece_kind kind;
    int layer, op;  /* of PIECE_BLOCK */
    const float *x; /* one input of the piece */
};

/* One batch-1 eval forward of the piece (a timing_run callback). */
static void run_piece(void *ctx)
{
    const struct piece *p = ctx;
    switch (p->kind) {
    case PIECE_STEM: net_run_stem(p->net, p->x, 1, 0); break;
    case PIECE_BLOCK: net_run_block(p->net, p->layer, p->op, p->x, 1, 0); break;
    case PIECE_HEAD: net_run_head(p->net, p->x, 1, 0); break;
    case PIECE_NETWORK: net_forward(p->net, p->x, 1, 0); break;
    }
}

/* Times one piece and stores its statistics as entry (slot, op) of t. */
static void time_piece(struct latency_table *t, int slot, struct piece piece, int warmup,
                       int repeats)
{
    struct timing timing = timing_run(run_piece, &piece, warmup, repeats);
    t->median[slot][piece.op] = timing.median;
    t->p10[slot][piece.op] = timing.p10;
    t->p90[slot][piece.op] = timing.p90;
    t->repeats[slot][piece.op] = timing.repeats;
}

struct timing latency_forward_timing(struct net *net, const float *x, int warmup, int repeats)
{
    struct piece whole = {.net = net, .kind = PIECE_NETWORK, .x = x};
    return timing_run(run_piece, &whole, warmup, repeats);
}

double latency_network_ms(const struct latency_table *t, int layers, const int *ops)
{
    double total = t->median[0][0] + t->median[layers + 1][0];
    for (int l = 0; l < layers; l++)
        total += t->median[l + 1][ops[l]];
    return total;
}

static void fill_normal(float *x, size_t n, struct rng *rng)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)rng_normal(rng);
}

void latency_measure(struct latency_table *table, struct net *net, int warmup, int repeats)
{
    OFFNAS_ASSERT(net->batch >= 1 && repeats >= 1 && warmup >= 0);
    OFFNAS_ASSERT(table->slot_count == net->layer_count + 2);
    struct rng rng;
    rng_seed(&rng, 20210101, 0x6c6174);

    /* The largest input any piece reads, one image. */
    size_t most = (size_t)net->side * net->side * net->in_channels;
    for (int l = 0; l < net->layer_count; l++) {
        const struct net_layer *layer = &net->layers[l];
        size_t n = (size_t)layer->hin * layer->win * layer->cin;
        most = n > most ? n : most;
    }
    int last = net->layer_count - 1;
    int head_c = last >= 0 ? net->layers[last].cout : net->stem_channels;
    int head_hw = last >= 0 ? net->layers[last].hout : net->stem_side;
    size_t head_n = (size_t)head_hw * head_hw * head_c;
    most = head_n > most ? head_n : most;
    float *x = offnas_malloc(most * sizeof *x);

    double start = offnas_now();
    fill_normal(x, (size_t)net->side * net->side * net->in_channels, &rng);
    time_piece(table, 0, (struct piece){net, PIECE_STEM, 0, 0, x}, warmup, repeats);
    offnas_log("profile: stem %.4f ms", table->median[0][0]);
    for (int l = 0; l < net->layer_count; l++) {
        const struct net_layer *layer = &net->layers[l];
        fill_normal(x, (size_t)layer->hin * layer->win * layer->cin, &rng);
        double lo = INFINITY, hi = 0.0;
        for (int i = 0; i < layer->candidate_count; i++) {
            time_piece(table, l + 1, (struct piece){net, PIECE_BLOCK, l, i, x}, warmup, repeats);
            double m = table->median[l + 1][i];
            lo = m < lo ? m : lo;
            hi = m > hi ? m : hi;
        }
        offnas_log("profile: layer %d/%d (%d->%d, stride %d, %dx%d): %d ops, %.4f..%.4f ms", l + 1,
                   net->layer_count, layer->cin, layer->cout, layer->stride, layer->hin,
                   layer->win, layer->candidate_count, lo, hi);
    }
    fill_normal(x, head_n, &rng);
    time_piece(table, net->layer_count + 1, (struct piece){net, PIECE_HEAD, 0, 0, x}, warmup,
               repeats);
    offnas_log("profile: head %.4f ms (%.1f s in all)", table->median[net->layer_count + 1][0],
               offnas_now() - start);
    free(x);
}

/* ---- files ------------------------------------------------------------------------------ */

int latency_save(const struct latency_table *t, const char *path)
{
    int rows = 0;
    for (int s = 0; s < t->slot_count; s++)
        rows += t->op_count[s];
    int32_t *slot = offnas_malloc((size_t)rows * sizeof *slot);
    int32_t *op = offnas_malloc((size_t)rows * sizeof *op);
    int32_t *repeats = offnas_malloc((size_t)rows * sizeof *repeats);
    double *median = offnas_malloc((size_t)rows * sizeof *median);
    double *p10 = offnas_malloc((size_t)rows * sizeof *p10);
    double *p90 = offnas_malloc((size_t)rows * sizeof *p90);
    int r = 0;
    for (int s = 0; s < t->slot_count; s++)
        for (int i = 0; i < t->op_count[s]; i++, r++) {
            slot[r] = s;
            op[r] = i;
            repeats[r] = t->repeats[s][i];
            median[r] = t->median[s][i];
            p10[r] = t->p10[s][i];
            p90[r] = t->p90[s][i];
        }

    char fingerprint[32];
    snprintf(fingerprint, sizeof fingerprint, "%016llx", (unsigned long long)t->fingerprint);
    char tmp[H5_PATH_MAX];
    int rc = -1;
    hid_t f = h5_create_tmp(path, tmp, sizeof tmp);
    if (f >= 0) {
        hsize_t dims[1] = {(hsize_t)rows};
        if (h5_attr_set_string(f, "device", t->device) || h5_attr_set_string(f, "host", t->host) ||
            h5_attr_set_string(f, "cpu", t->cpu) || h5_attr_set_string(f, "date", t->date) ||
            h5_attr_set_string(f, "source", t->source) ||
            h5_attr_set_string(f, "fingerprint", fingerprint) ||
            h5_attr_set_string(f, "space", t->space) ||
            h5_attr_set_int(f, "threads", t->threads) ||
            h5_attr_set_int(f, "version", t->version) ||
            h5_attr_set_int(f, "slot_count", t->slot_count) ||
            (t->fit_mape >= 0 && h5_attr_set_double(f, "fit_mape", t->fit_mape)) ||
            (t->fit_rmse_ms >= 0 && h5_attr_set_double(f, "fit_rmse_ms", t->fit_rmse_ms)) ||
            h5_write(f, "slot", H5_I32, 1, dims, slot, 0) ||
            h5_write(f, "op", H5_I32, 1, dims, op, 0) ||
            h5_write(f, "median_ms", H5_F64, 1, dims, median, 0) ||
            h5_write(f, "p10_ms", H5_F64, 1, dims, p10, 0) ||
            h5_write(f, "p90_ms", H5_F64, 1, dims, p90, 0) ||
            h5_write(f, "repeats", H5_I32, 1, dims, repeats, 0))
            h5_abort(f, tmp);
        else
            rc = h5_commit(f, tmp, path);
    }
    free(slot);
    free(op);
    free(repeats);
    free(median);
    free(p10);
    free(p90);
    return rc;
}

/* Reads string attribute name of f into out (size bytes). */
static int get_string(hid_t f, const char *name, char *out, size_t size)
{
    char *s = h5_attr_get_string(f, name);
    if (!s)
        return -1;
    snprintf(out, size, "%s", s);
    free(s);
    return 0;
}

/* The checks of latency_load on an open file; errors do not yet name the path. */
static int load_open(struct latency_table *t, hid_t f, const char *path, const struct net *net)
{
    char space[SPACE_TEXT_MAX], fingerprint[64];
    uint64_t want = latency_fingerprint(net, space, sizeof space);
    OFFNAS_TRY(get_string(f, "fingerprint", fingerprint, sizeof fingerprint));
    char *end;
    errno = 0;
    unsigned long long have = strtoull(fingerprint, &end, 16);
    if (errno || *end || end == fingerprint)
        return offnas_error("%s: fingerprint '%s' is not a 64-bit hex number", path, fingerprint);
    if ((uint64_t)have != want)
        return offnas_error("%s: made for another search space (fingerprint %016llx, this job "
                            "%016llx)",
                            path, have, (unsigned long long)want);

    latency_table_init(t, net, "");
    int64_t threads, version;
    OFFNAS_TRY(get_string(f, "device", t->device, sizeof t->device));
    OFFNAS_TRY(get_string(f, "host", t->host, sizeof t->host));
    OFFNAS_TRY(get_string(f, "cpu", t->cpu, sizeof t->cpu));
    OFFNAS_TRY(get_string(f, "date", t->date, sizeof t->date));
    OFFNAS_TRY(get_string(f, "source", t->source, sizeof t->source));
    OFFNAS_TRY(get_string(f, "space", t->space, sizeof t->space));
    if (strcmp(t->space, space))
        return offnas_error("%s: attribute space does not match its fingerprint", path);
    OFFNAS_TRY(h5_attr_get_int(f, "threads", &threads));
    OFFNAS_TRY(h5_attr_get_int(f, "version", &version));
    t->threads = (int)threads;
    t->version = (int)version;
    const char *fits[2] = {"fit_mape", "fit_rmse_ms"};
    double *fit_values[2] = {&t->fit_mape, &t->fit_rmse_ms};
    for (int i = 0; i < 2; i++) {
        int has = h5_attr_exists(f, fits[i]);
        if (has < 0 || (has && h5_attr_get_double(f, fits[i], fit_values[i])))
            return -1;
        if (has && !(isfinite(*fit_values[i]) && *fit_values[i] >= 0))
            return offnas_error("%s: attribute %s is %g, not a finite non-negative number", path,
                                fits[i], *fit_values[i]);
    }

    static const char *const names[6] = {"slot", "op", "repeats", "median_ms", "p10_ms",
                                         "p90_ms"};
    void *data[6] = {0};
    hsize_t rows = 0;
    int rc = 0;
    for (int d = 0; d < 6 && !rc; d++) {
        hsize_t dims[1];
        data[d] = h5_read(f, names[d], d < 3 ? H5_I32 : H5_F64, 1, dims);
        if (!data[d])
            rc = -1;
        else if (d == 0)
            rows = dims[0];
        else if (dims[0] != rows)
            rc = offnas_error("%s: /%s has %llu entries, /slot has %llu", path, names[d],
                              (unsigned long long)dims[0], (unsigned long long)rows);
    }
    int seen[LATENCY_MAX_SLOTS][JOB_MAX_CANDIDATES] = {{0}};
    const int32_t *slot = data[0], *op = data[1], *repeats = data[2];
    const double *median = data[3], *p10 = data[4], *p90 = data[5];
    for (hsize_t r = 0; r < rows && !rc; r++) {
        int s = slot[r], i = op[r];
        if (s < 0 || s >= t->slot_count || i < 0 || i >= t->op_count[s]) {
            rc = offnas_error("%s: entry %llu is (slot %d, op %d), outside this search space", path,
                              (unsigned long long)r, s, i);
            break;
        }
        if (seen[s][i]++) {
            rc = offnas_error("%s: (slot %d, op %d) appears twice", path, s, i);
            break;
        }
        const double v[3] = {median[r], p10[r], p90[r]};
        for (int k = 0; k < 3 && !rc; k++)
            if (!isfinite(v[k]) || v[k] < 0)
                rc = offnas_error("%s: (slot %d, op %d): %s is %g, not a finite non-negative "
                                  "number of milliseconds",
                                  path, s, i, names[3 + k], v[k]);
        if (!rc && repeats[r] < 0)
            rc = offnas_error("%s: (slot %d, op %d): repeats is %d", path, s, i, repeats[r]);
        t->median[s][i] = median[r];
        t->p10[s][i] = p10[r];
        t->p90[s][i] = p90[r];
        t->repeats[s][i] = repeats[r];
    }
    for (int s = 0; s < t->slot_count && !rc; s++)
        for (int i = 0; i < t->op_count[s] && !rc; i++)
            if (!seen[s][i]) {
                char name[16] = "stem";
                if (s == t->slot_count - 1)
                    strcpy(name, "head");
                else if (s > 0)
                    op_spec_name(&net->layers[s - 1].cand[i].spec, name);
                rc = offnas_error("%s: no entry for (slot %d, op %d) (%s)", path, s, i, name);
            }
    for (int d = 0; d < 6; d++)
        free(data[d]);
    return rc;
}

int latency_load(struct latency_table *table, const char *path, const struct net *net)
{
    hid_t f = h5_open_read(path);
    if (f < 0)
        return -1;
    int rc = load_open(table, f, path, net);
    h5_close(f);
    if (rc && strncmp(offnas_last_error(), path, strlen(path)) != 0)
        offnas_error_context("%s", path);
    return rc;
}

/* ---- network ---------------------------------------------------------------------------- */

/* Uplinks of 3G, LTE and Wi-Fi: the average measured uplinks of Kang et al., "Neurosurgeon",
 * ASPLOS 2017 (Table 1); 5G and all RTTs are typical values we assume (profiles/README.md). */
static const struct latency_link PRESETS[] = {
    {"3g", 1.1, 100.0},
    {"lte", 5.85, 50.0},
    {"wifi", 18.88, 10.0},
    {"5g", 50.0, 20.0},
};

int latency_link_from_job(struct latency_link *link, const struct job *job)
{
    for (size_t i = 0; i < OFFNAS_ARRAY_LEN(PRESETS); i++)
        if (!strcmp(job->network_preset, PRESETS[i].name)) {
            *link = PRESETS[i];
            return 0;
        }
    if (strcmp(job->network_preset, "custom"))
        return offnas_error("network.preset: unknown preset '%s' (3g, lte, wifi, 5g, custom)",
                            job->network_preset);
    if (!(job->network_bandwidth_mbps > 0) || !isfinite(job->network_bandwidth_mbps))
        return offnas_error("network.bandwidth_mbps: %g must be > 0 for the custom preset",
                            job->network_bandwidth_mbps);
    if (!(job->network_rtt_ms > 0) || !isfinite(job->network_rtt_ms))
        return offnas_error("network.rtt_ms: %g must be > 0 for the custom preset",
                            job->network_rtt_ms);
    memset(link, 0, sizeof *link);
    snprintf(link->name, sizeof link->name, "custom");
    link->bandwidth_mbps = job->network_bandwidth_mbps;
    link->rtt_ms = job->network_rtt_ms;
    return 0;
}

int latency_wire_bytes(const char *wire)
{
    if (!strcmp(wire, "fp32"))
        return 4;
    if (!strcmp(wire, "fp16"))
        return 2;
    if (!strcmp(wire, "int8"))
        return 1;
    return offnas_error("search.wire: unknown wire format '%s' (fp32, fp16, int8)", wire);
}

/* ---- the fitted cost model ---------------------------------------------------------------- */

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

/* Least squares y ~ X c over rows with the terms in active (others fixed at 0), columns scaled
 * to unit RMS for conditioning, normal equations in double with partial pivoting; a coefficient
 * that comes out negative is dropped (the most negative first) and the rest refitted.
 * X is rows x terms, row-major. Returns 0, or -1 if the system is singular. */
static int fit_nonnegative(double *coef, const double *X, const double *y, int rows, int terms)
{
    enum { T = 8 };
    OFFNAS_ASSERT(terms <= T);
    int active[T];
    for (int j = 0; j < terms; j++)
        active[j] = 1;
    for (;;) {
        double scale[T] = {0}, A[T][T + 1];
        int idx[T], n = 0;
        for (int j = 0; j < terms; j++)
            if (active[j])
                idx[n++] = j;
        if (n == 0) {
            memset(coef, 0, (size_t)terms * sizeof *coef);
            return 0;
        }
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
        int worst = -1;
        for (int a = 0; a < n; a++) {
            coef[idx[a]] = A[a][n] / A[a][a] / scale[a];
            if (coef[idx[a]] < 0 && (worst < 0 || coef[idx[a]] < coef[worst]))
                worst = idx[a];
        }
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
    if (!fit->device[0])
        snprintf(fit->device, sizeof fit->device, "%s", device);
    else if (strcmp(fit->device, device))
        return offnas_error("%s:%d: device '%s' differs from '%s' of the first row", path, line,
                            device, fit->device);
    char *end;
    errno = 0;
    const char *ms_text = fields[col[COL_LATENCY]];
    double ms = strtod(ms_text, &end);
    if (errno || end == ms_text || *end || !isfinite(ms) || ms <= 0)
        return offnas_error("%s:%d: latency_ms '%s' is not a positive number", path, line,
                            ms_text);
    int is_block = !strcmp(type, "conv"), is_stem = !strcmp(type, "firstconv");
    if (!is_block && !is_stem)
        return 0;
    long v[COL_COUNT];
    for (int c = COL_INPUT_H; c <= COL_SE; c++)
        if (parse_long(fields[col[c]], &v[c]))
            return offnas_error("%s:%d: %s '%s' is not an integer", path, line, COLUMN_NAMES[c],
                                fields[col[c]]);
    long hin = v[COL_INPUT_H], cin = v[COL_IN_C], cout = v[COL_OUT_C], k = v[COL_KERNEL],
         s = v[COL_STRIDE], e = v[COL_EXPAND];
    if (hin < 1 || hin > 100000 || cin < 1 || cin > 100000 || cout < 1 || cout > 100000 ||
        k < 1 || k > 15 || s < 1 || s > 8 || (is_block && (e < 1 || e > 64)))
        return offnas_error("%s:%d: shape out of range (input_h %ld, in %ld, out %ld, expand "
                            "%ld, kernel %ld, stride %ld)",
                            path, line, hin, cin, cout, e, k, s);
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
            if (n > CSV_MAX_FIELDS) {
                rc = offnas_error("%s:1: more than %d columns", path, CSV_MAX_FIELDS);
                break;
            }
            columns = n;
            for (int c = 0; c < COL_COUNT && !rc; c++) {
                col[c] = -1;
                for (int i = 0; i < n; i++)
                    if (!strcmp(fields[i], COLUMN_NAMES[c]))
                        col[c] = i;
                if (col[c] < 0)
                    rc = offnas_error("%s:1: header has no column '%s'", path, COLUMN_NAMES[c]);
            }
            continue;
        }
        if (n != columns) {
            rc = offnas_error("%s:%d: %d fields, the header has %d", path, line_no,
                              n > CSV_MAX_FIELDS ? n - 1 : n, columns);
            break;
        }
        for (int i = 0; i < n && !rc; i++)
            if (!fields[i][0])
                rc = offnas_error("%s:%d: field %d is empty", path, line_no, i + 1);
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

int latency_fit_csv(struct latency_fit *fit, const char *path)
{
    memset(fit, 0, sizeof *fit);
    snprintf(fit->source, sizeof fit->source, "fit: %s", path);
    struct csv_rows rows = {0};
    int rc = read_csv(&rows, fit, path);
    const int T = LATENCY_FIT_TERMS;
    if (!rc && rows.count < 10)
        rc = offnas_error("%s: %d MBConv rows (op_type conv, se 0); the fit needs at least 10",
                          path, rows.count);
    if (!rc) {
        /* every 5th row (index 4 mod 5) is held out */
        int n = rows.count, train = 0, test = 0;
        double *X = offnas_malloc((size_t)n * T * sizeof *X), *y = offnas_malloc((size_t)n * sizeof *y);
        for (int r = 0; r < n; r++)
            if (r % 5 != 4) {
                memcpy(X + (size_t)train * T, rows.X + (size_t)r * T, (size_t)T * sizeof *X);
                y[train++] = rows.y[r];
            }
        if (fit_nonnegative(fit->coef, X, y, train, T))
            rc = offnas_error("%s: the MBConv rows do not determine the model (singular fit)",
                              path);
        double abs_pct = 0.0, sq = 0.0;
        for (int r = 4; r < n && !rc; r += 5, test++) {
            double err = dot(fit->coef, rows.X + (size_t)r * T, T) - rows.y[r];
            abs_pct += fabs(err) / rows.y[r];
            sq += err * err;
        }
        fit->train_rows = train;
        fit->test_rows = test;
        fit->mape = test ? 100.0 * abs_pct / test : 0.0;
        fit->rmse_ms = test ? sqrt(sq / test) : 0.0;
        free(X);
        free(y);
    }
    if (!rc) {
        fit->stem_rows = rows.stem_count;
        if (rows.stem_count < 2 ||
            fit_nonnegative(fit->stem_coef, rows.stem_X, rows.stem_y, rows.stem_count, 2)) {
            /* no usable firstconv rows: a stem is costed as pointwise MACs plus a block's bias */
            fit->stem_coef[0] = fit->coef[LATENCY_FIT_PW];
            fit->stem_coef[1] = fit->coef[LATENCY_FIT_BIAS];
            fit->stem_rows = 0;
        }
    }
    free(rows.X);
    free(rows.y);
    free(rows.stem_X);
    free(rows.stem_y);
    return rc;
}

void latency_fit_table(struct latency_table *t, const struct latency_fit *fit,
                       const struct net *net, double scale)
{
    OFFNAS_ASSERT(t->slot_count == net->layer_count + 2);
    int L = net->layer_count;
    double ms[LATENCY_MAX_SLOTS][JOB_MAX_CANDIDATES] = {{0}};
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
            t->median[s][i] = t->p10[s][i] = t->p90[s][i] = v;
            t->repeats[s][i] = 0;
        }
    snprintf(t->source, sizeof t->source, "%s", fit->source);
    snprintf(t->cpu, sizeof t->cpu, "%s", fit->device);
    t->fit_mape = fit->mape;
    t->fit_rmse_ms = fit->rmse_ms;
}
