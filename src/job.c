/* job: job files (INI) and their settings, driven by one table of keys.
 *
 * Every key lives in KEYS below: its section, name, type, place in struct job, default text
 * and range. Defaults, job files and --set overrides all go through set_value(), so a default
 * is checked exactly like a value from a file. libinih splits the file into sections and
 * key = value pairs; our line reader feeds it one line at a time, counts lines, and checks
 * section headers and malformed lines (which inih does not pass to the handler), so every
 * error names FILE:LINE.
 */
#define _POSIX_C_SOURCE 200809L
#include "job.h"

#include "check.h"
#include "common.h"
#include "link.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <ini.h>

/* ---------------------------------------------------------------------------------------------
 * The table of keys
 */

enum key_type { KEY_INT, KEY_DOUBLE, KEY_BOOL, KEY_STRING, KEY_ENUM };

struct job_key {
    const char *section;
    const char *name;
    enum key_type type;
    size_t offset;             /* offsetof(struct job, field) */
    size_t size;               /* capacity of a string or enum field, including the NUL */
    const char *default_text;  /* parsed by set_value() in job_defaults() */
    double min, max;           /* inclusive range of int and double keys */
    const char *const *words;  /* allowed words of an enum key, NULL-terminated */
};

static const char *const LOSS_WORDS[] = { "additive", "log", "multiplicative", NULL };
static const char *const SUPERNET_WORDS[] = { "shared", "separate", NULL };
static const char *const T_REF_WORDS[] = { "initial", "fastest", NULL };
static const char *const SPLIT_WORDS[] = { "search", "device", NULL };
static const char *const OP_GRADIENT_WORDS[] = { "paired", "gate", NULL };
/* The words of search.wire and network.preset are link.h's LINK_WIRE_NAMES and
 * LINK_PRESET_NAMES: a new wire format or preset is one entry there. */

#define FIELD_SIZE(field) sizeof(((struct job *)0)->field)
#define K_INT(sec, name, field, def, lo, hi) \
    { sec, name, KEY_INT, offsetof(struct job, field), 0, def, lo, hi, NULL }
#define K_DBL(sec, name, field, def, lo, hi) \
    { sec, name, KEY_DOUBLE, offsetof(struct job, field), 0, def, lo, hi, NULL }
#define K_BOOL(sec, name, field, def) \
    { sec, name, KEY_BOOL, offsetof(struct job, field), 0, def, 0, 1, NULL }
#define K_STR(sec, name, field, def) \
    { sec, name, KEY_STRING, offsetof(struct job, field), FIELD_SIZE(field), def, 0, 0, NULL }
#define K_ENUM(sec, name, field, def, words) \
    { sec, name, KEY_ENUM, offsetof(struct job, field), FIELD_SIZE(field), def, 0, 0, words }

#define BIG 1e9 /* "no practical limit" for counts */

