/* derived: arch.json, the derived network of a search (see derived.h). */
#include "derived.h"

#include "common.h"

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
