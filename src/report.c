/* report: runs side by side (see report.h). */
#define _POSIX_C_SOURCE 200809L
#include "report.h"

#include "check.h"
#include "common.h"
#include "derived.h"

#include <dirent.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <math.h>
#include <spawn.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* Each method's name in summary.json and the tables, and its look in the plot (the same in
 * every report). */
static const struct method_style {
    const char *name;
    int point;          /* gnuplot point type */
    const char *colour;
} METHODS[] = {
    {"search", 7, "#1f5fbf"},      {"neurosurgeon", 5, "#d62728"},
    {"nas-then-split", 9, "#2ca02c"}, {"prune-split", 11, "#9467bd"},
    {"all-device", 13, "#ff7f0e"}, {"all-edge", 15, "#8c564b"},
};
_Static_assert(OFFNAS_ARRAY_LEN(METHODS) == REPORT_METHOD_COUNT, "a style per method");

/* The plot's x axis is logarithmic when the slowest run is this many times the fastest. */
#define REPORT_LOG_X_RATIO 20.0

const char *report_method_name(enum report_method method)
{
    OFFNAS_ASSERT(method >= 0 && method < REPORT_METHOD_COUNT);
    return METHODS[method].name;
}

/* ---- reading summary.json ------------------------------------------------------------------ */

/* What a summary.json gives beyond its own row: the neurosurgeon run's trivial baselines. */
struct summary {
    struct report_row row;
    double all_device_ms, all_edge_ms, input_bytes;
    struct arch_latency all_edge_parts; /* total unused */
};

enum field_kind {
    FIELD_FRACTION, /* a number in [0, 1] */
    FIELD_MS,       /* a time in [0, CHECK_MAX_LATENCY_MS] */
    FIELD_AMOUNT,   /* a number >= 0 */
    FIELD_REAL,     /* any number */
    FIELD_COUNT     /* a whole number in [0, max], into an int */
};

/* One numeric field of summary.json: its dotted path and where it goes in struct summary. */
struct summary_field {
    const char *path;
    enum field_kind kind;
    int required;
    size_t offset;
    double max; /* FIELD_COUNT: the largest value */
};

#define AT(member) offsetof(struct summary, member)
/* Read in order; a field whose target an earlier one has set is checked but not used. */
static const struct summary_field FIELDS[] = {
    {"test_accuracy", FIELD_FRACTION, 1, AT(row.test_accuracy), 0},
    {"latency_ms.total", FIELD_MS, 1, AT(row.latency_ms.total), 0},
    {"latency_ms.device", FIELD_MS, 0, AT(row.latency_ms.device), 0},
    {"latency_ms.transfer", FIELD_MS, 0, AT(row.latency_ms.transfer), 0},
    {"latency_ms.edge", FIELD_MS, 0, AT(row.latency_ms.edge), 0},
    {"latency_ms.all_device", FIELD_MS, 0, AT(all_device_ms), 0},
    {"latency_ms.all_edge", FIELD_MS, 0, AT(all_edge_ms), 0},
    {"latency_ms.all_edge_parts.device", FIELD_MS, 0, AT(all_edge_parts.device), 0},
    {"latency_ms.all_edge_parts.transfer", FIELD_MS, 0, AT(all_edge_parts.transfer), 0},
    {"latency_ms.all_edge_parts.edge", FIELD_MS, 0, AT(all_edge_parts.edge), 0},
    {"lambda", FIELD_REAL, 0, AT(row.lambda), 0},
    {"split_point", FIELD_COUNT, 0, AT(row.split_point), NET_MAX_LAYERS + 1},
    {"kept_channels", FIELD_COUNT, 0, AT(row.kept_channels), NET_MAX_CHANNELS},
    {"total_channels", FIELD_COUNT, 0, AT(row.total_channels), NET_MAX_CHANNELS},
    {"bytes_sent", FIELD_AMOUNT, 0, AT(row.bytes_sent), 0},
    {"input_bytes", FIELD_AMOUNT, 0, AT(input_bytes), 0},
    {"macs", FIELD_AMOUNT, 0, AT(row.macs), 0},
    {"params", FIELD_AMOUNT, 0, AT(row.params), 0},
    {"parameters", FIELD_AMOUNT, 0, AT(row.params), 0}, /* offnas train's name for params */
};
#undef AT

static const char *json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* *out = the value at a dotted path ("latency_ms.total"), or NULL when it or an object on the
 * way is absent or null. Returns -1 (error naming file and path) when something on the way is
 * not an object. */
static int lookup(const json_t *root, const char *path, const char *file, json_t **out)
{
    const json_t *node = root;
    const char *key = path;
    *out = NULL;
    for (;;) {
        const char *dot = strchr(key, '.');
        char name[64];
        snprintf(name, sizeof name, "%.*s", dot ? (int)(dot - key) : (int)strlen(key), key);
        json_t *v = json_object_get(node, name);
        if (!v || json_is_null(v))
            return 0;
        if (!dot) {
            *out = v;
            return 0;
        }
        if (!json_is_object(v))
            return offnas_error("%s: %.*s: expected an object, got %s", file, (int)(dot - path),
                                path, json_type_name(v));
        node = v;
        key = dot + 1;
    }
}

static int read_field(const json_t *root, const struct summary_field *f, const char *file,
                      struct summary *s)
{
    json_t *v;
    OFFNAS_TRY(lookup(root, f->path, file, &v));
    if (!v)
        return f->required ? offnas_error("%s: %s: missing", file, f->path) : 0;
    if (!json_is_number(v))
        return offnas_error("%s: %s: expected a number, got %s", file, f->path,
                            json_type_name(v));
    double x = json_number_value(v);
    if (!isfinite(x)) /* jansson refuses such numbers when parsing; a guard, not a path */
        return offnas_error("%s: %s: not a finite number", file, f->path);
    if (f->kind == FIELD_FRACTION && (x < 0 || x > 1))
        return offnas_error("%s: %s: %g is not a fraction in [0, 1]", file, f->path, x);
    if (f->kind != FIELD_REAL && x < 0)
        return offnas_error("%s: %s: %g is negative", file, f->path, x);
    if (f->kind == FIELD_MS && check_double(file, f->path, x, 0.0, CHECK_MAX_LATENCY_MS))
        return -1;
    char *target = (char *)s + f->offset;
    if (f->kind == FIELD_COUNT) {
        if (x != floor(x))
            return offnas_error("%s: %s: %g is not a whole number", file, f->path, x);
        if (x > f->max)
            return offnas_error("%s: %s: %.0f is not in 0..%.0f", file, f->path, x, f->max);
        if (*(int *)target == REPORT_UNKNOWN)
            *(int *)target = (int)x;
    } else if (isnan(*(double *)target)) {
        *(double *)target = x;
    }
    return 0;
}

