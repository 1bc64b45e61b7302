/* cmd_search: `offnas search`, `offnas derive`, `offnas train --arch` and `offnas eval`: the
 * search, fixing its choices into arch.json, retraining the derived network with its split and
 * channel mask, and reporting its accuracy and latency breakdown. */
#define _GNU_SOURCE
#include "arch.h"
#include "cmd.h"
#include "common.h"
#include "dist.h"
#include "latency.h"
#include "op.h"
#include "search.h"
#include "train.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>
#include <unistd.h>

static const char SEARCH_USAGE[] =
    "usage: offnas search --job FILE --out DIR [--set SECTION.KEY=VALUE ...]\n"
    "       offnas search --resume --out DIR [--job FILE] [--set ...]\n"
    "\n"
    "Searches ops, split point and sent channels together: weights with SGD on the training\n"
    "split, alpha/beta/gamma with Adam on the validation split, loss = CE + latency term from\n"
    "the device and edge profiles ([latency]) and the link ([network]). Writes DIR/log.csv (per\n"
    "epoch: E[T] and its parts, split distribution, kept channels, table versions),\n"
    "DIR/checkpoint.h5 (every cluster.checkpoint_every steps and each epoch; the previous one\n"
    "kept as checkpoint.prev.h5), DIR/lut_device.h5 and DIR/lut_edge.h5.\n"
    "--resume continues from the newest readable checkpoint (its job, unless --job is given).\n"
    "SIGTERM or SIGUSR1: writes a checkpoint and exits with status 3. Under mpirun or srun the\n"
    "ranks are data-parallel trainers, and the last ones profilers when cluster.profilers\n"
    "names them. Then: offnas derive --run DIR.\n";

/* Reads the job text a checkpoint of dir holds (the newest readable one) into job, then the
 * --set overrides. */
static int job_from_checkpoint(struct job *job, const char *dir, const struct cmd_job_options *o)
{
    char path[JOB_PATH_MAX * 2 + 16];
    snprintf(path, sizeof path, "%s/checkpoint.h5", dir);
    char *text = search_checkpoint_job(path);
    if (!text) {
        snprintf(path, sizeof path, "%s/checkpoint.prev.h5", dir);
        text = search_checkpoint_job(path);
    }
    if (!text)
        return offnas_error("%s: --resume: no readable checkpoint (%s)", dir, offnas_last_error());
    char tmp[] = "/tmp/offnas-job-XXXXXX";
    int fd = mkstemp(tmp);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        free(text);
        return offnas_error("%s: cannot write a temporary job file: %s", tmp, strerror(errno));
    }
    fputs(text, f);
    int rc = fclose(f);
    job_defaults(job);
    rc = rc || job_load(job, tmp);
    remove(tmp);
    /* keep naming the file the run was started from, as the checkpoint's text does */
    const char *from = "# offnas job from ";
    if (!rc && !strncmp(text, from, strlen(from)))
        snprintf(job->source, sizeof job->source, "%.*s", (int)strcspn(text + strlen(from), "\n"),
                 text + strlen(from));
    free(text);
    for (int i = 0; !rc && i < o->set_count; i++)
        rc = job_set(job, o->sets[i]);
    return rc || job_finalize(job) ? -1 : 0;
}

int cmd_search(int argc, char **argv)
{
    struct cmd_job_options opts = {0};
    const char *out = NULL;
    int resume = 0;
    const struct cmd_option options[] = {{"--out", CMD_STRING, &out, 0, 0},
                                         {"--resume", CMD_FLAG, &resume, 0, 0}};
    int status = cmd_parse(argc, argv, "search", SEARCH_USAGE, &opts, options, 2);
    if (status != CMD_CONTINUE)
        return status;
    if (!out)
        return cmd_usage_error("search: --out DIR is required");
    struct job job;
    if (resume && !opts.job_path) {
        if (job_from_checkpoint(&job, out, &opts)) {
            fprintf(stderr, "offnas: %s\n", offnas_last_error());
            return 1;
        }
    } else if (cmd_load_job(&job, &opts)) {
        return 1;
    }
    status = cmd_join_ranks(&job, NULL, 1);
    if (status != CMD_CONTINUE)
        return status;
    int end = search_run(&job, out, resume);
    if (end == SEARCH_FAILED) {
        fprintf(stderr, "offnas: %s\n", offnas_last_error());
        return 1;
    }
    if (end == SEARCH_STOPPED)
        return DIST_EXIT_STOPPED;
    if (dist_get()->rank == 0)
        printf("search: done; next: offnas derive --run %s\n", out);
    return 0;
}

