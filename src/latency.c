/* latency: per-device lookup tables, their search-space fingerprints and HDF5 files; see
 * latency.h. */
#define _POSIX_C_SOURCE 200809L
#include "latency.h"

#include "check.h"
#include "common.h"
#include "h5.h"

#include <errno.h>
#include <inttypes.h>
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
 * k3e1;head=128" (no spaces); a stem with stride 2 is "stem=16/2". NET_MAX_LAYERS *
 * NET_MAX_CANDIDATES names fit in it. */
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

/* The per-entry data sets of a table file: one row per (slot, op). */
struct table_rows {
    hsize_t count;
    int32_t *slot, *op, *repeats;
    double *median, *p10, *p90;
};

static void free_rows(struct table_rows *r)
{
    free(r->slot);
    free(r->op);
    free(r->repeats);
    free(r->median);
    free(r->p10);
    free(r->p90);
}

/* The entries of t as rows, slot by slot and op by op; released with free_rows. */
static void rows_of_table(struct table_rows *r, const struct latency_table *t)
{
    size_t n = 0;
    for (int s = 0; s < t->slot_count; s++)
        n += (size_t)t->op_count[s];
    r->count = n;
    r->slot = offnas_malloc(n * sizeof *r->slot);
    r->op = offnas_malloc(n * sizeof *r->op);
    r->repeats = offnas_malloc(n * sizeof *r->repeats);
    r->median = offnas_malloc(n * sizeof *r->median);
    r->p10 = offnas_malloc(n * sizeof *r->p10);
    r->p90 = offnas_malloc(n * sizeof *r->p90);
    size_t k = 0;
    for (int s = 0; s < t->slot_count; s++)
        for (int i = 0; i < t->op_count[s]; i++, k++) {
            r->slot[k] = s;
            r->op[k] = i;
            r->repeats[k] = t->repeats[s][i];
            r->median[k] = t->median[s][i];
            r->p10[k] = t->p10[s][i];
            r->p90[k] = t->p90[s][i];
        }
}

/* Refuses an entry latency_load would refuse: a time that is not a number of ms in
 * [0, CHECK_MAX_LATENCY_MS], or negative repeats. Fields are named "median_ms (slot S, op I)". */
static int check_entry(const char *path, int s, int i, double median, double p10, double p90,
                       int repeats)
{
    const char *names[3] = {"median_ms", "p10_ms", "p90_ms"};
    double values[3] = {median, p10, p90};
    char field[64];
    for (int k = 0; k < 3; k++) {
        snprintf(field, sizeof field, "%s (slot %d, op %d)", names[k], s, i);
        OFFNAS_TRY(check_double(path, field, values[k], 0.0, CHECK_MAX_LATENCY_MS));
    }
    if (repeats < 0)
        return offnas_error("%s: repeats (slot %d, op %d): %d is negative", path, s, i, repeats);
    return 0;
}

/* Refuses a held-out error figure (name: fit_mape or fit_rmse_ms) that is not in [0, hi]. */
static int check_fit_error(const char *path, const char *name, double value, double hi)
{
    return check_double(path, name, value, 0.0, hi);
}

/* Refuses a table that latency_load would refuse once written: threads, version, the fit
 * errors (-1: not a fit) and every entry. path names the file in the message. */
static int check_table(const struct latency_table *t, const char *path)
{
    int ignored;
    OFFNAS_TRY(check_int64(path, "threads", t->threads, 1, LATENCY_MAX_THREADS, &ignored));
    OFFNAS_TRY(check_int64(path, "version", t->version, 0, INT32_MAX, &ignored));
    if (t->fit_mape != -1.0)
        OFFNAS_TRY(check_fit_error(path, "fit_mape", t->fit_mape, LATENCY_MAX_FIT_MAPE));
    if (t->fit_rmse_ms != -1.0)
        OFFNAS_TRY(check_fit_error(path, "fit_rmse_ms", t->fit_rmse_ms, CHECK_MAX_LATENCY_MS));
    OFFNAS_TRY(check_int64(path, "slot_count", t->slot_count, 2, LATENCY_MAX_SLOTS, &ignored));
    for (int s = 0; s < t->slot_count; s++) {
        OFFNAS_TRY(check_int64(path, "op_count", t->op_count[s], 1, NET_MAX_CANDIDATES, &ignored));
        for (int i = 0; i < t->op_count[s]; i++)
            OFFNAS_TRY(check_entry(path, s, i, t->median[s][i], t->p10[s][i], t->p90[s][i],
                                   t->repeats[s][i]));
    }
    return 0;
}