/* *out = the string at key, NULL when absent or null; -1 when it is not a string. */
static int read_string(const json_t *root, const char *key, const char *file, const char **out)
{
    json_t *v = json_object_get(root, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return offnas_error("%s: %s: expected a string, got %s", file, key, json_type_name(v));
    *out = json_string_value(v);
    return 0;
}

static int read_method(const json_t *root, const char *file, enum report_method *method)
{
    const char *name;
    OFFNAS_TRY(read_string(root, "method", file, &name));
    *method = REPORT_SEARCH;
    if (!name)
        return 0;
    for (int m = 0; m < REPORT_METHOD_COUNT; m++)
        if (!strcmp(name, METHODS[m].name)) {
            *method = (enum report_method)m;
            return 0;
        }
    return offnas_error("%s: method: '%.40s' is not one of search, neurosurgeon, nas-then-split, "
                        "prune-split, all-device, all-edge",
                        file, name);
}

static void summary_init(struct summary *s)
{
    memset(s, 0, sizeof *s);
    struct report_row *row = &s->row;
    row->test_accuracy = row->lambda = row->bytes_sent = row->macs = row->params = NAN;
    row->split_point = row->kept_channels = row->total_channels = REPORT_UNKNOWN;
    row->latency_ms = (struct arch_latency){NAN, NAN, NAN, NAN};
    s->all_device_ms = s->all_edge_ms = s->input_bytes = NAN;
    s->all_edge_parts = (struct arch_latency){NAN, NAN, NAN, NAN};
}

/* Everything but the dir from a parsed summary.json (file: its path, for messages). */
static int summary_read(struct summary *s, const json_t *root, const char *file)
{
    summary_init(s);
    if (!json_is_object(root))
        return offnas_error("%s: expected an object, got %s", file, json_type_name(root));
    OFFNAS_TRY(read_method(root, file, &s->row.method));
    for (size_t i = 0; i < OFFNAS_ARRAY_LEN(FIELDS); i++)
        OFFNAS_TRY(read_field(root, &FIELDS[i], file, s));
    const char *ops;
    OFFNAS_TRY(read_string(root, "ops", file, &ops));
    if (ops && strlen(ops) >= sizeof s->row.ops)
        return offnas_error("%s: ops: longer than %zu characters", file, sizeof s->row.ops - 1);
    snprintf(s->row.ops, sizeof s->row.ops, "%s", ops ? ops : "");
    if (s->row.kept_channels != REPORT_UNKNOWN && s->row.total_channels != REPORT_UNKNOWN &&
        s->row.kept_channels > s->row.total_channels)
        return offnas_error("%s: kept_channels: %d, more than total_channels %d", file,
                            s->row.kept_channels, s->row.total_channels);
    if (s->row.method == REPORT_NEUROSURGEON && isnan(s->all_device_ms))
        return offnas_error("%s: latency_ms.all_device: missing (a neurosurgeon run gives its "
                            "all-device and all-edge latencies)", file);
    if (s->row.method == REPORT_NEUROSURGEON && isnan(s->all_edge_ms))
        return offnas_error("%s: latency_ms.all_edge: missing (a neurosurgeon run gives its "
                            "all-device and all-edge latencies)", file);
    return 0;
}

/* The dotted path ("latency_ms.total", "runs[2].dir") of the value the first end bytes of a
 * JSON text stop in: the latest key of each object open there, the index in each array. */
static void json_path_at(const char *text, size_t end, char *out, size_t size)
{
    enum { DEPTH = 8 };
    char keys[DEPTH][64];
    int is_object[DEPTH], index[DEPTH], depth = 0;
    for (size_t i = 0; i < end; i++) {
        char c = text[i];
        int top = depth >= 1 && depth <= DEPTH ? depth - 1 : -1;
        if (c == '{' || c == '[') {
            if (depth < DEPTH) {
                is_object[depth] = c == '{';
                index[depth] = 0;
                keys[depth][0] = 0;
            }
            depth++;
        } else if ((c == '}' || c == ']') && depth > 0) {
            depth--;
        } else if (c == ',' && top >= 0 && !is_object[top]) {
            index[top]++;
        } else if (c == '"') {
            size_t start = ++i;
            while (i < end && text[i] != '"')
                i += text[i] == '\\' ? 2 : 1;
            size_t next = i + 1;
            while (next < end && strchr(" \t\r\n", text[next]))
                next++;
            if (top >= 0 && is_object[top] && next < end && text[next] == ':')
                snprintf(keys[top], sizeof keys[top], "%.*s", (int)(i - start), text + start);
        }
    }
    size_t len = 0;
    out[0] = 0;
    for (int d = 0; d < depth && d < DEPTH && len < size; d++) {
        if (is_object[d] && keys[d][0])
            len += (size_t)snprintf(out + len, size - len, "%s%s", len ? "." : "", keys[d]);
        else if (!is_object[d])
            len += (size_t)snprintf(out + len, size - len, "[%d]", index[d]);
    }
}

/* The one-line error for a summary.json jansson could not parse. A number too large to be
 * finite (1e999) is named by its field; other syntax errors by line and column. */
static int parse_error(const char *file, const json_error_t *err)
{
    char field[256] = "";
    FILE *f = NULL;
    if (json_error_code(err) == json_error_numeric_overflow && err->position > 0)
        f = fopen(file, "r");
    if (f) {
        char *text = offnas_malloc((size_t)err->position);
        size_t got = fread(text, 1, (size_t)err->position, f);
        json_path_at(text, got, field, sizeof field);
        free(text);
        fclose(f);
    }
    if (field[0])
        return offnas_error("%s: %s: not a finite number (line %d: %s)", file, field, err->line,
                            err->text);
    return offnas_error("%s: line %d column %d: %s", file, err->line, err->column, err->text);
}

static int lambda_handler(void *user, const char *section, const char *name, const char *value)
{
    if (!strcmp(section, "search") && !strcmp(name, "lambda")) {
        char *end;
        double x = strtod(value, &end);
        if (end != value && !*end && isfinite(x))
            *(double *)user = x;
    }
    return 1;
}

/* What DIR/arch.json (offnas derive's, copied by train --arch) adds when the summary lacks it:
 * the ops, and for a search run the search.lambda of its job. No arch.json: nothing. */
static int read_arch_json(struct report_row *row, const char *dir)
{
    int wants_lambda = row->method == REPORT_SEARCH && isnan(row->lambda);
    if (row->ops[0] && !wants_lambda)
        return 0;
    char path[JOB_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/arch.json", dir);
    if (access(path, F_OK) != 0)
        return 0;
    struct derived d;
    int rc = derived_load(&d, path);
    if (!rc && !row->ops[0])
        snprintf(row->ops, sizeof row->ops, "%s", d.ops);
    if (!rc && wants_lambda)
        ini_parse_string(d.job_text, lambda_handler, &row->lambda);
    json_decref(d.root);
    return rc;
}

static int op_count(const char *ops)
{
    if (!ops[0])
        return REPORT_UNKNOWN;
    int n = 1;
    for (const char *p = ops; *p; p++)
        n += *p == ',';
    return n;
}

/* The two trivial baselines of a neurosurgeon run: the same network all on the device (split
 * L + 1) and all on the edge (split 0, the input sent). */
static void trivial_rows(const struct summary *s, struct report_row *all_device,
                         struct report_row *all_edge)
{
    int layers = op_count(s->row.ops);
    *all_device = s->row;
    all_device->method = REPORT_ALL_DEVICE;
    all_device->split_point = layers == REPORT_UNKNOWN ? REPORT_UNKNOWN : layers + 1;
    all_device->kept_channels = all_device->total_channels = 0;
    all_device->bytes_sent = 0;
    all_device->latency_ms = (struct arch_latency){.total = s->all_device_ms,
                                                   .device = s->all_device_ms};

    *all_edge = s->row;
    all_edge->method = REPORT_ALL_EDGE;
    all_edge->split_point = 0;
    all_edge->kept_channels = all_edge->total_channels = 0;
    all_edge->bytes_sent = s->input_bytes;
    all_edge->latency_ms = s->all_edge_parts;
    all_edge->latency_ms.total = s->all_edge_ms;
}

/* DIR/summary.json into s, with what DIR/arch.json adds (read_arch_json). */
static int load_summary(struct summary *s, const char *dir)
{
    char path[JOB_PATH_MAX + 16];
    if (strlen(dir) >= sizeof s->row.dir)
        return offnas_error("%.80s...: run folder path longer than %zu characters", dir,
                            sizeof s->row.dir - 1);
    snprintf(path, sizeof path, "%s/summary.json", dir);
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    if (!root && err.line < 1)
        return offnas_error("%s: cannot read: %s", path, strerror(errno));
    if (!root)
        return parse_error(path, &err);
    int rc = summary_read(s, root, path);
    json_decref(root);
    snprintf(s->row.dir, sizeof s->row.dir, "%s", dir);
    return rc ? -1 : read_arch_json(&s->row, dir);
}

/* ---- retrainings under other seeds ------------------------------------------------------ */

static int compare_long(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

/* The seeds of the folders in DIR/seeds (each named by its train.seed, as jobs/compare writes
 * them; files beside them, such as their logs, are skipped) in increasing order. Returns their
 * count (0 without DIR/seeds), or -1 with an error naming the folder. */
static int list_seeds(const char *dir, long *seeds, int max)
{
    char path[JOB_PATH_MAX + 16], sub[JOB_PATH_MAX + 300];
    snprintf(path, sizeof path, "%s/seeds", dir);
    DIR *listing = opendir(path);
    if (!listing)
        return errno == ENOENT ? 0 : offnas_error("%s: cannot read: %s", path, strerror(errno));
    int n = 0, rc = 0;
    for (struct dirent *e; !rc && (e = readdir(listing));) {
        struct stat st;
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        if (e->d_name[0] == '.' || stat(sub, &st) != 0 || !S_ISDIR(st.st_mode))
            continue;
        char canonical[32]; /* "2", not "02" or "2x": one folder per seed */
        long seed = strtol(e->d_name, NULL, 10);
        snprintf(canonical, sizeof canonical, "%ld", seed);
        if (seed < 0 || seed > INT_MAX || strcmp(canonical, e->d_name))
            rc = offnas_error("%s: not a seed folder (named by its train.seed, e.g. seeds/2)",
                              sub);
        else if (n == max)
            rc = offnas_error("%s: more than %d seed folders", path, max);
        else
            seeds[n++] = seed;
    }
    closedir(listing);
    qsort(seeds, (size_t)n, sizeof *seeds, compare_long);
    return rc ? -1 : n;
}

/* An error unless the seed's count field equals the run's (file: the seed's summary). */
static int same_count(const char *file, const char *field, int seed, int run)
{
    if (seed == run)
        return 0;
    char a[16] = "unknown", b[16] = "unknown";
    if (seed != REPORT_UNKNOWN)
        snprintf(a, sizeof a, "%d", seed);
    if (run != REPORT_UNKNOWN)
        snprintf(b, sizeof b, "%d", run);
    return offnas_error("%s: %s: %s, but the run's is %s (a seed retrains the run's network)",
                        file, field, a, b);
}

/* An error unless seed row is the run's network: the same method, ops, split and channels. */
static int same_network(const struct report_row *seed, const struct report_row *run)
{
    char file[JOB_PATH_MAX + 16];
    snprintf(file, sizeof file, "%s/summary.json", seed->dir);
    if (seed->method != run->method)
        return offnas_error("%s: method: %s, but the run's is %s (a seed retrains the run's "
                            "network)", file, report_method_name(seed->method),
                            report_method_name(run->method));
    if (strcmp(seed->ops, run->ops))
        return offnas_error("%s: ops: '%.60s', but the run's are '%.60s' (a seed retrains the "
                            "run's network)", file, seed->ops[0] ? seed->ops : "unknown",
                            run->ops[0] ? run->ops : "unknown");
    OFFNAS_TRY(same_count(file, "split_point", seed->split_point, run->split_point));
    OFFNAS_TRY(same_count(file, "kept_channels", seed->kept_channels, run->kept_channels));
    return same_count(file, "total_channels", seed->total_channels, run->total_channels);
}

/* An error unless seed_dir/arch.json keeps the channels run_dir/arch.json keeps (when both are
 * there). prune-split's seeds are not asked: they rank the channels on their own network. */
static int same_channels(const char *seed_dir, const char *run_dir)
{
    /* seed_dir is read_seeds' sub: the run folder, "/seeds/" and the seed */
    char seed_path[JOB_PATH_MAX + 48], run_path[JOB_PATH_MAX + 16];
    snprintf(seed_path, sizeof seed_path, "%s/arch.json", seed_dir);
    snprintf(run_path, sizeof run_path, "%s/arch.json", run_dir);
    if (access(seed_path, F_OK) != 0 || access(run_path, F_OK) != 0)
        return 0;
    struct derived *d = offnas_malloc(2 * sizeof *d);
    int rc = derived_load(&d[0], seed_path);
    json_decref(d[0].root);
    if (!rc) {
        rc = derived_load(&d[1], run_path);
        json_decref(d[1].root);
    }
    if (!rc && memcmp(d[0].split.mask, d[1].split.mask, sizeof d[0].split.mask))
        rc = offnas_error("%s: channels: not those of the run's %s (a seed retrains the run's "
                          "network)", seed_path, run_path);
    free(d);
    return rc;
}

/* row's test accuracy becomes the mean over its own training and those of DIR/seeds/<seed>,
 * each checked to be row's network. No seed folders: row unchanged. */
static int read_seeds(struct report_row *row, const char *dir)
{
    long seeds[REPORT_MAX_SEEDS - 1];
    int n = list_seeds(dir, seeds, REPORT_MAX_SEEDS - 1);
    if (n <= 0)
        return n;
    struct summary *s = offnas_malloc(sizeof *s);
    char sub[JOB_PATH_MAX + 32];
    double sum = row->test_accuracy, lo = sum, hi = sum;
    row->seed_accuracy[0] = row->test_accuracy;
    int rc = 0;
    for (int i = 0; i < n; i++) {
        snprintf(sub, sizeof sub, "%s/seeds/%ld", dir, seeds[i]);
        rc = load_summary(s, sub);
        if (!rc)
            rc = same_network(&s->row, row);
        if (!rc && row->method != REPORT_PRUNE_SPLIT)
            rc = same_channels(sub, dir);
        if (rc)
            break;
        double a = s->row.test_accuracy;
        row->seed_accuracy[i + 1] = a;
        sum += a;
        lo = fmin(lo, a);
        hi = fmax(hi, a);
    }
    free(s);
    row->seed_count = n + 1;
    row->test_accuracy = sum / row->seed_count;
    row->seed_spread = hi - lo;
    return rc;
}

int report_read_run(const char *dir, struct report_row *rows)
{
    struct summary *s = offnas_malloc(sizeof *s);
    int rc = load_summary(s, dir);
    if (!rc)
        rc = read_seeds(&s->row, dir);
    int count = 1;
    if (!rc) {
        rows[0] = s->row;
        if (s->row.method == REPORT_NEUROSURGEON) {
            trivial_rows(s, &rows[1], &rows[2]);
            count = 3;
        }
    }
    free(s);
    return rc ? -1 : count;
}

/* ---- Pareto rows and the best row ------------------------------------------------------ */

static int dominates(const struct report_row *a, const struct report_row *b)
{
    return a->test_accuracy >= b->test_accuracy && a->latency_ms.total <= b->latency_ms.total &&
           (a->test_accuracy > b->test_accuracy || a->latency_ms.total < b->latency_ms.total);
}

void report_mark_pareto(struct report_row *rows, int count)
{
    for (int i = 0; i < count; i++) {
        rows[i].pareto = 1;
        for (int j = 0; j < count && rows[i].pareto; j++)
            if (j != i && dominates(&rows[j], &rows[i]))
                rows[i].pareto = 0;
    }
}

int report_best(const struct report_row *rows, int count)
{
    double top = -1;
    for (int i = 0; i < count; i++)
        if (rows[i].test_accuracy > top)
            top = rows[i].test_accuracy;
    int best = -1;
    for (int i = 0; i < count; i++) {
        /* the slack keeps a run exactly 0.5 pt below (0.905 against 0.91) within */
        if (top - rows[i].test_accuracy > REPORT_ACCURACY_TOLERANCE + 1e-9)
            continue;
        const struct report_row *r = &rows[i], *b = best < 0 ? NULL : &rows[best];
        if (!b || r->latency_ms.total < b->latency_ms.total ||
            (r->latency_ms.total == b->latency_ms.total && r->test_accuracy > b->test_accuracy))
            best = i;
    }
    return best;
}

int report_read(struct report *r, const char *const *dirs, int count)
{
    memset(r, 0, sizeof *r);
    r->rows = offnas_calloc((size_t)count * REPORT_ROWS_PER_RUN, sizeof *r->rows);
    for (int i = 0; i < count; i++) {
        int n = report_read_run(dirs[i], r->rows + r->count);
        if (n < 0) {
            report_free(r);
            return -1;
        }
        r->count += n;
    }
    report_mark_pareto(r->rows, r->count);
    r->best = report_best(r->rows, r->count);
    return 0;
}

void report_free(struct report *r)
{
    free(r->rows);
    memset(r, 0, sizeof *r);
}

/* ---- the tables -------------------------------------------------------------------------- */

/* value printed with format, or unknown when it is NAN */
static const char *fmt_real(char *buf, size_t size, double value, const char *format,
                            const char *unknown)
{
    if (isnan(value))
        return unknown;
    snprintf(buf, size, format, value);
    return buf;
}

static const char *fmt_count(char *buf, size_t size, int value, const char *unknown)
{
    if (value == REPORT_UNKNOWN)
        return unknown;
    snprintf(buf, size, "%d", value);
    return buf;
}

/* "search λ=0.5", or the method alone when λ is unknown */
static const char *row_label(char *buf, size_t size, const struct report_row *row)
{
    if (isnan(row->lambda))
        snprintf(buf, size, "%s", report_method_name(row->method));
    else
        snprintf(buf, size, "%s λ=%g", report_method_name(row->method), row->lambda);
    return buf;
}

/* text with escape written before every special character: markdown's \|, CSV's "",
 * gnuplot's '' */
static void put_escaped(FILE *out, const char *text, char special, char escape)
{
    for (const char *p = text; *p; p++) {
        if (*p == special)
            fputc(escape, out);
        fputc(*p, out);
    }
}

/* text as a markdown table cell */
static void md_cell(FILE *out, const char *text)
{
    fputs(" ", out);
    put_escaped(out, text, '|', '\\');
    fputs(" |", out);
}

/* "0.9050", or for a row of several seeds "0.9050 (3 seeds, spread 0.0120)" */
static const char *fmt_accuracy(char *buf, size_t size, const struct report_row *row)
{
    if (row->seed_count > 1)
        snprintf(buf, size, "%.4f (%d seeds, spread %.4f)", row->test_accuracy, row->seed_count,
                 row->seed_spread);
    else
        snprintf(buf, size, "%.4f", row->test_accuracy);
    return buf;
}

static void md_row(FILE *out, const struct report_row *row)
{
    char b[16][48];
    const struct arch_latency *ms = &row->latency_ms;
    const char *channels = "-";
    if (row->kept_channels != REPORT_UNKNOWN && row->total_channels != REPORT_UNKNOWN) {
        snprintf(b[0], sizeof b[0], "%d/%d", row->kept_channels, row->total_channels);
        channels = b[0];
    }
    fputs("|", out);
    md_cell(out, report_method_name(row->method));
    md_cell(out, fmt_real(b[1], sizeof b[1], row->lambda, "%g", "-"));
    md_cell(out, row->ops[0] ? row->ops : "-");
    md_cell(out, fmt_count(b[2], sizeof b[2], row->split_point, "-"));
    md_cell(out, channels);
    md_cell(out, fmt_real(b[3], sizeof b[3], row->bytes_sent, "%.0f", "-"));
    md_cell(out, fmt_real(b[4], sizeof b[4], ms->device, "%.3f", "-"));
    md_cell(out, fmt_real(b[5], sizeof b[5], ms->transfer, "%.3f", "-"));
    md_cell(out, fmt_real(b[6], sizeof b[6], ms->edge, "%.3f", "-"));
    md_cell(out, fmt_real(b[7], sizeof b[7], ms->total, "%.3f", "-"));
    md_cell(out, fmt_accuracy(b[8], sizeof b[8], row));
    md_cell(out, fmt_real(b[9], sizeof b[9], row->macs, "%.0f", "-"));
    md_cell(out, fmt_real(b[10], sizeof b[10], row->params, "%.0f", "-"));
    md_cell(out, row->pareto ? "★" : "");
    md_cell(out, row->dir);
    fputc('\n', out);
}

static int any_seeds(const struct report *r, int prune_split_only)
{
    for (int i = 0; i < r->count; i++)
        if (r->rows[i].seed_count > 1 &&
            (!prune_split_only || r->rows[i].method == REPORT_PRUNE_SPLIT))
            return 1;
    return 0;
}

/* What a row of several seeds means (only when there is one), and for prune-split what its
 * retrainings do differently. */
static void md_seeds_note(const struct report *r, FILE *out)
{
    if (!any_seeds(r, 0))
        return;
    fputs("A test accuracy of n seeds is the mean over the run's own training and its "
          "retrainings in RUN/seeds/<seed> (the same network, only train.seed differs; "
          "spread: highest minus lowest); the Pareto marks and the line below use the mean.\n",
          out);
    if (any_seeds(r, 1))
        fputs("prune-split's retrainings repeat its whole pipeline (the unpruned training, the "
              "channels ranked by batch-norm scale, the fine-tuning) at the run's split and "
              "channel count: the channels kept are each seed's own.\n",
              out);
    fputc('\n', out);
}

void report_write_md(const struct report *r, int plot_drawn, FILE *out)
{
    fputs("| method | λ | ops | split | channels kept/total | bytes sent | device ms | "
          "transfer ms | edge ms | total ms | test accuracy | MACs | parameters | Pareto | run |\n"
          "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|---|\n",
          out);
    double top = -1;
    for (int i = 0; i < r->count; i++) {
        md_row(out, &r->rows[i]);
        if (r->rows[i].test_accuracy > top)
            top = r->rows[i].test_accuracy;
    }
    fputc('\n', out);
    md_seeds_note(r, out);
    if (r->best >= 0) {
        const struct report_row *b = &r->rows[r->best];
        char label[64], seeds[32] = "";
        if (b->seed_count > 1)
            snprintf(seeds, sizeof seeds, " (mean of %d seeds)", b->seed_count);
        fprintf(out,
                "Fastest within %.1f pt of the most accurate (%.4f): %s, %s: %.3f ms, test "
                "accuracy %.4f%s.\n",
                100 * REPORT_ACCURACY_TOLERANCE, top, row_label(label, sizeof label, b), b->dir,
                b->latency_ms.total, b->test_accuracy, seeds);
    }
    if (plot_drawn)
        fputs("Plot: pareto.png, pareto.svg (gnuplot script: pareto.gp).\n", out);
    else
        fputs("Plot: not drawn (no gnuplot); gnuplot script: pareto.gp.\n", out);
}

/* text as a CSV field: quoted when it holds a comma, quote or line break */
static void csv_text(FILE *out, const char *text)
{
    if (!strpbrk(text, ",\"\r\n")) {
        fputs(text, out);
        return;
    }
    fputc('"', out);
    put_escaped(out, text, '"', '"');
    fputc('"', out);
}

/* ",ACCURACIES,SPREAD": the seeds' accuracies separated by spaces, both empty for a row of one
 * training */
static void csv_seeds(FILE *out, const struct report_row *row)
{
    fputc(',', out);
    for (int i = 0; row->seed_count > 1 && i < row->seed_count; i++)
        fprintf(out, "%s%.15g", i ? " " : "", row->seed_accuracy[i]);
    fputc(',', out);
    if (row->seed_count > 1)
        fprintf(out, "%.15g", row->seed_spread);
}

void report_write_csv(const struct report *r, FILE *out)
{
    int seeds = any_seeds(r, 0);
    fputs("method,lambda,dir,test_accuracy,split_point,kept_channels,total_channels,bytes_sent,"
          "device_ms,transfer_ms,edge_ms,total_ms,macs,params,pareto",
          out);
    fputs(seeds ? ",test_accuracy_seeds,test_accuracy_spread\n" : "\n", out);
    for (int i = 0; i < r->count; i++) {
        const struct report_row *row = &r->rows[i];
        const struct arch_latency *ms = &row->latency_ms;
        char b[12][32];
        fprintf(out, "%s,%s,", report_method_name(row->method),
                fmt_real(b[0], sizeof b[0], row->lambda, "%.15g", ""));
        csv_text(out, row->dir);
        fprintf(out, ",%.15g,%s,%s,%s,%s,%s,%s,%s,%.15g,%s,%s,%d", row->test_accuracy,
                fmt_count(b[1], sizeof b[1], row->split_point, ""),
                fmt_count(b[2], sizeof b[2], row->kept_channels, ""),
                fmt_count(b[3], sizeof b[3], row->total_channels, ""),
                fmt_real(b[4], sizeof b[4], row->bytes_sent, "%.15g", ""),
                fmt_real(b[5], sizeof b[5], ms->device, "%.15g", ""),
                fmt_real(b[6], sizeof b[6], ms->transfer, "%.15g", ""),
                fmt_real(b[7], sizeof b[7], ms->edge, "%.15g", ""), ms->total,
                fmt_real(b[8], sizeof b[8], row->macs, "%.15g", ""),
                fmt_real(b[9], sizeof b[9], row->params, "%.15g", ""), row->pareto);
        if (seeds)
            csv_seeds(out, row);
        fputc('\n', out);
    }
}

static json_t *json_real_or_null(double v) { return isnan(v) ? json_null() : json_real(v); }

/* MACs and parameters are counts: integers in the JSON when they are whole */
static json_t *json_whole_or_null(double v)
{
    if (!isnan(v) && v == floor(v) && fabs(v) < 9007199254740992.0) /* 2^53 */
        return json_integer((json_int_t)v);
    return json_real_or_null(v);
}

static json_t *json_count_or_null(int v)
{
    return v == REPORT_UNKNOWN ? json_null() : json_integer(v);
}

json_t *report_row_json(const struct report_row *row)
{
    json_t *o = json_object(), *ms = json_object();
    json_object_set_new(o, "method", json_string(report_method_name(row->method)));
    json_object_set_new(o, "lambda", json_real_or_null(row->lambda));
    json_object_set_new(o, "dir", json_string(row->dir));
    json_object_set_new(o, "ops", row->ops[0] ? json_string(row->ops) : json_null());
    json_object_set_new(o, "test_accuracy", json_real(row->test_accuracy));
    if (row->seed_count > 1) {
        json_t *seeds = json_array();
        for (int i = 0; i < row->seed_count; i++)
            json_array_append_new(seeds, json_real(row->seed_accuracy[i]));
        json_object_set_new(o, "test_accuracy_seeds", seeds);
        json_object_set_new(o, "test_accuracy_spread", json_real(row->seed_spread));
    }
    json_object_set_new(o, "split_point", json_count_or_null(row->split_point));
    json_object_set_new(o, "kept_channels", json_count_or_null(row->kept_channels));
    json_object_set_new(o, "total_channels", json_count_or_null(row->total_channels));
    json_object_set_new(o, "bytes_sent", json_real_or_null(row->bytes_sent));
    json_object_set_new(ms, "device", json_real_or_null(row->latency_ms.device));
    json_object_set_new(ms, "transfer", json_real_or_null(row->latency_ms.transfer));
    json_object_set_new(ms, "edge", json_real_or_null(row->latency_ms.edge));
    json_object_set_new(ms, "total", json_real(row->latency_ms.total));
    json_object_set_new(o, "latency_ms", ms);
    json_object_set_new(o, "macs", json_whole_or_null(row->macs));
    json_object_set_new(o, "params", json_whole_or_null(row->params));
    json_object_set_new(o, "pareto", json_boolean(row->pareto));
    return o;
}

json_t *report_json(const struct report *r)
{
    json_t *root = json_object(), *runs = json_array();
    for (int i = 0; i < r->count; i++)
        json_array_append_new(runs, report_row_json(&r->rows[i]));
    json_object_set_new(root, "runs", runs);
    json_object_set_new(root, "best", r->best >= 0 ? report_row_json(&r->rows[r->best])
                                                   : json_null());
    return root;
}

/* ---- the plot ---------------------------------------------------------------------------- */

/* text as a gnuplot single-quoted string ('' stands for ') */
static void gp_string(FILE *out, const char *text)
{
    fputc('\'', out);
    put_escaped(out, text, '\'', '\'');
    fputc('\'', out);
}

/* Whether two runs are drawn at the same point of the plot. */
static int same_point(const struct report_row *a, const struct report_row *b)
{
    return fabs(a->latency_ms.total - b->latency_ms.total) <= 1e-9 * fabs(b->latency_ms.total) &&
           a->test_accuracy == b->test_accuracy;
}

/* The data blocks: $runs (total ms, accuracy, label, method) and $pareto (its rows by
 * latency, for the front). */
static void gp_data(const struct report *r, FILE *out)
{
    char label[64], joined[256];
    fputs("# total_ms test_accuracy label method\n$runs << EOD\n", out);
    for (int i = 0; i < r->count; i++) {
        const struct report_row *row = &r->rows[i];
        /* runs at one point (neurosurgeon and all-device when the best split is the device)
         * get one label "a = b" on the first of them, not two printed over each other */
        int first = 1;
        for (int j = 0; j < i && first; j++)
            first = !same_point(&r->rows[j], row);
        joined[0] = '\0';
        if (first) {
            snprintf(joined, sizeof joined, "%s", row_label(label, sizeof label, row));
            for (int j = i + 1; j < r->count; j++)
                if (same_point(&r->rows[j], row)) {
                    size_t used = strlen(joined);
                    snprintf(joined + used, sizeof joined - used, " = %s",
                             row_label(label, sizeof label, &r->rows[j]));
                }
        }
        fprintf(out, "%.15g %.15g \"%s\" %d\n", row->latency_ms.total, row->test_accuracy,
                joined, (int)row->method);
    }
    fputs("EOD\n\n# the Pareto rows by latency\n$pareto << EOD\n", out);
    double last = -INFINITY;
    for (;;) { /* rows are few: pick the next faster one each time */
        int next = -1;
        for (int i = 0; i < r->count; i++) {
            const struct report_row *row = &r->rows[i];
            if (row->pareto && row->latency_ms.total > last &&
                (next < 0 || row->latency_ms.total < r->rows[next].latency_ms.total))
                next = i;
        }
        if (next < 0)
            break;
        last = r->rows[next].latency_ms.total;
        fprintf(out, "%.15g %.15g\n", last, r->rows[next].test_accuracy);
    }
    fputs("EOD\n\n", out);
}

static void gp_plot_command(const struct report *r, FILE *out)
{
    int present[REPORT_METHOD_COUNT] = {0};
    for (int i = 0; i < r->count; i++)
        present[r->rows[i].method] = 1;
    fputs("plot", out);
    for (int m = 0; m < REPORT_METHOD_COUNT; m++)
        if (present[m])
            fprintf(out,
                    " $runs using 1:($4 == %d ? $2 : NaN) with points pt %d ps 1.6 lc rgb "
                    "\"%s\" title \"%s\", \\\n    ",
                    m, METHODS[m].point, METHODS[m].colour, METHODS[m].name);
    fputs(" $pareto using 1:2 with steps dt 2 lc rgb \"gray50\" title \"Pareto front\", \\\n"
          "     $runs using 1:2:3 with labels left offset char 0.8,0.5 font \",9\" notitle\n",
          out);
}

void report_write_gp(const struct report *r, const char *out_dir, FILE *out)
{
    double lo = INFINITY, hi = 0, lo_acc = INFINITY, hi_acc = 0;
    for (int i = 0; i < r->count; i++) {
        lo = fmin(lo, r->rows[i].latency_ms.total);
        hi = fmax(hi, r->rows[i].latency_ms.total);
        lo_acc = fmin(lo_acc, r->rows[i].test_accuracy);
        hi_acc = fmax(hi_acc, r->rows[i].test_accuracy);
    }
    fputs("# pareto.gp: test accuracy against predicted end-to-end latency, one point per row of\n"
          "# report.md; written by `offnas report`, yours to edit. Run it from the folder the\n"
          "# report was made in (gnuplot DIR/pareto.gp), or name the output yourself:\n"
          "#   gnuplot -e \"out='pareto'\" pareto.gp      (writes pareto.png and pareto.svg)\n"
          "if (!exists(\"out\")) out = ",
          out);
    char base[JOB_PATH_MAX + 16];
    snprintf(base, sizeof base, "%s/pareto", out_dir);
    gp_string(out, base);
    fputs("\nset encoding utf8\n\n", out);
    gp_data(r, out);
    fputs("set title \"offnas report: accuracy against predicted latency\"\n"
          "set xlabel \"predicted end-to-end latency (ms)\"\n"
          "set ylabel \"test accuracy\"\n"
          "set grid\nset key bottom right box opaque\n"
          "set offsets graph 0.05, graph 0.2, graph 0.08, graph 0.08\n",
          out);
    /* one value on an axis: a range around it (gnuplot would warn and pick one itself) */
    if (lo == hi)
        fprintf(out, "set xrange [%.15g:%.15g]\n", lo > 0 ? lo / 1.25 : -1, lo > 0 ? hi * 1.25 : 1);
    if (lo_acc == hi_acc)
        fprintf(out, "set yrange [%.15g:%.15g]\n", lo_acc - 0.01, hi_acc + 0.01);
    if (lo > 0 && hi / lo > REPORT_LOG_X_RATIO)
        fprintf(out, "set logscale x  # the slowest run is over %g times the fastest\n",
                REPORT_LOG_X_RATIO);
    fputs("\nif (strstrt(GPVAL_TERMINALS, \"pngcairo\") > 0) {\n"
          "  set terminal pngcairo size 1100,750 noenhanced\n"
          "} else {\n"
          "  set terminal png size 1100,750 noenhanced\n"
          "}\n"
          "set output out.'.png'\n",
          out);
    gp_plot_command(r, out);
    fputs("set terminal svg size 1100,750 dynamic noenhanced\n"
          "set output out.'.svg'\n"
          "replot\n"
          "unset output\n",
          out);
}

/* ---- the files ----------------------------------------------------------------------------- */

enum report_file { REPORT_MD, REPORT_CSV, REPORT_JSON, REPORT_GP, REPORT_FILE_COUNT };
static const char *const FILE_NAMES[] = {"report.md", "pareto.csv", "report.json", "pareto.gp"};
_Static_assert(OFFNAS_ARRAY_LEN(FILE_NAMES) == REPORT_FILE_COUNT, "a name per file");

/* mkdir -p */
static int make_dirs(const char *path)
{
    char dir[JOB_PATH_MAX];
    if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir)
        return offnas_error("%.80s...: path longer than %zu characters", path, sizeof dir - 1);
    for (char *p = dir + 1;; p++) {
        if (*p && *p != '/')
            continue;
        char c = *p;
        *p = 0;
        struct stat st;
        if (mkdir(dir, 0777) != 0 && errno != EEXIST)
            return offnas_error("%s: cannot create: %s", dir, strerror(errno));
        if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
            return offnas_error("%s: not a directory", dir);
        *p = c;
        if (!c)
            return 0;
    }
}

static int write_file(const struct report *r, enum report_file which, const char *out_dir,
                      int plot_drawn, FILE *f)
{
    int rc = 0;
    if (which == REPORT_MD) {
        report_write_md(r, plot_drawn, f);
    } else if (which == REPORT_CSV) {
        report_write_csv(r, f);
    } else if (which == REPORT_JSON) {
        json_t *root = report_json(r);
        rc = json_dumpf(root, f, JSON_INDENT(2) | JSON_REAL_PRECISION(15));
        fputc('\n', f);
        json_decref(root);
    } else {
        report_write_gp(r, out_dir, f);
    }
    return rc || ferror(f) ? -1 : 0;
}

int report_write(const struct report *r, const char *out_dir, int plot_drawn)
{
    char path[JOB_PATH_MAX + 48], tmp[REPORT_FILE_COUNT][sizeof path + 32];
    OFFNAS_TRY(make_dirs(out_dir));
    int written = 0, rc = 0;
    for (; written < REPORT_FILE_COUNT && !rc; written++) {
        snprintf(path, sizeof path, "%s/%s", out_dir, FILE_NAMES[written]);
        snprintf(tmp[written], sizeof tmp[written], "%s.%ld.tmp", path, (long)getpid());
        FILE *f = fopen(tmp[written], "w");
        if (!f) {
            rc = offnas_error("%s: cannot write: %s", path, strerror(errno));
            break;
        }
        int wrc = write_file(r, (enum report_file)written, out_dir, plot_drawn, f);
        if (fclose(f) != 0 || wrc)
            rc = offnas_error("%s: cannot write: %s", path, strerror(errno));
    }
    for (int i = 0; i < written; i++) {
        snprintf(path, sizeof path, "%s/%s", out_dir, FILE_NAMES[i]);
        if (!rc && rename(tmp[i], path) != 0)
            rc = offnas_error("%s: cannot rename %s to it: %s", path, tmp[i], strerror(errno));
        if (rc)
            remove(tmp[i]);
    }
    return rc;
}

int report_find_gnuplot(char *path_out, size_t size)
{
    const char *search = getenv("PATH");
    if (!search || !*search)
        search = "/usr/bin:/bin";
    for (const char *p = search;;) {
        const char *colon = strchr(p, ':');
        int len = colon ? (int)(colon - p) : (int)strlen(p);
        snprintf(path_out, size, "%.*s/gnuplot", len, len ? p : ".");
        struct stat st;
        if (stat(path_out, &st) == 0 && S_ISREG(st.st_mode) && access(path_out, X_OK) == 0)
            return 0;
        if (!colon)
            break;
        p = colon + 1;
    }
    path_out[0] = 0;
    return offnas_error("gnuplot not found in PATH (Debian: apt-get install gnuplot-nox)");
}

int report_plot(const char *out_dir, const char *gnuplot)
{
    char script[JOB_PATH_MAX + 16], base[JOB_PATH_MAX + 32], *set_out = NULL;
    snprintf(script, sizeof script, "%s/pareto.gp", out_dir);
    snprintf(base, sizeof base, "%s/pareto.%ld.tmp", out_dir, (long)getpid());
    size_t set_out_size;
    FILE *f = open_memstream(&set_out, &set_out_size);
    if (!f)
        return offnas_error("%s: out of memory", script);
    fputs("out=", f);
    gp_string(f, base);
    if (fclose(f) != 0) {
        free(set_out);
        return offnas_error("%s: out of memory", script);
    }
    char *argv[] = {(char *)gnuplot, "-e", set_out, script, NULL};
    pid_t child;
    int err = posix_spawn(&child, gnuplot, NULL, NULL, argv, environ);
    free(set_out);
    if (err)
        return offnas_error("%s: cannot run %s: %s", script, gnuplot, strerror(err));
    int status;
    while (waitpid(child, &status, 0) < 0)
        if (errno != EINTR)
            return offnas_error("%s: waiting for gnuplot: %s", script, strerror(errno));
    const char *ext[] = {"png", "svg"};
    int rc = 0;
    if (WIFSIGNALED(status))
        rc = offnas_error("%s: gnuplot killed by signal %d", script, WTERMSIG(status));
    else if (WEXITSTATUS(status) != 0)
        rc = offnas_error("%s: gnuplot failed (exit status %d)", script, WEXITSTATUS(status));
    for (size_t i = 0; i < OFFNAS_ARRAY_LEN(ext); i++) {
        char tmp[JOB_PATH_MAX + 48], path[JOB_PATH_MAX + 48];
        snprintf(tmp, sizeof tmp, "%s.%s", base, ext[i]);
        snprintf(path, sizeof path, "%s/pareto.%s", out_dir, ext[i]);
        if (!rc && rename(tmp, path) != 0)
            rc = offnas_error("%s: gnuplot wrote no %s: %s", script, path, strerror(errno));
        if (rc)
            remove(tmp);
    }
    return rc;
}