static const char PROFILER_USAGE[] =
    "usage: mpirun ... : -np 1 offnas profiler --job FILE --device mobile|edge [--set K=V ...]\n"
    "\n"
    "A profiler rank of an MPMD search: measures every (layer, op) of the job's search space\n"
    "on this machine at batch 1, broadcasts the table to the trainers and saves it to\n"
    "cluster.profile_dir; then measures the network the trainers prefer each epoch, end to\n"
    "end, and broadcasts corrected tables until the search ends.\n";

int cmd_profiler(int argc, char **argv)
{
    struct cmd_job_options opts = {0};
    const char *device = NULL;
    const struct cmd_option options[] = {{"--device", CMD_STRING, &device, 0, 0}};
    int status = cmd_parse(argc, argv, "profiler", PROFILER_USAGE, &opts, options, 1);
    if (status != CMD_CONTINUE)
        return status;
    if (!device || (strcmp(device, "mobile") && strcmp(device, "edge")))
        return cmd_usage_error("profiler: --device mobile or --device edge is required");
    struct job job;
    if (cmd_load_job(&job, &opts))
        return 1;
    status = cmd_join_ranks(&job, device, 0);
    return status == CMD_CONTINUE ? 0 : status;
}

/* Builds a job from INI text by way of a file in dir (kept: it documents the run). The file
 * is written under a name of this process and renamed into place, so ranks that do this at
 * once never read each other's half-written file. */
static int job_from_text(struct job *job, const char *text, const char *dir, const char *name)
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
    int rc = job_load(job, tmp);
    if (rename(tmp, path))
        remove(tmp);
    return rc ? -1 : job_finalize(job);
}

static json_t *latency_json(const struct arch_latency *l)
{
    json_t *o = json_object();
    json_object_set_new(o, "device", json_real(l->device));
    json_object_set_new(o, "transfer", json_real(l->transfer));
    json_object_set_new(o, "edge", json_real(l->edge));
    json_object_set_new(o, "total", json_real(l->total));
    return o;
}

static const char DERIVE_USAGE[] =
    "usage: offnas derive --run DIR\n"
    "\n"
    "Fixes the choices of a search: the most likely op per layer, the most likely split, and\n"
    "the channels with keep probability > 0.5 at that split. Writes DIR/arch.json with the\n"
    "predicted latency of the derived network (and of the same network all on the device and\n"
    "all on the edge). Then: offnas train --arch DIR/arch.json --out DIR2.\n";