static const struct job_key KEYS[] = {
    K_STR("data", "path", data_path, "data/fashion-mnist.h5"),
    K_INT("data", "val_size", data_val_size, "5000", 0, BIG),
    K_INT("data", "resize", data_resize, "28", 8, 4096),
    K_INT("data", "seed", data_seed, "1", 0, INT_MAX),
    K_INT("data", "train_limit", data_train_limit, "0", 0, BIG),
    K_INT("data", "test_limit", data_test_limit, "0", 0, BIG),
    K_INT("data", "shards", data_shards, "0", 0, 1 << 20),

    K_INT("net", "stem", net.stem_channels, "16", 1, NET_MAX_CHANNELS),
    K_INT("net", "stem_stride", net.stem_stride, "1", 1, 2),
    K_INT("net", "head", net.head_channels, "128", 1, 4096),
    K_STR("net", "layers", net_layers, "16/1, 24/2, 24/1, 32/1, 32/2, 48/1, 48/1, 64/1"),
    K_STR("net", "ops", net_ops, "k3e1, k3e3, k3e3, k5e3, k3e3, k5e3, k3e3, k3e3"),
    K_STR("net", "candidates", net_candidates,
          "k3e1, k3e3, k3e6, k5e1, k5e3, k5e6, k7e1, k7e3, k7e6, skip"),
    K_ENUM("net", "supernet", net_supernet, "shared", SUPERNET_WORDS),

    K_INT("train", "epochs", train_epochs, "12", 0, BIG),
    K_INT("train", "batch", train_batch, "64", 1, 1 << 20),
    K_DBL("train", "lr", train_lr, "0.05", 0, 100),
    K_DBL("train", "momentum", train_momentum, "0.9", 0, 1),
    K_DBL("train", "weight_decay", train_weight_decay, "4e-5", 0, 1),
    K_INT("train", "warmup_steps", train_warmup_steps, "0", 0, BIG),
    K_DBL("train", "label_smoothing", train_label_smoothing, "0", 0, 1),
    K_BOOL("train", "flip", train_flip, "0"),
    K_INT("train", "threads", train_threads, "0", 0, 4096),
    K_INT("train", "seed", train_seed, "1", 0, INT_MAX),
    K_INT("train", "steps", train_steps, "0", 0, BIG),
    K_BOOL("train", "deterministic", train_deterministic, "0"),
    K_DBL("train", "log_seconds", train_log_seconds, "5", 0, BIG),
    K_STR("train", "init", train_init, ""),

    K_INT("search", "epochs", search_epochs, "10", 0, BIG),
    K_INT("search", "warmup_epochs", search_warmup_epochs, "2", 0, BIG),
    K_DBL("search", "lr", search_lr, "0.2", 0, 100),
    K_DBL("search", "warmup_largest", search_warmup_largest, "1", 0, 1),
    K_DBL("search", "lambda", search_lambda, "0.5", 0, 1e6),
    K_ENUM("search", "loss", search_loss, "additive", LOSS_WORDS),
    K_ENUM("search", "t_ref", search_t_ref, "fastest", T_REF_WORDS),
    /* a checkpoint refuses a T_ref beyond CHECK_MAX_LATENCY_MS: one the job allowed could
     * not be resumed */
    K_DBL("search", "t_ref_ms", search_t_ref_ms, "0", 0, CHECK_MAX_LATENCY_MS),
    K_DBL("search", "w", search_w, "0.6", 0, 100),
    K_DBL("search", "arch_lr", search_arch_lr, "3e-3", 0, 100),
    K_DBL("search", "arch_weight_decay", search_arch_weight_decay, "0", 0, 1),
    K_DBL("search", "tau_start", search_tau_start, "5", 1e-3, 1e3),
    K_DBL("search", "tau_end", search_tau_end, "0.5", 1e-3, 1e3),
    K_ENUM("search", "wire", search_wire, "int8", LINK_WIRE_NAMES),
    K_INT("search", "seed", search_seed, "1", 0, INT_MAX),
    K_BOOL("search", "deterministic", search_deterministic, "0"),
    K_ENUM("search", "split", search_split, "search", SPLIT_WORDS),
    K_INT("search", "pin_split", search_pin_split, "-1", -1, NET_MAX_LAYERS + 1),
    K_ENUM("search", "op_gradient", search_op_gradient, "paired", OP_GRADIENT_WORDS),

    K_DBL("derive", "max_accuracy_drop", derive_max_accuracy_drop, "0.005", 0, 1),
    K_INT("derive", "bn_batches", derive_bn_batches, "20", 1, 100000),
    K_INT("derive", "val_images", derive_val_images, "0", 0, BIG),

    K_INT("baseline", "finetune_epochs", baseline_finetune_epochs, "1", 0, BIG),
    /* a prune-split retrained under another seed keeps the run's split and channel count */
    K_INT("baseline", "pin_split", baseline_pin_split, "-1", -1, NET_MAX_LAYERS + 1),
    K_INT("baseline", "pin_kept", baseline_pin_kept, "0", 0, NET_MAX_CHANNELS),

    K_STR("latency", "device", latency_device, ""),
    K_STR("latency", "edge", latency_edge, ""),
    K_DBL("latency", "device_scale", latency_device_scale, "1", 1e-3, 1e3),
    K_DBL("latency", "edge_scale", latency_edge_scale, "1", 1e-3, 1e3),

    K_ENUM("network", "preset", network_preset, "3g", LINK_PRESET_NAMES),
    K_DBL("network", "bandwidth_mbps", network_bandwidth_mbps, "1.1", 1e-3, 1e6),
    K_DBL("network", "rtt_ms", network_rtt_ms, "100", 0, 1e5),

    K_STR("cluster", "profilers", cluster_profilers, ""),
    K_INT("cluster", "checksum_every", cluster_checksum_every, "50", 0, BIG),
    K_INT("cluster", "checkpoint_every", cluster_checkpoint_every, "200", 0, BIG),
    K_INT("cluster", "bucket_kb", cluster_bucket_kb, "512", 1, 1 << 20),
    K_STR("cluster", "profile_dir", cluster_profile_dir, "profiles"),
    K_STR("cluster", "probe_listen", cluster_probe_listen, "127.0.0.1:0"),
    K_BOOL("cluster", "fit_link", cluster_fit_link, "1"),
};

