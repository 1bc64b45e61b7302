/* derived: arch.json, the derived network of a search (see derived.h). */
#include "derived.h"

#include "common.h"
#include "op.h"
#include "train.h"

#include <math.h>

#include <errno.h>
#include <string.h>

int derived_load(struct derived *d, const char *path)
{
    memset(d, 0, sizeof *d);
    json_error_t err;
    d->root = json_load_file(path, 0, &err);
    if (!d->root && err.line < 1)
        return offnas_error("%s: cannot read: %s", path, strerror(errno));
    if (!d->root)
        return offnas_error("%s:%d: %s", path, err.line, err.text);
    json_t *ops = json_object_get(d->root, "ops"), *chans = json_object_get(d->root, "channels");
    json_t *split = json_object_get(d->root, "split_point"), *job = json_object_get(d->root, "job");
    json_t *total = json_object_get(d->root, "total_channels");
    if (!json_is_array(ops) || !json_is_array(chans) || !json_is_integer(split) ||
        !json_is_string(job) || !json_is_integer(total))
        return offnas_error("%s: not an arch.json (needs ops, channels, split_point, "
                            "total_channels, job)", path);
    size_t i;
    json_t *v;
    json_array_foreach(ops, i, v)
    {
        if (!json_is_string(v) || strlen(d->ops) + 24 > sizeof d->ops)
            return offnas_error("%s: ops[%zu] is not an op name", path, i);
        strcat(d->ops, i ? ", " : "");
        strcat(d->ops, json_string_value(v));
    }
    d->split.split = (int)json_integer_value(split);
    int channels = (int)json_integer_value(total);
    if (channels < 0 || channels > NET_MAX_CHANNELS)
        return offnas_error("%s: total_channels %d is out of range", path, channels);
    json_array_foreach(chans, i, v)
    {
        json_int_t c = json_is_integer(v) ? json_integer_value(v) : -1;
        if (c < 0 || c >= channels)
            return offnas_error("%s: channels[%zu] is not a channel index below %d", path, i,
                                channels);
        d->split.mask[c] = 1.0f;
        d->split.kept++;
    }
    d->job_text = json_string_value(job);
    json_t *ld = json_object_get(d->root, "lut_device"), *le = json_object_get(d->root, "lut_edge");
    d->lut_device = json_is_string(ld) ? json_string_value(ld) : "";
    d->lut_edge = json_is_string(le) ? json_string_value(le) : "";
    json_t *method = json_object_get(d->root, "method");
    d->method = json_is_string(method) ? json_string_value(method) : "search";
    return 0;
}

int derived_job(struct job *job, const struct derived *d, const char *dir,
                const char *const *sets, int set_count)
{
    OFFNAS_TRY(job_load_text(job, d->job_text, dir, "search-job.ini"));
    char set[JOB_TEXT_MAX + 16];
    snprintf(set, sizeof set, "net.ops=%s", d->ops);
    OFFNAS_TRY(job_set(job, set));
    for (int i = 0; i < set_count; i++)
        OFFNAS_TRY(job_set(job, sets[i]));
    OFFNAS_TRY(job_finalize(job));
    int L = job->net.layer_count;
    if (d->split.split < 0 || d->split.split > L + 1)
        return offnas_error("arch.json: split_point %d is not in 0..%d", d->split.split, L + 1);
    if (d->split.split >= 1 && d->split.split <= L && d->split.kept == 0)
        return offnas_error("arch.json: split_point %d sends no channels", d->split.split);
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
