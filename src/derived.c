/* derived: arch.json, the derived network of a search (see derived.h). */
#include "derived.h"

#include "check.h"
#include "common.h"
#include "op.h"
#include "train.h"

#include <errno.h>
#include <math.h>
#include <string.h>

/* Longest op name and its NUL: op_spec_name's buffer ("k7e8", "skip"). */
#define OP_NAME_MAX 16

/* How a JSON value is named in messages ("a string", "an integer", ...). */
static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* The member key of root, which must be there; NULL with "FILE: KEY: missing". */
static json_t *required(const json_t *root, const char *key, const char *path)
{
    json_t *v = json_object_get(root, key);
    if (!v)
        offnas_error("%s: %s: missing", path, key);
    return v;
}

/* *out = the integer v (field names it) if it is one in lo..hi; else -1 with an error. */
static int integer_in(const json_t *v, const char *field, int64_t lo, int64_t hi,
                      const char *path, int *out)
{
    if (!json_is_integer(v))
        return offnas_error("%s: %s: expected an integer, got %s", path, field, json_kind(v));
    return check_int64(path, field, json_integer_value(v), lo, hi, out);
}

/* *out = the string member key of root, or fallback when absent; -1 when it is there but
 * not a string or not shorter than size bytes (size 0: any length). */
static int optional_string(const json_t *root, const char *key, const char *fallback,
                           size_t size, const char *path, const char **out)
{
    json_t *v = json_object_get(root, key);
    *out = fallback;
    if (!v)
        return 0;
    if (!json_is_string(v))
        return offnas_error("%s: %s: expected a string, got %s", path, key, json_kind(v));
    if (size && check_string(path, key, json_string_value(v), size))
        return -1;
    *out = json_string_value(v);
    return 0;
}

/* ops: 1..NET_MAX_LAYERS op names, each one offnas can parse, joined into d->ops. */
static int read_ops(struct derived *d, const json_t *ops, const char *path)
{
    if (!json_is_array(ops))
        return offnas_error("%s: ops: expected an array, got %s", path, json_kind(ops));
    size_t count = json_array_size(ops);
    if (count < 1 || count > NET_MAX_LAYERS)
        return offnas_error("%s: ops: %zu ops, expected 1..%d", path, count, NET_MAX_LAYERS);
    size_t len = 0, i;
    json_t *v;
    json_array_foreach(ops, i, v)
    {
        char field[32];
        snprintf(field, sizeof field, "ops[%zu]", i);
        if (!json_is_string(v))
            return offnas_error("%s: %s: expected a string, got %s", path, field, json_kind(v));
        const char *name = json_string_value(v);
        struct op_spec spec;
        if (strlen(name) >= OP_NAME_MAX || op_spec_parse(&spec, name))
            return offnas_error("%s: %s: '%.40s%s' is not an op name", path, field, name,
                                strlen(name) > 40 ? "..." : "");
        /* at most NET_MAX_LAYERS * (OP_NAME_MAX + 2) characters: always fits d->ops */
        len += (size_t)snprintf(d->ops + len, sizeof d->ops - len, "%s%s", i ? ", " : "", name);
    }
    return 0;
}

/* split_point, total_channels, kept_channels and channels into d->split: the split within
 * 0..NET_MAX_LAYERS + 1 (derived_job checks it against the layers), each channel an index
 * below total_channels once, and kept_channels their count. */
static int read_split(struct derived *d, const json_t *root, const char *path)
{
    json_t *split = required(root, "split_point", path), *total = NULL, *kept = NULL,
           *chans = NULL;
    if (!split || !(total = required(root, "total_channels", path)) ||
        !(kept = required(root, "kept_channels", path)) ||
        !(chans = required(root, "channels", path)))
        return -1;
    int channels, kept_count;
    OFFNAS_TRY(integer_in(split, "split_point", 0, NET_MAX_LAYERS + 1, path, &d->split.split));
    OFFNAS_TRY(integer_in(total, "total_channels", 0, NET_MAX_CHANNELS, path, &channels));
    OFFNAS_TRY(integer_in(kept, "kept_channels", 0, channels, path, &kept_count));
    d->total_channels = channels;
    if (!json_is_array(chans))
        return offnas_error("%s: channels: expected an array, got %s", path, json_kind(chans));
    size_t i;
    json_t *v;
    json_array_foreach(chans, i, v)
    {
        char field[32];
        int c;
        snprintf(field, sizeof field, "channels[%zu]", i);
        if (channels == 0)
            return offnas_error("%s: %s: a channel where total_channels is 0", path, field);
        OFFNAS_TRY(integer_in(v, field, 0, channels - 1, path, &c));
        if (d->split.mask[c] != 0.0f)
            return offnas_error("%s: %s: channel %d is listed twice", path, field, c);
        d->split.mask[c] = 1.0f;
        d->split.kept++;
    }
    if (d->split.kept != kept_count)
        return offnas_error("%s: kept_channels: %d, but channels lists %d", path, kept_count,
                            d->split.kept);
    return 0;
}