/* Longest line a job file may have: the longest text value plus its key and some spacing. */
#define LINE_MAX_CHARS (JOB_TEXT_MAX + 256)

static const struct job_key *find_key(const char *section, const char *name)
{
    for (size_t i = 0; i < OFFNAS_ARRAY_LEN(KEYS); i++)
        if (strcmp(KEYS[i].section, section) == 0 && strcmp(KEYS[i].name, name) == 0)
            return &KEYS[i];
    return NULL;
}

static int known_section(const char *section)
{
    for (size_t i = 0; i < OFFNAS_ARRAY_LEN(KEYS); i++)
        if (strcmp(KEYS[i].section, section) == 0)
            return 1;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Values
 */

static void *field_of(struct job *job, const struct job_key *key) { return (char *)job + key->offset; }
static const void *cfield_of(const struct job *job, const struct job_key *key)
{
    return (const char *)job + key->offset;
}

/* Shortest %.Ng (N = 15..17) that reads back as exactly x. */
static void format_double(char *buf, size_t size, double x)
{
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(buf, size, "%.*g", digits, x);
        if (strtod(buf, NULL) == x)
            return;
    }
}

static int parse_bool(const char *text, int *out)
{
    static const char *const TRUE_WORDS[] = { "1", "true", "yes", "on" };
    static const char *const FALSE_WORDS[] = { "0", "false", "no", "off" };
    for (size_t i = 0; i < OFFNAS_ARRAY_LEN(TRUE_WORDS); i++) {
        if (strcasecmp(text, TRUE_WORDS[i]) == 0)
            return *out = 1, 0;
        if (strcasecmp(text, FALSE_WORDS[i]) == 0)
            return *out = 0, 0;
    }
    return -1;
}

/* Stores the value text of one key into job. Returns 0, or -1 with an error
 * "section.name: what is wrong" (the caller adds the file and line). */
static int set_value(struct job *job, const struct job_key *key, const char *text)
{
    const char *s = key->section, *n = key->name;
    switch (key->type) {
    case KEY_INT: {
        char *end;
        errno = 0;
        long long v = strtoll(text, &end, 10);
        if (end == text || *end != '\0')
            return offnas_error("%s.%s: '%s' is not an integer", s, n, text);
        /* on overflow strtoll gives LLONG_MIN or LLONG_MAX, which fail these checks */
        if (v < (long long)key->min)
            return offnas_error("%s.%s: %s is below the minimum %.0f", s, n, text, key->min);
        if (v > (long long)key->max)
            return offnas_error("%s.%s: %s is above the maximum %.0f", s, n, text, key->max);
        *(int *)field_of(job, key) = (int)v;
        return 0;
    }
    case KEY_DOUBLE: {
        char *end;
        errno = 0;
        double v = strtod(text, &end);
        if (end == text || *end != '\0' || isnan(v))
            return offnas_error("%s.%s: '%s' is not a number", s, n, text);
        if (v < key->min)
            return offnas_error("%s.%s: %s is below the minimum %g", s, n, text, key->min);
        if (v > key->max)
            return offnas_error("%s.%s: %s is above the maximum %g", s, n, text, key->max);
        *(double *)field_of(job, key) = v;
        return 0;
    }
    case KEY_BOOL: {
        int v;
        if (parse_bool(text, &v))
            return offnas_error("%s.%s: '%s' is not a boolean (0/1, true/false, yes/no, on/off)",
                                s, n, text);
        *(int *)field_of(job, key) = v;
        return 0;
    }
    case KEY_STRING: {
        size_t len = strlen(text);
        if (len >= key->size)
            return offnas_error("%s.%s: value is %zu characters long, the maximum is %zu", s, n,
                                len, key->size - 1);
        for (size_t i = 0; i < len; i++) {
            /* Such values would not read back from the file job_write() makes. */
            if (iscntrl((unsigned char)text[i]))
                return offnas_error("%s.%s: value contains a control character", s, n);
            if (text[i] == ';' && i > 0 && isspace((unsigned char)text[i - 1]))
                return offnas_error("%s.%s: value contains ' ;', which starts a comment", s, n);
            /* job_write puts a space before the value: a leading ';' would start a comment */
            if (text[i] == ';' && i == 0)
                return offnas_error("%s.%s: value starts with ';', which starts a comment", s,
                                    n);
        }
        memcpy(field_of(job, key), text, len + 1);
        return 0;
    }
    case KEY_ENUM: {
        for (const char *const *w = key->words; *w; w++) {
            if (strcmp(text, *w) == 0) {
                OFFNAS_ASSERT(strlen(*w) < key->size);
                strcpy(field_of(job, key), *w);
                return 0;
            }
        }
        char allowed[256] = "";
        for (const char *const *w = key->words; *w; w++) {
            if (w != key->words)
                strncat(allowed, ", ", sizeof allowed - strlen(allowed) - 1);
            strncat(allowed, *w, sizeof allowed - strlen(allowed) - 1);
        }
        return offnas_error("%s.%s: '%s' is not one of %s", s, n, text, allowed);
    }
    }
    OFFNAS_ASSERT(0 && "unknown key type");
    return -1;
}