int latency_save(const struct latency_table *t, const char *path)
{
    OFFNAS_TRY(check_table(t, path));
    struct table_rows rows;
    rows_of_table(&rows, t);
    char fingerprint[32];
    snprintf(fingerprint, sizeof fingerprint, "%016llx", (unsigned long long)t->fingerprint);
    char tmp[H5_PATH_MAX];
    int rc = -1;
    hid_t f = h5_create_tmp(path, tmp, sizeof tmp);
    if (f >= 0) {
        hsize_t dims[1] = {rows.count};
        if (h5_attr_set_string(f, "device", t->device) || h5_attr_set_string(f, "host", t->host) ||
            h5_attr_set_string(f, "cpu", t->cpu) || h5_attr_set_string(f, "date", t->date) ||
            h5_attr_set_string(f, "source", t->source) ||
            h5_attr_set_string(f, "fingerprint", fingerprint) ||
            h5_attr_set_string(f, "space", t->space) ||
            h5_attr_set_int(f, "threads", t->threads) ||
            h5_attr_set_int(f, "version", t->version) ||
            h5_attr_set_int(f, "slot_count", t->slot_count) ||
            (t->fit_mape != -1.0 && h5_attr_set_double(f, "fit_mape", t->fit_mape)) ||
            (t->fit_rmse_ms != -1.0 && h5_attr_set_double(f, "fit_rmse_ms", t->fit_rmse_ms)) ||
            h5_write(f, "slot", H5_I32, 1, dims, rows.slot, 0) ||
            h5_write(f, "op", H5_I32, 1, dims, rows.op, 0) ||
            h5_write(f, "median_ms", H5_F64, 1, dims, rows.median, 0) ||
            h5_write(f, "p10_ms", H5_F64, 1, dims, rows.p10, 0) ||
            h5_write(f, "p90_ms", H5_F64, 1, dims, rows.p90, 0) ||
            h5_write(f, "repeats", H5_I32, 1, dims, rows.repeats, 0))
            h5_abort(f, tmp);
        else
            rc = h5_commit(f, tmp, path);
    }
    free_rows(&rows);
    return rc;
}

/* Reads string attribute name of f into out (size bytes); one that does not fit is refused. */
static int get_string(hid_t f, const char *name, char *out, size_t size, const char *path)
{
    char *s = h5_attr_get_string(f, name);
    if (!s)
        return -1;
    int rc = check_string(path, name, s, size);
    if (!rc)
        snprintf(out, size, "%s", s);
    free(s);
    return rc;
}

/* Refuses a table whose fingerprint have is not want, the one of the job's space. */
static int check_space_fingerprint(const char *path, uint64_t have, uint64_t want)
{
    if (have != want)
        return offnas_error("%s: made for another search space (fingerprint %016llx, this job "
                            "%016llx)",
                            path, (unsigned long long)have, (unsigned long long)want);
    return 0;
}

int latency_check_fingerprint(const char *path, uint64_t have, const struct net *net)
{
    return check_space_fingerprint(path, have, latency_fingerprint(net, NULL, 0));
}

/* Refuses a space text that is not the job's (the text its fingerprint hashes). */
static int check_space_text(const char *path, const char *have, const char *want)
{
    if (strcmp(have, want))
        return offnas_error("%s: space: does not match its fingerprint", path);
    return 0;
}