int cmd_derive(int argc, char **argv)
{
    const char *run = NULL;
    const struct cmd_option options[] = {{"--run", CMD_STRING, &run, 0, 0}};
    int status = cmd_parse(argc, argv, "derive", DERIVE_USAGE, NULL, options, 1);
    if (status != CMD_CONTINUE)
        return status;
    if (!run)
        return cmd_usage_error("derive: --run DIR is required");
    char path[JOB_PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/checkpoint.h5", run);
    char *text = search_checkpoint_job(path);
    struct job job;
    if (!text || job_from_text(&job, text, run, "job.ini")) {
        free(text);
        fprintf(stderr, "offnas: %s\n", offnas_last_error());
        return 1;
    }
    struct net *net = net_create(&job, 1, job.data_resize, 1, 10, 0, 1);
    struct arch arch = {0};
    struct latency_table *tables = offnas_calloc(2, sizeof *tables);
    struct search_state state = {0};
    int rc = 1;
    if (!net)
        goto done;
    arch_init(&arch, net, 0.0f);
    if (search_load_checkpoint(path, net, &arch, &state))
        goto done;
    char lut_dev[JOB_PATH_MAX * 2], lut_edge[JOB_PATH_MAX * 2];
    snprintf(lut_dev, sizeof lut_dev, "%s/lut_device.h5", run);
    snprintf(lut_edge, sizeof lut_edge, "%s/lut_edge.h5", run);
    if (latency_load(&tables[0], lut_dev, net) || latency_load(&tables[1], lut_edge, net))
        goto done;
    struct arch_cost cost = {&tables[0], &tables[1], job.latency_device_scale,
                             job.latency_edge_scale, {{0}, 0, 0}, latency_wire_bytes(job.search_wire)};
    if (latency_link_from_job(&cost.link, &job))
        goto done;
    int ops[JOB_MAX_LAYERS], split, kept;
    float mask[1024];
    arch_derive(&arch, ops, &split, mask, &kept);
    struct arch_latency lat = arch_network_latency(&arch, &cost, ops, split, kept);
    struct arch_latency dev = arch_network_latency(&arch, &cost, ops, net->layer_count + 1, 0);
    struct arch_latency edge = arch_network_latency(&arch, &cost, ops, 0, 0);

    json_t *root = json_object(), *names = json_array(), *chans = json_array();
    char opnames[JOB_TEXT_MAX] = "", name[16];
    for (int l = 0; l < net->layer_count; l++) {
        op_spec_name(&net->layers[l].cand[ops[l]].spec, name);
        json_array_append_new(names, json_string(name));
        strcat(opnames, l ? ", " : "");
        strcat(opnames, name);
    }
    int total = split >= 1 && split <= net->layer_count ? arch.channels[split] : 0;
    for (int c = 0; c < total; c++)
        if (mask[c] != 0.0f)
            json_array_append_new(chans, json_integer(c));
    json_object_set_new(root, "ops", names);
    json_object_set_new(root, "layers", json_string(job.net_layers));
    json_object_set_new(root, "split_point", json_integer(split));
    json_object_set_new(root, "kept_channels", json_integer(kept));
    json_object_set_new(root, "total_channels", json_integer(total));
    json_object_set_new(root, "channels", chans);
    json_object_set_new(root, "input_side", json_integer(job.data_resize));
    json_object_set_new(root, "wire", json_string(job.search_wire));
    json_object_set_new(root, "network", json_string(cost.link.name));
    json_object_set_new(root, "predicted_latency_ms", latency_json(&lat));
    json_object_set_new(root, "all_device_ms", json_real(dev.total));
    json_object_set_new(root, "all_edge_ms", json_real(edge.total));
    json_object_set_new(root, "search_run", json_string(run));
    json_object_set_new(root, "lut_device", json_string(lut_dev));
    json_object_set_new(root, "lut_edge", json_string(lut_edge));
    json_object_set_new(root, "job", json_string(text));
    snprintf(path, sizeof path, "%s/arch.json", run);
    int wrc = train_write_json(root, path);
    json_decref(root);
    if (wrc)
        goto done;
    printf("ops: %s\nsplit_point: %d (of 0..%d)\nkept_channels: %d of %d\n"
           "predicted_ms: %.3f (device %.3f, transfer %.3f, edge %.3f); all on device %.3f, all "
           "on edge %.3f\narch: %s\n",
           opnames, split, net->layer_count + 1, kept, total, lat.total, lat.device,
           lat.transfer, lat.edge, dev.total, edge.total, path);
    rc = 0;
done:
    if (rc)
        fprintf(stderr, "offnas: %s\n", offnas_last_error());
    free(text);
    free(tables);
    arch_free(&arch);
    net_free(net);
    return rc;
}

/* Reads arch.json: the job text, ops, split and channel mask. */
struct derived {
    json_t *root;
    const char *job_text;
    char ops[JOB_TEXT_MAX];
    struct train_split split;
    const char *lut_device, *lut_edge;
};

static int derived_load(struct derived *d, const char *path)
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
    if (channels < 0 || channels > 1024)
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

/* Builds the job of a derived network: the search's job, its ops as net.ops, then overrides. */
static int derived_job(struct job *job, struct derived *d, const char *dir,
                       const struct cmd_job_options *opts)
{
    OFFNAS_TRY(job_from_text(job, d->job_text, dir, "search-job.ini"));
    char set[JOB_TEXT_MAX + 16];
    snprintf(set, sizeof set, "net.ops=%s", d->ops);
    OFFNAS_TRY(job_set(job, set));
    for (int i = 0; i < opts->set_count; i++)
        OFFNAS_TRY(job_set(job, opts->sets[i]));
    OFFNAS_TRY(job_finalize(job));
    int L = job->layer_count;
    if (d->split.split < 0 || d->split.split > L + 1)
        return offnas_error("arch.json: split_point %d is not in 0..%d", d->split.split, L + 1);
    if (d->split.split >= 1 && d->split.split <= L && d->split.kept == 0)
        return offnas_error("arch.json: split_point %d sends no channels", d->split.split);
    return 0;
}

int cmd_train_arch(const char *arch_path, const char *out, const struct cmd_job_options *opts)
{
    struct derived d;
    struct job job;
    struct train_result r;
    int rc = derived_load(&d, arch_path);
    if (!rc)
        rc = train_mkdirs(out);
    if (!rc)
        rc = derived_job(&job, &d, out, opts);
    if (!rc) {
        char path[JOB_PATH_MAX * 2];
        snprintf(path, sizeof path, "%s/arch.json", out);
        rc = train_write_json(d.root, path);
    }
    int status = rc ? CMD_CONTINUE : cmd_join_ranks(&job, NULL, 0);
    if (status != CMD_CONTINUE) {
        json_decref(d.root);
        return status;
    }
    if (!rc)
        rc = train_fixed(&job, &d.split, out, &r);
    json_decref(d.root);
    if (rc) {
        fprintf(stderr, "offnas: %s\n", offnas_last_error());
        return 1;
    }
    if (dist_get()->rank == 0)
        printf("test_accuracy: %.4f\nval_accuracy: %.4f\ntrain_seconds: %.1f\nnext: offnas eval --run "
           "%s\n",
           r.test_accuracy, r.val_accuracy, r.train_seconds, out);
    return 0;
}

static const char EVAL_USAGE[] =
    "usage: offnas eval --run DIR [--network NAME] [--set SECTION.KEY=VALUE ...]\n"
    "\n"
    "Evaluates a derived network trained by `offnas train --arch`: test accuracy, and the\n"
    "predicted latency of its split (device, transfer, edge) beside the same network all on the\n"
    "device and all on the edge, on the job's network or NAME (3g, lte, wifi, 5g). Writes\n"
    "DIR/summary.json.\n";

int cmd_eval(int argc, char **argv)
{
    struct cmd_job_options opts = {0};
    const char *run = NULL, *network = NULL;
    const struct cmd_option options[] = {{"--run", CMD_STRING, &run, 0, 0},
                                         {"--network", CMD_STRING, &network, 0, 0}};
    int status = cmd_parse(argc, argv, "eval", EVAL_USAGE, &opts, options, 2);
    if (status != CMD_CONTINUE)
        return status;
    if (!run)
        return cmd_usage_error("eval: --run DIR is required");
    char path[JOB_PATH_MAX * 2], set[64];
    if (network) {
        snprintf(set, sizeof set, "network.preset=%s", network);
        if (opts.set_count >= (int)OFFNAS_ARRAY_LEN(opts.sets))
            return cmd_usage_error("eval: too many --set options");
        opts.sets[opts.set_count++] = set;
    }
    struct derived d;
    struct job job;
    struct net *fixed = NULL, *super = NULL;
    struct latency_table *tables = offnas_calloc(2, sizeof *tables);
    struct train_data td = {0};
    struct arch arch = {0};
    json_t *summary = NULL;
    int rc = 1;
    snprintf(path, sizeof path, "%s/arch.json", run);
    if (derived_load(&d, path) || derived_job(&job, &d, run, &opts))
        goto done;
    op_set_threads(job.train_threads);
    if (train_data_load(&td, &job, NULL))
        goto done;
    fixed = net_create(&job, 256, job.data_resize, td.test.channels, td.test.classes, 1, 1);
    super = net_create(&job, 1, job.data_resize, td.test.channels, td.test.classes, 0, 1);
    if (!fixed || !super)
        goto done;
    snprintf(path, sizeof path, "%s/model.h5", run);
    if (train_load_model(fixed, path))
        goto done;
    double accuracy;
    train_evaluate(fixed, &td.test, job.data_resize, &accuracy, NULL);
    if (latency_load(&tables[0], d.lut_device, super) || latency_load(&tables[1], d.lut_edge, super))
        goto done;
    arch_init(&arch, super, 0.0f);
    struct arch_cost cost = {&tables[0], &tables[1], job.latency_device_scale,
                             job.latency_edge_scale, {{0}, 0, 0}, latency_wire_bytes(job.search_wire)};
    if (latency_link_from_job(&cost.link, &job))
        goto done;
    int ops[JOB_MAX_LAYERS], L = super->layer_count;
    for (int l = 0; l < L; l++) {
        ops[l] = net_find_candidate(super, l, &job.fixed_ops[l]);
        if (ops[l] < 0) {
            offnas_error("%s: op %d is not a candidate of the search space", run, l + 1);
            goto done;
        }
    }
    int split = d.split.split, total = split >= 1 && split <= L ? arch.channels[split] : 0;
    int kept = total ? d.split.kept : 0;
    struct arch_latency lat = arch_network_latency(&arch, &cost, ops, split, kept);
    struct arch_latency dev = arch_network_latency(&arch, &cost, ops, L + 1, 0);
    struct arch_latency edge = arch_network_latency(&arch, &cost, ops, 0, 0);
    double bytes = split == 0 ? arch.input_bytes
                   : split <= L ? (double)arch.side[split] * arch.side[split] * kept *
                                      cost.wire_bytes
                                : 0.0;

    snprintf(path, sizeof path, "%s/summary.json", run);
    json_error_t err;
    summary = json_load_file(path, 0, &err);
    if (!summary)
        summary = json_object();
    json_object_set_new(summary, "test_accuracy", json_real(accuracy));
    json_object_set_new(summary, "split_point", json_integer(split));
    json_object_set_new(summary, "kept_channels", json_integer(kept));
    json_object_set_new(summary, "total_channels", json_integer(total));
    json_object_set_new(summary, "bytes_sent", json_real(bytes));
    json_object_set_new(summary, "wire", json_string(job.search_wire));
    json_t *ms = latency_json(&lat);
    json_object_set_new(ms, "all_device", json_real(dev.total));
    json_object_set_new(ms, "all_edge", json_real(edge.total));
    json_object_set_new(summary, "latency_ms", ms);
    json_t *net = json_object();
    json_object_set_new(net, "name", json_string(cost.link.name));
    json_object_set_new(net, "bandwidth_mbps", json_real(cost.link.bandwidth_mbps));
    json_object_set_new(net, "rtt_ms", json_real(cost.link.rtt_ms));
    json_object_set_new(summary, "network", net);
    json_object_set_new(summary, "device_profile", json_string(tables[0].device));
    json_object_set_new(summary, "edge_profile", json_string(tables[1].device));
    json_object_set_new(summary, "device_scale", json_real(job.latency_device_scale));
    json_object_set_new(summary, "edge_scale", json_real(job.latency_edge_scale));
    json_object_set_new(summary, "input_side", json_integer(job.data_resize));
    json_object_set_new(summary, "ops", json_string(job.net_ops));
    if (train_write_json(summary, path))
        goto done;
    printf("test_accuracy: %.4f\nsplit_point: %d\nkept_channels: %d of %d\nbytes_sent: %.0f\n"
           "latency_ms: total %.3f (device %.3f, transfer %.3f, edge %.3f); all on device %.3f, "
           "all on edge %.3f (%s)\nsummary: %s\n",
           accuracy, split, kept, total, bytes, lat.total, lat.device, lat.transfer, lat.edge,
           dev.total, edge.total, cost.link.name, path);
    rc = 0;
done:
    if (rc)
        fprintf(stderr, "offnas: %s\n", offnas_last_error());
    json_decref(summary);
    json_decref(d.root);
    arch_free(&arch);
    net_free(fixed);
    net_free(super);
    free(tables);
    train_data_free(&td);
    return rc;
}