/* Writes the value of one key as text (the form set_value() reads back). */
static void format_value(char *buf, size_t size, const struct job *job, const struct job_key *key)
{
    const void *field = cfield_of(job, key);
    switch (key->type) {
    case KEY_INT:
    case KEY_BOOL:
        snprintf(buf, size, "%d", *(const int *)field);
        return;
    case KEY_DOUBLE:
        format_double(buf, size, *(const double *)field);
        return;
    case KEY_STRING:
    case KEY_ENUM:
        snprintf(buf, size, "%s", (const char *)field);
        return;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Reading INI files
 */

struct ini_state {
    FILE *file;
    const char *path; /* the file read */
    const char *name; /* what errors call it (path, or the file the text came from) */
    struct job *job;
    int line;         /* lines handed to inih so far: the line of the current handler call */
    int failed;       /* an error is recorded (the first one wins) */
    /* Key lookup mode (used by job_finalize to name the line of a bad key): */
    const struct job_key *find;
    int found_line;
    char found_value[JOB_TEXT_MAX + 1];
};

/* Records "PATH:LINE: message" unless an earlier error is recorded. Returns 0 (inih's "error"). */
static int record_error(struct ini_state *st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int record_error(struct ini_state *st, const char *fmt, ...)
{
    if (!st->failed && !st->find) {
        char message[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(message, sizeof message, fmt, ap);
        va_end(ap);
        offnas_error("%s:%d: %s", st->name, st->line, message);
    }
    st->failed = 1;
    return 0;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return s;
}

/* The fgets-style reader inih calls once per line. It hands over whole lines without leading
 * whitespace (so inih never sees a continuation line), and checks what inih checks silently:
 * section headers (inih does not pass them to the handler) and lines without '='. */
static char *line_reader(char *buf, int size, void *stream)
{
    struct ini_state *st = stream;
    char line[LINE_MAX_CHARS + 2];
    if (!fgets(line, sizeof line, st->file))
        return NULL;
    st->line++;
    size_t len = strlen(line);
    if (len == sizeof line - 1 && line[len - 1] != '\n') {
        int c = fgetc(st->file);
        if (c != EOF && c != '\n') {
            while ((c = fgetc(st->file)) != EOF && c != '\n')
                ;
            record_error(st, "line longer than %d characters", LINE_MAX_CHARS);
            strcpy(buf, ";");
            return buf;
        }
    }
    char *text = line;
    if (st->line == 1 && strncmp(text, "\xEF\xBB\xBF", 3) == 0)
        text += 3; /* UTF-8 byte order mark */
    text = trim(text);
    OFFNAS_ASSERT(strlen(text) + 1 <= (size_t)size);

    if (text[0] == '\0' || text[0] == ';' || text[0] == '#') {
        /* blank or comment */
    } else if (text[0] == '[') {
        char *close = strchr(text, ']');
        if (!close) {
            record_error(st, "section header without ']'");
        } else {
            *close = '\0';
            if (!known_section(text + 1))
                record_error(st, "unknown section [%s]", text + 1);
            *close = ']';
        }
    } else {
        size_t sep = strcspn(text, "=:");
        char *comment = strstr(text, " ;");
        if (text[sep] == '\0' || (comment && (size_t)(comment - text) < sep))
            record_error(st, "line without '=' (expected key = value)");
    }
    strcpy(buf, text);
    return buf;
}

static int key_handler(void *user, const char *section, const char *name, const char *value)
{
    struct ini_state *st = user;
    if (st->find) {
        if (strcmp(section, st->find->section) == 0 && strcmp(name, st->find->name) == 0) {
            st->found_line = st->line;
            snprintf(st->found_value, sizeof st->found_value, "%s", value);
        }
        return 1;
    }
    if (st->failed)
        return 0;
    if (section[0] == '\0')
        return record_error(st, "key '%s' before any [section]", name);
    if (!known_section(section))
        return record_error(st, "unknown section [%s]", section); /* the reader saw it first */
    const struct job_key *key = find_key(section, name);
    if (!key)
        return record_error(st, "unknown key '%s' in [%s]", name, section);
    if (set_value(st->job, key, value)) {
        offnas_error_context("%s:%d", st->name, st->line);
        st->failed = 1;
        return 0;
    }
    return 1;
}

/* Runs inih over the file at path with our reader. Returns inih's result (0, or the line of
 * the first error inih saw), -1 if the file cannot be opened or -3 if reading failed (errno
 * set for both). */
static int parse_file(struct ini_state *st)
{
    st->file = fopen(st->path, "r");
    if (!st->file)
        return -1;
    if (ini_max_line < LINE_MAX_CHARS + 2)
        ini_max_line = LINE_MAX_CHARS + 2; /* inih's line buffer (a VLA sized at each call) */
    int rc = ini_parse_stream(line_reader, st, key_handler, st);
    int read_error = ferror(st->file) ? errno : 0; /* e.g. EISDIR: path is a folder */
    fclose(st->file);
    st->file = NULL;
    if (read_error) {
        errno = read_error;
        return -3;
    }
    return rc;
}

int job_load_as(struct job *job, const char *path, const char *name)
{
    struct job *scratch = offnas_malloc(sizeof *scratch);
    *scratch = *job;
    struct ini_state st = { .path = path, .name = name, .job = scratch };
    int rc = parse_file(&st);
    if (rc == -1) {
        int err = errno;
        free(scratch);
        return offnas_error("%s: cannot open: %s", name, strerror(err));
    }
    if (rc == -3) {
        int err = errno;
        free(scratch);
        return offnas_error("%s: cannot read: %s", name, strerror(err));
    }
    if (rc == -2) {
        free(scratch);
        return offnas_error("%s: out of memory while reading", name);
    }
    if (!st.failed && rc > 0)
        offnas_error("%s:%d: malformed line", name, rc), st.failed = 1;
    if (!st.failed && strlen(name) >= sizeof scratch->source)
        offnas_error("%s: path longer than %zu characters", name, sizeof scratch->source - 1),
            st.failed = 1;
    if (st.failed) {
        free(scratch);
        return -1;
    }
    snprintf(scratch->source, sizeof scratch->source, "%s", name);
    *job = *scratch; /* only a fully valid file changes the job */
    free(scratch);
    return 0;
}

int job_load(struct job *job, const char *path) { return job_load_as(job, path, path); }

int job_set(struct job *job, const char *assignment)
{
    char text[LINE_MAX_CHARS];
    if (strlen(assignment) >= sizeof text)
        return offnas_error("--set: assignment longer than %zu characters", sizeof text - 1);
    strcpy(text, assignment);
    char *eq = strchr(text, '=');
    char *dot = strchr(text, '.');
    if (!eq || !dot || dot > eq)
        return offnas_error("--set %s: expected section.key=value", assignment);
    *eq = '\0';
    *dot = '\0';
    char *section = trim(text), *name = trim(dot + 1), *value = trim(eq + 1);
    if (!known_section(section))
        return offnas_error("--set %s: unknown section [%s]", assignment, section);
    const struct job_key *key = find_key(section, name);
    if (!key)
        return offnas_error("--set %s: unknown key '%s' in [%s]", assignment, name, section);
    if (set_value(job, key, value))
        return offnas_error_context("--set %s", assignment);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Defaults, writing
 */

void job_defaults(struct job *job)
{
    memset(job, 0, sizeof *job);
    for (size_t i = 0; i < OFFNAS_ARRAY_LEN(KEYS); i++) {
        int rc = set_value(job, &KEYS[i], KEYS[i].default_text);
        if (rc)
            fprintf(stderr, "offnas: bad default: %s\n", offnas_last_error());
        OFFNAS_ASSERT(rc == 0);
    }
    int rc = job_finalize(job); /* the derived lists are valid for the defaults too */
    if (rc)
        fprintf(stderr, "offnas: bad default: %s\n", offnas_last_error());
    OFFNAS_ASSERT(rc == 0);
}

void job_write(const struct job *job, FILE *out)
{
    char value[JOB_TEXT_MAX + 64];
    fprintf(out, "# offnas job%s%s\n", job->source[0] ? " from " : "", job->source);
    const char *section = NULL;
    for (size_t i = 0; i < OFFNAS_ARRAY_LEN(KEYS); i++) {
        const struct job_key *key = &KEYS[i];
        if (!section || strcmp(section, key->section) != 0) {
            fprintf(out, "%s[%s]\n", section ? "\n" : "", key->section);
            section = key->section;
        }
        format_value(value, sizeof value, job, key);
        fprintf(out, "%s =%s%s\n", key->name, value[0] ? " " : "", value);
    }
}

char *job_to_string(const struct job *job)
{
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    if (!out) {
        fprintf(stderr, "offnas: out of memory writing a job\n");
        abort();
    }
    job_write(job, out);
    if (fclose(out) != 0 || !text) {
        fprintf(stderr, "offnas: out of memory writing a job\n");
        abort();
    }
    return text;
}

/* ---------------------------------------------------------------------------------------------
 * Derived lists
 */

static int same_value(const struct job *a, const struct job *b, const struct job_key *key)
{
    const void *x = cfield_of(a, key), *y = cfield_of(b, key);
    switch (key->type) {
    case KEY_INT:
    case KEY_BOOL:
        return *(const int *)x == *(const int *)y;
    case KEY_DOUBLE:
        return *(const double *)x == *(const double *)y;
    case KEY_STRING:
    case KEY_ENUM:
        return strcmp(x, y) == 0;
    }
    return 0;
}

/* Error prefix for a bad key in job_finalize: "FILE:LINE: " when the key's current value came
 * from the job file the job was loaded from, "" otherwise (a default or a --set). */
static void key_origin(char *buf, size_t size, const struct job *job, const char *section,
                       const char *name)
{
    buf[0] = '\0';
    const struct job_key *key = find_key(section, name);
    OFFNAS_ASSERT(key);
    if (!job->source[0])
        return;
    struct ini_state st = { .path = job->source, .name = job->source, .find = key };
    char saved[1024];
    snprintf(saved, sizeof saved, "%s", offnas_last_error());
    if (parse_file(&st) >= 0 && st.found_line > 0) {
        struct job *scratch = offnas_malloc(sizeof *scratch);
        *scratch = *job;
        if (set_value(scratch, key, st.found_value) == 0 && same_value(scratch, job, key))
            snprintf(buf, size, "%s:%d: ", job->source, st.found_line);
        free(scratch);
    }
    offnas_error("%s", saved);
}

#define FINALIZE_ERROR(section, name, ...)                                                   \
    do {                                                                                     \
        char where_[JOB_PATH_MAX + 32], what_[1024];                                         \
        snprintf(what_, sizeof what_, __VA_ARGS__);                                          \
        key_origin(where_, sizeof where_, job, section, name);                               \
        return offnas_error("%s%s.%s: %s", where_, section, name, what_);                    \
    } while (0)

/* Splits a comma separated list in place into trimmed items. Returns the item count, or -1 if
 * there are more than max (items beyond max are not stored). An empty text has 0 items. */
static int split_list(char *text, char **items, int max)
{
    if (trim(text)[0] == '\0')
        return 0;
    int count = 0;
    for (char *p = text;;) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        if (count < max)
            items[count] = trim(p);
        count++;
        if (!comma)
            break;
        p = comma + 1;
    }
    return count > max ? -1 : count;
}

static int parse_int_strict(const char *text, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (end == text || *end != '\0' || errno == ERANGE || v < INT_MIN || v > INT_MAX ||
        !isdigit((unsigned char)text[0]))
        return -1;
    *out = (int)v;
    return 0;
}

/* net.layers: "C/S, C/S, ..." into desc's layer count, channels and strides. */
static int parse_layers(const struct job *job, struct net_desc *desc)
{
    char text[JOB_TEXT_MAX], *items[NET_MAX_LAYERS];
    snprintf(text, sizeof text, "%s", job->net_layers);
    int layers = split_list(text, items, NET_MAX_LAYERS);
    if (layers < 0)
        FINALIZE_ERROR("net", "layers", "more than %d layers", NET_MAX_LAYERS);
    if (layers == 0)
        FINALIZE_ERROR("net", "layers", "no layers (expected channels/stride, e.g. 16/1, 24/2)");
    int *channels = desc->layer_channels, *stride = desc->layer_stride;
    for (int l = 0; l < layers; l++) {
        char item[64];
        if (strlen(items[l]) >= sizeof item)
            FINALIZE_ERROR("net", "layers", "layer %d: '%.40s...' is not channels/stride",
                           l + 1, items[l]);
        strcpy(item, items[l]);
        char *slash = strchr(item, '/');
        if (slash)
            *slash = '\0';
        if (!slash || parse_int_strict(trim(item), &channels[l]) ||
            parse_int_strict(trim(slash + 1), &stride[l]))
            FINALIZE_ERROR("net", "layers",
                           "layer %d: '%s' is not channels/stride (e.g. 24/2)", l + 1, items[l]);
        if (channels[l] < 1 || channels[l] > NET_MAX_CHANNELS)
            FINALIZE_ERROR("net", "layers", "layer %d: %d channels, expected 1..%d", l + 1,
                           channels[l], NET_MAX_CHANNELS);
        if (stride[l] != 1 && stride[l] != 2)
            FINALIZE_ERROR("net", "layers", "layer %d: stride %d, expected 1 or 2", l + 1,
                           stride[l]);
    }
    desc->layer_count = layers;
    return 0;
}

/* net.ops: one op per layer of desc into desc->fixed_ops; skip only where the layer keeps
 * the shape. */
static int parse_ops(const struct job *job, struct net_desc *desc)
{
    char text[JOB_TEXT_MAX], *items[NET_MAX_LAYERS];
    int layers = desc->layer_count;
    snprintf(text, sizeof text, "%s", job->net_ops);
    int op_count = split_list(text, items, NET_MAX_LAYERS);
    if (op_count < 0 || op_count != layers) {
        if (op_count < 0)
            FINALIZE_ERROR("net", "ops", "more than %d ops for %d layers in net.layers",
                           NET_MAX_LAYERS, layers);
        FINALIZE_ERROR("net", "ops", "%d ops for %d layers in net.layers", op_count, layers);
    }
    for (int l = 0; l < layers; l++) {
        const struct op_spec *op = &desc->fixed_ops[l];
        if (op_spec_parse(&desc->fixed_ops[l], items[l]))
            FINALIZE_ERROR("net", "ops", "layer %d: %s", l + 1, offnas_last_error());
        int in_channels = l == 0 ? desc->stem_channels : desc->layer_channels[l - 1];
        int out_channels = desc->layer_channels[l], stride = desc->layer_stride[l];
        if (op->kind == OP_SKIP && (stride != 1 || out_channels != in_channels))
            FINALIZE_ERROR("net", "ops",
                           "layer %d: skip needs stride 1 and equal channels, but the layer "
                           "maps %d to %d channels with stride %d",
                           l + 1, in_channels, out_channels, stride);
    }
    return 0;
}

/* net.candidates into desc: the search space, no duplicates, at least one block. */
static int parse_candidates(const struct job *job, struct net_desc *desc)
{
    char text[JOB_TEXT_MAX], *items[NET_MAX_CANDIDATES];
    struct op_spec *candidates = desc->candidates;
    snprintf(text, sizeof text, "%s", job->net_candidates);
    int candidate_count = split_list(text, items, NET_MAX_CANDIDATES);
    if (candidate_count < 0)
        FINALIZE_ERROR("net", "candidates", "more than %d candidates", NET_MAX_CANDIDATES);
    if (candidate_count == 0)
        FINALIZE_ERROR("net", "candidates", "no candidates");
    int blocks = 0;
    for (int c = 0; c < candidate_count; c++) {
        if (op_spec_parse(&candidates[c], items[c]))
            FINALIZE_ERROR("net", "candidates", "%s", offnas_last_error());
        blocks += candidates[c].kind == OP_BLOCK;
        for (int d = 0; d < c; d++)
            if (candidates[d].kind == candidates[c].kind &&
                candidates[d].kernel == candidates[c].kernel &&
                candidates[d].expand == candidates[c].expand)
                FINALIZE_ERROR("net", "candidates", "'%s' appears twice", items[c]);
    }
    if (blocks == 0)
        FINALIZE_ERROR("net", "candidates",
                       "needs at least one block op (skip cannot change a layer's shape)");
    desc->candidate_count = candidate_count;
    return 0;
}

/* baseline.pin_split and pin_kept name a split of desc's layers and a channel count it has:
 * an inner split keeps 1..its channels, splits 0 and L + 1 send none. */
static int check_pinned_prune(const struct job *job, const struct net_desc *desc)
{
    int split = job->baseline_pin_split, kept = job->baseline_pin_kept, L = desc->layer_count;
    if (split > L + 1)
        FINALIZE_ERROR("baseline", "pin_split",
                       "%d is beyond the last split %d (the %d layers + 1)", split, L + 1, L);
    int channels = split >= 1 && split <= L ? desc->layer_channels[split - 1] : 0;
    if (split < 0 && kept > 0)
        FINALIZE_ERROR("baseline", "pin_kept", "%d without baseline.pin_split", kept);
    if (split >= 0 && channels == 0 && kept > 0)
        FINALIZE_ERROR("baseline", "pin_kept", "%d, but split %d sends no feature map", kept,
                       split);
    if (channels > 0 && (kept < 1 || kept > channels))
        FINALIZE_ERROR("baseline", "pin_kept", "%d is not in 1..%d (the channels of layer %d)",
                       kept, channels, split);
    return 0;
}

int job_finalize(struct job *job)
{
    if (job->data_resize < 8)
        FINALIZE_ERROR("data", "resize", "%d is below the minimum 8", job->data_resize);
    /* into a copy: a job that fails keeps its previous lists */
    struct net_desc desc = job->net;
    OFFNAS_TRY(parse_layers(job, &desc));
    OFFNAS_TRY(parse_ops(job, &desc));
    OFFNAS_TRY(parse_candidates(job, &desc));
    desc.shared = !strcmp(job->net_supernet, "shared");
    if (job->search_pin_split > desc.layer_count + 1)
        FINALIZE_ERROR("search", "pin_split", "%d is beyond the last split %d (the %d layers + 1)",
                       job->search_pin_split, desc.layer_count + 1, desc.layer_count);
    OFFNAS_TRY(check_pinned_prune(job, &desc));
    job->net = desc;
    return 0;
}

/* Written under a name of this process and renamed into place, so ranks that do this at once
 * never read each other's half-written file. */
int job_load_text(struct job *job, const char *text, const char *dir, const char *name)
{
    char path[JOB_PATH_MAX * 2], tmp[JOB_PATH_MAX * 2 + 32];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        return offnas_error("%s: cannot write: %s", path, strerror(errno));
    fputs(text, f);
    if (fclose(f)) {
        remove(tmp);
        return offnas_error("%s: cannot write: %s", path, strerror(errno));
    }
    job_defaults(job);
    /* errors name path, the file that holds the text once renamed, not tmp */
    int rc = job_load_as(job, tmp, path);
    if (rename(tmp, path))
        remove(tmp);
    return rc ? -1 : job_finalize(job);
}

int job_get(const struct job *job, const char *name, char *buf, size_t size)
{
    const char *dot = strchr(name, '.');
    char section[32];
    if (!dot || (size_t)(dot - name) >= sizeof section)
        return offnas_error("%s: not a SECTION.KEY name", name);
    snprintf(section, sizeof section, "%.*s", (int)(dot - name), name);
    const struct job_key *key = find_key(section, dot + 1);
    if (!key)
        return offnas_error("%s: unknown key", name);
    format_value(buf, size, job, key);
    return 0;
}