/* Refuses a file made for another search space than net's. space gets net's canonical text. */
static int check_fingerprint(hid_t f, const char *path, const struct net *net, char *space,
                             size_t size)
{
    char fingerprint[64];
    uint64_t want = latency_fingerprint(net, space, size);
    OFFNAS_TRY(get_string(f, "fingerprint", fingerprint, sizeof fingerprint, path));
    char *end;
    errno = 0;
    unsigned long long have = strtoull(fingerprint, &end, 16);
    if (errno || *end || end == fingerprint)
        return offnas_error("%s: fingerprint: '%.40s' is not a 64-bit hex number", path,
                            fingerprint);
    return check_space_fingerprint(path, (uint64_t)have, want);
}

/* The optional attribute name (a fitted table's held-out error) into *value, which stays as it
 * is when the file has none; one there must be a number in [0, hi]. */
static int read_fit_error(hid_t f, const char *name, double *value, double hi, const char *path)
{
    int has = h5_attr_exists(f, name);
    if (has < 0 || (has && h5_attr_get_double(f, name, value)))
        return -1;
    return has ? check_fit_error(path, name, *value, hi) : 0;
}

/* The integer attribute name of f into *out, refused unless in lo..hi. */
static int read_int(hid_t f, const char *name, int64_t lo, int64_t hi, const char *path,
                    int *out)
{
    int64_t value;
    OFFNAS_TRY(h5_attr_get_int(f, name, &value));
    return check_int64(path, name, value, lo, hi, out);
}

/* The root attributes into t; the file's space text must be space, the one of the job. */
static int read_attributes(struct latency_table *t, hid_t f, const char *path, const char *space)
{
    OFFNAS_TRY(get_string(f, "device", t->device, sizeof t->device, path));
    OFFNAS_TRY(get_string(f, "host", t->host, sizeof t->host, path));
    OFFNAS_TRY(get_string(f, "cpu", t->cpu, sizeof t->cpu, path));
    OFFNAS_TRY(get_string(f, "date", t->date, sizeof t->date, path));
    OFFNAS_TRY(get_string(f, "source", t->source, sizeof t->source, path));
    OFFNAS_TRY(get_string(f, "space", t->space, sizeof t->space, path));
    OFFNAS_TRY(check_space_text(path, t->space, space));
    OFFNAS_TRY(read_int(f, "threads", 1, LATENCY_MAX_THREADS, path, &t->threads));
    OFFNAS_TRY(read_int(f, "version", 0, INT32_MAX, path, &t->version));
    /* written since tables carry it; older ones are checked by their entries alone */
    int has_slot_count = h5_attr_exists(f, "slot_count"), slot_count;
    if (has_slot_count < 0 ||
        (has_slot_count && read_int(f, "slot_count", t->slot_count, t->slot_count, path,
                                    &slot_count)))
        return -1;
    OFFNAS_TRY(read_fit_error(f, "fit_mape", &t->fit_mape, LATENCY_MAX_FIT_MAPE, path));
    return read_fit_error(f, "fit_rmse_ms", &t->fit_rmse_ms, CHECK_MAX_LATENCY_MS, path);
}

/* Data set name of f (rank 1), which must have count entries like /slot; NULL after an
 * error. */
static void *read_column(hid_t f, const char *name, enum h5_type type, hsize_t count,
                         const char *path)
{
    hsize_t dims[1];
    void *data = h5_read(f, name, type, 1, dims);
    if (data && dims[0] != count) {
        offnas_error("%s: /%s has %llu entries, /slot has %llu", path, name,
                     (unsigned long long)dims[0], (unsigned long long)count);
        free(data);
        return NULL;
    }
    return data;
}

/* The data sets of f into rows (zeroed first; released with free_rows even on failure). More
 * rows than the entries of t's space are refused before anything is read. */
static int read_rows(struct table_rows *rows, hid_t f, const char *path,
                     const struct latency_table *t)
{
    memset(rows, 0, sizeof *rows);
    hsize_t dims[1];
    unsigned long long entries = 0;
    for (int s = 0; s < t->slot_count; s++)
        entries += (unsigned long long)t->op_count[s];
    OFFNAS_TRY(h5_shape(f, "slot", H5_I32, 1, dims));
    if (dims[0] > entries)
        return offnas_error("%s: /slot: %llu entries, this search space has %llu", path,
                            (unsigned long long)dims[0], entries);
    rows->slot = h5_read(f, "slot", H5_I32, 1, dims);
    if (!rows->slot)
        return -1;
    rows->count = dims[0];
    if (!(rows->op = read_column(f, "op", H5_I32, rows->count, path)) ||
        !(rows->repeats = read_column(f, "repeats", H5_I32, rows->count, path)) ||
        !(rows->median = read_column(f, "median_ms", H5_F64, rows->count, path)) ||
        !(rows->p10 = read_column(f, "p10_ms", H5_F64, rows->count, path)) ||
        !(rows->p90 = read_column(f, "p90_ms", H5_F64, rows->count, path)))
        return -1;
    return 0;
}