int derived_load(struct derived *d, const char *path)
{
    memset(d, 0, sizeof *d);
    if (check_string(path, "path", path, sizeof d->path))
        return -1;
    snprintf(d->path, sizeof d->path, "%s", path);
    json_error_t err;
    d->root = json_load_file(path, 0, &err);
    if (!d->root && err.line < 1)
        return offnas_error("%s: cannot read: %s", path, strerror(errno));
    if (!d->root)
        return offnas_error("%s: line %d column %d: %.80s", path, err.line, err.column,
                            err.text);
    if (!json_is_object(d->root))
        return offnas_error("%s: expected an object, got %s", path, json_kind(d->root));
    json_t *ops = required(d->root, "ops", path), *job = NULL;
    if (!ops || read_ops(d, ops, path) || read_split(d, d->root, path) ||
        !(job = required(d->root, "job", path)))
        return -1;
    if (!json_is_string(job))
        return offnas_error("%s: job: expected a string, got %s", path, json_kind(job));
    d->job_text = json_string_value(job);
    OFFNAS_TRY(optional_string(d->root, "lut_device", "", JOB_PATH_MAX, path, &d->lut_device));
    OFFNAS_TRY(optional_string(d->root, "lut_edge", "", JOB_PATH_MAX, path, &d->lut_edge));
    OFFNAS_TRY(optional_string(d->root, "method", "search", 0, path, &d->method));
    static const char *const methods[] = {"search", "neurosurgeon", "nas-then-split",
                                          "prune-split"};
    for (size_t m = 0; m < OFFNAS_ARRAY_LEN(methods); m++)
        if (!strcmp(d->method, methods[m]))
            return 0;
    return offnas_error("%s: method: '%.40s' is not one of search, neurosurgeon, "
                        "nas-then-split, prune-split",
                        path, d->method);
}

/* A failure of building the job from arch.json's parts, named by the file and the part
 * unless the message already starts with the file. Returns -1. */
static int job_error(const struct derived *d, const char *part)
{
    if (strncmp(offnas_last_error(), d->path, strlen(d->path)) != 0)
        offnas_error_context("%s: %s", d->path, part);
    return -1;
}

int derived_job(struct job *job, const struct derived *d, const char *dir,
                const char *const *sets, int set_count)
{
    if (job_load_text(job, d->job_text, dir, "search-job.ini"))
        return job_error(d, "job");
    char set[JOB_TEXT_MAX + 16];
    snprintf(set, sizeof set, "net.ops=%s", d->ops);
    if (job_set(job, set))
        return job_error(d, "ops");
    for (int i = 0; i < set_count; i++)
        OFFNAS_TRY(job_set(job, sets[i]));
    if (job_finalize(job))
        return job_error(d, "ops");
    int L = job->net.layer_count, split = d->split.split;
    if (split > L + 1)
        return offnas_error("%s: split_point: %d is not in 0..%d", d->path, split, L + 1);
    int layer_channels = split >= 1 && split <= L ? job->net.layer_channels[split - 1] : 0;
    if (d->total_channels != layer_channels && layer_channels == 0)
        return offnas_error("%s: total_channels: %d, but split_point %d sends no feature map",
                            d->path, d->total_channels, split);
    if (d->total_channels != layer_channels)
        return offnas_error("%s: total_channels: %d, but layer %d has %d channels", d->path,
                            d->total_channels, split, layer_channels);
    if (split >= 1 && split <= L && d->split.kept == 0)
        return offnas_error("%s: channels: split_point %d sends no channels", d->path, split);
    return 0;
}

json_t *derived_latency_json(const struct arch_latency *l)
{
    json_t *o = json_object();
    json_object_set_new(o, "device", json_real(l->device));
    json_object_set_new(o, "transfer", json_real(l->transfer));
    json_object_set_new(o, "edge", json_real(l->edge));
    json_object_set_new(o, "total", json_real(l->total));
    return o;
}

