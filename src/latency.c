/* latency: per-device lookup tables, their search-space fingerprints and HDF5 files; see
 * latency.h. */
#define _POSIX_C_SOURCE 200809L
#include "latency.h"

#include "common.h"
#include "h5.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

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

double latency_network_ms(const struct latency_table *t, int layers, const int *ops)
{
    double total = t->median[0][0] + t->median[layers + 1][0];
    for (int l = 0; l < layers; l++)
        total += t->median[l + 1][ops[l]];
    return total;
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