/* Copies the rows into t and marks their entries in seen; refuses an entry outside t's
 * space, one that appears twice, and a bad value. */
static int take_rows(struct latency_table *t, int seen[][NET_MAX_CANDIDATES],
                     const struct table_rows *rows, const char *path)
{
    for (hsize_t r = 0; r < rows->count; r++) {
        int s = rows->slot[r], i = rows->op[r];
        if (s < 0 || s >= t->slot_count || i < 0 || i >= t->op_count[s])
            return offnas_error("%s: entry %llu is (slot %d, op %d), outside this search space",
                                path, (unsigned long long)r, s, i);
        if (seen[s][i]++)
            return offnas_error("%s: (slot %d, op %d) appears twice", path, s, i);
        OFFNAS_TRY(check_entry(path, s, i, rows->median[r], rows->p10[r], rows->p90[r],
                               rows->repeats[r]));
        t->median[s][i] = rows->median[r];
        t->p10[s][i] = rows->p10[r];
        t->p90[s][i] = rows->p90[r];
        t->repeats[s][i] = rows->repeats[r];
    }
    return 0;
}

/* Refuses a file that left an entry of the space out, naming its op. */
static int check_complete(const struct latency_table *t, int seen[][NET_MAX_CANDIDATES],
                          const struct net *net, const char *path)
{
    for (int s = 0; s < t->slot_count; s++)
        for (int i = 0; i < t->op_count[s]; i++)
            if (!seen[s][i]) {
                char name[16] = "stem";
                if (s == t->slot_count - 1)
                    strcpy(name, "head");
                else if (s > 0)
                    op_spec_name(&net->layers[s - 1].cand[i].spec, name);
                return offnas_error("%s: no entry for (slot %d, op %d) (%s)", path, s, i, name);
            }
    return 0;
}

/* The checks of latency_load on an open file, in order: the search space, the attributes, the
 * data sets, every entry, and that none is missing. */
static int load_open(struct latency_table *t, hid_t f, const char *path, const struct net *net)
{
    char space[SPACE_TEXT_MAX];
    OFFNAS_TRY(check_fingerprint(f, path, net, space, sizeof space));
    latency_table_init(t, net, "");
    OFFNAS_TRY(read_attributes(t, f, path, space));
    struct table_rows rows;
    int seen[LATENCY_MAX_SLOTS][NET_MAX_CANDIDATES] = {{0}};
    int rc = read_rows(&rows, f, path, t);
    if (!rc)
        rc = take_rows(t, seen, &rows, path);
    if (!rc)
        rc = check_complete(t, seen, net, path);
    free_rows(&rows);
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

int latency_check_received(const struct latency_table *t, const struct net *net,
                           const char *name)
{
    char space[SPACE_TEXT_MAX];
    OFFNAS_TRY(check_space_fingerprint(name, t->fingerprint,
                                       latency_fingerprint(net, space, sizeof space)));
    OFFNAS_TRY(check_space_text(name, t->space, space));
    /* the shape of net's space, as latency_table_init gives it and load_open reads into */
    struct latency_table *want = offnas_malloc(sizeof *want);
    latency_table_init(want, net, "");
    int ignored, rc = check_int64(name, "slot_count", t->slot_count, want->slot_count,
                                  want->slot_count, &ignored);
    for (int s = 0; !rc && s < want->slot_count; s++)
        rc = check_int64(name, "op_count", t->op_count[s], want->op_count[s], want->op_count[s],
                         &ignored);
    free(want);
    return rc ? rc : check_table(t, name);
}