static json_t *number_or_null(double x)
{
    return isfinite(x) ? json_real(x) : json_null();
}

/* split_point, kept/total channels, channel list, bytes and latency of one choice. */
static json_t *choice_object(const struct derive_choice *c)
{
    json_t *o = json_object(), *chans = json_array();
    for (int i = 0; i < c->total; i++)
        if (c->keep[i])
            json_array_append_new(chans, json_integer(i));
    json_object_set_new(o, "split_point", json_integer(c->split));
    json_object_set_new(o, "kept_channels", json_integer(c->kept));
    json_object_set_new(o, "total_channels", json_integer(c->total));
    json_object_set_new(o, "channels", chans);
    json_object_set_new(o, "bytes_sent", json_real(c->bytes));
    json_object_set_new(o, "predicted_latency_ms", derived_latency_json(&c->latency));
    json_object_set_new(o, "supernet_accuracy", number_or_null(c->accuracy));
    return o;
}

/* The per-split table of the accuracy rule: what derive measured and predicted at each split. */
static json_t *splits_array(const struct derive_result *r, int splits)
{
    json_t *a = json_array();
    for (int s = 0; s < splits; s++) {
        const struct derive_split *sp = &r->splits[s];
        json_t *o = json_object();
        json_object_set_new(o, "split_point", json_integer(s));
        json_object_set_new(o, "kept_channels", json_integer(sp->kept));
        json_object_set_new(o, "total_channels", json_integer(sp->total));
        json_object_set_new(o, "supernet_accuracy", number_or_null(sp->accuracy));
        json_object_set_new(o, "latency_ms", json_real(sp->latency_ms));
        json_object_set_new(o, "measurements", json_integer(sp->evaluated));
        json_object_set_new(o, "skipped", json_boolean(sp->pruned));
        json_array_append_new(a, o);
    }
    return a;
}

int derived_write(const char *path, const struct derived_record *rec)
{
    const struct net *net = rec->space;
    const struct derive_choice *c = rec->choice;
    json_t *root = json_object(), *names = json_array();
    char name[16];
    for (int l = 0; l < net->layer_count; l++)
        json_array_append_new(names,
                              json_string(op_spec_name(&net->layers[l].cand[rec->r->ops[l]].spec, name)));
    json_t *chosen = choice_object(c);
    json_object_set_new(root, "method", json_string(rec->method));
    json_object_set_new(root, "rule", json_string(rec->rule));
    json_object_set_new(root, "ops", names);
    json_object_set_new(root, "layers", json_string(rec->layers));
    /* the recorded choice at the top level: what train --arch and eval read */
    const char *fields[] = {"split_point", "kept_channels", "total_channels", "channels",
                            "bytes_sent", "predicted_latency_ms"};
    for (size_t i = 0; i < OFFNAS_ARRAY_LEN(fields); i++)
        json_object_set(root, fields[i], json_object_get(chosen, fields[i]));
    json_object_set_new(root, "input_side", json_integer(rec->input_side));
    json_object_set_new(root, "wire", json_string(rec->wire));
    json_object_set_new(root, "network", json_string(rec->network));
    json_object_set_new(root, "all_device_ms", json_real(rec->all_device_ms));
    json_object_set_new(root, "all_edge_ms", json_real(rec->all_edge_ms));
    if (!strcmp(rec->rule, "accuracy") || !strcmp(rec->rule, "argmax")) {
        json_t *d = json_object();
        json_object_set_new(d, "max_accuracy_drop", json_real(rec->max_accuracy_drop));
        json_object_set_new(d, "unmasked_supernet_accuracy",
                            number_or_null(rec->r->unmasked_accuracy));
        json_object_set_new(d, "measurements", json_integer(rec->r->measurements));
        json_object_set_new(d, "accuracy_rule", choice_object(&rec->r->chosen));
        json_object_set_new(d, "argmax_rule", choice_object(&rec->r->argmax));
        if (rec->r->measurements)
            json_object_set_new(d, "splits", splits_array(rec->r, net->layer_count + 2));
        json_object_set_new(root, "derive", d);
    }
    json_decref(chosen);
    json_object_set_new(root, "search_run", json_string(rec->search_run));
    json_object_set_new(root, "lut_device", json_string(rec->lut_device));
    json_object_set_new(root, "lut_edge", json_string(rec->lut_edge));
    json_object_set_new(root, "job", json_string(rec->job_text));
    int rc = train_write_json(root, path);
    json_decref(root);
    return rc;
}
