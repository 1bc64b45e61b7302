/* baseline: neurosurgeon, nas-then-split and prune-split (see baseline.h). */
#include "baseline.h"

#include "common.h"
#include "derive.h"
#include "derived.h"
#include "latency.h"
#include "search.h"
#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const BASELINE_NAMES[BASELINE_COUNT] = {"neurosurgeon", "nas-then-split",
                                                    "prune-split"};
_Static_assert(OFFNAS_ARRAY_LEN(BASELINE_NAMES) == BASELINE_COUNT, "a name per baseline");

int baseline_parse(const char *name)
{
    for (int i = 0; i < BASELINE_COUNT; i++)
        if (!strcmp(name, BASELINE_NAMES[i]))
            return i;
    return -1;
}

/* What every baseline needs: the search space, its tables (loaded, or measured here and
 * saved) and the link. */
struct space {
    struct net *super;
    struct arch arch;
    struct latency_table tables[2];
    struct arch_cost cost;
    char lut_device[JOB_PATH_MAX * 2], lut_edge[JOB_PATH_MAX * 2];
};

static int space_open(struct space *sp, const struct job *job, const char *out_dir)
{
    sp->super = net_create(&job->net, 1, job->data_resize, 1, 10, 0, 1);
    if (!sp->super)
        return -1;
    arch_init(&sp->arch, sp->super, 0.0f);
    OFFNAS_TRY(search_costs(&sp->tables[0], &sp->tables[1], &sp->cost, job, sp->super, NULL));
    snprintf(sp->lut_device, sizeof sp->lut_device, "%s/lut_device.h5", out_dir);
    snprintf(sp->lut_edge, sizeof sp->lut_edge, "%s/lut_edge.h5", out_dir);
    OFFNAS_TRY(latency_save(&sp->tables[0], sp->lut_device));
    return latency_save(&sp->tables[1], sp->lut_edge);
}

static void space_close(struct space *sp)
{
    arch_free(&sp->arch);
    net_free(sp->super);
}

/* The job's fixed ops as candidate indices of the search space. */
static int fixed_ops(int *ops, const struct space *sp, const struct job *job)
{
    for (int l = 0; l < sp->super->layer_count; l++) {
        ops[l] = net_find_candidate(sp->super, l, &job->net.fixed_ops[l]);
        if (ops[l] < 0)
            return offnas_error("net.ops: op %d is not among net.candidates of layer %d", l + 1,
                                l + 1);
    }
    return 0;
}

/* Neurosurgeon's rule: the split with the lowest predicted latency, every channel sent. */
static void best_split_all_channels(struct derive_choice *best, const struct space *sp,
                                    const int *ops)
{
    struct derive_choice *c = offnas_malloc(sizeof *c);
    for (int s = 0; s <= sp->arch.layer_count + 1; s++) {
        int total = s >= 1 && s <= sp->arch.layer_count ? sp->arch.channels[s] : 0;
        c->split = s;
        c->total = total;
        c->kept = total;
        memset(c->keep, 0, sizeof c->keep);
        memset(c->keep, 1, (size_t)total);
        c->latency = arch_network_latency(&sp->arch, &sp->cost, ops, s, total);
        c->bytes = arch_bytes_sent(&sp->arch, &sp->cost, s, total);
        c->accuracy = NAN;
        if (s == 0 || c->latency.total < best->latency.total)
            *best = *c;
    }
    free(c);
}

/* Writes out_dir/arch.json for ops and choice. */
static int write_arch(const char *out_dir, const char *method, const char *rule,
                      const struct space *sp, const struct job *job, const char *search_run,
                      struct derive_result *r)
{
    int L = sp->super->layer_count;
    char *text = job_to_string(job);
    struct derived_record rec = {
        .method = method,
        .rule = rule,
        .space = sp->super,
        .r = r,
        .choice = &r->chosen,
        .all_device_ms = arch_network_latency(&sp->arch, &sp->cost, r->ops, L + 1, 0).total,
        .all_edge_ms = arch_network_latency(&sp->arch, &sp->cost, r->ops, 0, 0).total,
        .layers = job->net_layers,
        .input_side = job->data_resize,
        .wire = job->search_wire,
        .network = sp->cost.link.name,
        .search_run = search_run,
        .lut_device = sp->lut_device,
        .lut_edge = sp->lut_edge,
        .job_text = text,
        .max_accuracy_drop = job->derive_max_accuracy_drop,
    };
    char path[JOB_PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/arch.json", out_dir);
    int rc = derived_write(path, &rec);
    free(text);
    return rc;
}

/* Trains the network out_dir/arch.json describes (as train --arch), optionally from the
 * weights of init_model for `epochs` epochs (-1: the job's), then evaluates it. */
static int train_and_eval(const char *out_dir, const char *init_model, int epochs,
                          struct eval_result *result)
{
    char path[JOB_PATH_MAX * 2], sets[2][JOB_PATH_MAX + 32];
    const char *set_list[2];
    int n = 0;
    if (init_model) {
        snprintf(sets[n], sizeof sets[n], "train.init=%s", init_model);
        set_list[n] = sets[n];
        n++;
    }
    if (epochs >= 0) {
        snprintf(sets[n], sizeof sets[n], "train.epochs=%d", epochs);
        set_list[n] = sets[n];
        n++;
    }
    snprintf(path, sizeof path, "%s/arch.json", out_dir);
    struct derived d;
    struct job *job = offnas_malloc(sizeof *job);
    struct train_result tr;
    int rc = derived_load(&d, path);
    if (!rc)
        rc = derived_job(job, &d, out_dir, set_list, n);
    if (!rc)
        rc = train_fixed(job, &d.split, out_dir, &tr);
    json_decref(d.root);
    free(job);
    return rc ? -1 : eval_run(out_dir, set_list, n, result);
}

static int neurosurgeon(const struct job *job, const char *out_dir, struct eval_result *result)
{
    struct space sp = {0};
    struct derive_result *r = offnas_calloc(1, sizeof *r);
    int rc = space_open(&sp, job, out_dir);
    if (!rc)
        rc = fixed_ops(r->ops, &sp, job);
    if (!rc) {
        best_split_all_channels(&r->chosen, &sp, r->ops);
        rc = write_arch(out_dir, "neurosurgeon", "all-channels", &sp, job, "", r);
    }
    space_close(&sp);
    free(r);
    return rc ? -1 : train_and_eval(out_dir, NULL, -1, result);
}

static int nas_then_split(const struct job *job, const char *out_dir, struct eval_result *result)
{
    char run[JOB_PATH_MAX * 2];
    snprintf(run, sizeof run, "%s/search", out_dir);
    struct job *device_job = offnas_malloc(sizeof *device_job);
    *device_job = *job;
    snprintf(device_job->search_split, sizeof device_job->search_split, "device");
    int rc = search_run(device_job, run, 0, 0) == SEARCH_DONE ? 0 : -1;
    free(device_job);
    struct derive_result *r = offnas_calloc(1, sizeof *r);
    if (!rc)
        rc = derive_run(run, 1, r); /* the ops of the device-only search */
    struct space sp = {0};
    if (!rc)
        rc = space_open(&sp, job, out_dir);
    if (!rc) {
        best_split_all_channels(&r->chosen, &sp, r->ops);
        rc = write_arch(out_dir, "nas-then-split", "all-channels", &sp, job, run, r);
    }
    space_close(&sp);
    free(r);
    return rc ? -1 : train_and_eval(out_dir, NULL, -1, result);
}

/* Importance of the channels leaving layer s (1..L) of a fixed network: the magnitude of the
 * scale of the batch norm that makes them (a skip layer passes on the previous one's). */
static void bn_scale_scores(float *scores, const struct net *net, int s)
{
    int l = s - 1;
    while (l >= 0 && net->layers[l].cand[0].spec.kind == OP_SKIP)
        l--;
    int C = net->layers[s - 1].cout;
    for (int c = 0; c < C; c++) {
        if (l < 0)
            scores[c] = fabsf(net->params[net->bn_stem.gamma + c]);
        else
            scores[c] = fabsf(net->params[net->layers[l].cand[0].bn3.gamma + c]);
    }
}

/* The pruned split of the trained fixed network in fixed_dir: derive's rule with batch-norm
 * scales in place of gamma, or with baseline.pin_split the channels of largest scale at that
 * split, as many as baseline.pin_kept. */
static int prune(struct derive_result *r, const struct space *sp, const struct job *job,
                 const char *fixed_dir)
{
    struct train_data td;
    OFFNAS_TRY(train_data_load(&td, job, NULL));
    if (train_check_memory(job, 128, &td, 1, 1)) { /* as every other net of a run: refuse first */
        train_data_free(&td);
        return -1;
    }
    struct net *net = net_create(&job->net, 128, job->data_resize, td.train.channels, td.train.classes,
                                 1, 1);
    char path[JOB_PATH_MAX * 2 + 16];
    snprintf(path, sizeof path, "%s/model.h5", fixed_dir);
    int rc = net ? train_load_model(net, path) : -1;
    float *scores = offnas_calloc((size_t)(sp->arch.layer_count + 2) * NET_MAX_CHANNELS,
                                  sizeof(float));
    const float *by_split[ARCH_MAX_SPLITS] = {0};
    for (int s = 1; !rc && s <= sp->arch.layer_count; s++) {
        bn_scale_scores(scores + (size_t)s * NET_MAX_CHANNELS, net, s);
        by_split[s] = scores + (size_t)s * NET_MAX_CHANNELS;
    }
    int pinned = job->baseline_pin_split;
    if (!rc && pinned >= 0) { /* the run's split and count; the channels this seed's */
        derive_pinned(&r->chosen, &sp->arch, &sp->cost, r->ops, pinned, by_split[pinned],
                      job->baseline_pin_kept);
    } else if (!rc) {
        net->mask_layer = -1;
        struct derive_data data = {&td.train, &td.val, job->data_resize};
        struct derive_options o = {job->derive_max_accuracy_drop, job->derive_bn_batches,
                                   job->derive_val_images};
        rc = derive_split_for(r, net, &sp->arch, &sp->cost, by_split, &data, &o);
    }
    free(scores);
    net_free(net);
    train_data_free(&td);
    return rc;
}

static int prune_split(const struct job *job, const char *out_dir, struct eval_result *result)
{
    char fixed[JOB_PATH_MAX * 2], model[JOB_PATH_MAX * 2 + 16];
    _Static_assert(sizeof model > sizeof fixed + 9, "room for /model.h5");
    snprintf(fixed, sizeof fixed, "%s/fixed", out_dir);
    snprintf(model, sizeof model, "%s/model.h5", fixed);
    struct train_result tr;
    struct space sp = {0};
    struct derive_result *r = offnas_calloc(1, sizeof *r);
    int rc = train_fixed(job, NULL, fixed, &tr);
    if (!rc)
        rc = space_open(&sp, job, out_dir);
    if (!rc)
        rc = fixed_ops(r->ops, &sp, job);
    if (!rc)
        rc = prune(r, &sp, job, fixed);
    if (!rc)
        rc = write_arch(out_dir, "prune-split",
                        job->baseline_pin_split >= 0 ? "pruned-pinned" : "pruned", &sp, job, "",
                        r);
    space_close(&sp);
    free(r);
    return rc ? -1 : train_and_eval(out_dir, model, job->baseline_finetune_epochs, result);
}

int baseline_run(enum baseline_method method, const struct job *job, const char *out_dir,
                 struct eval_result *result)
{
    OFFNAS_TRY(train_mkdirs(out_dir));
    switch (method) {
    case BASELINE_NEUROSURGEON:
        return neurosurgeon(job, out_dir, result);
    case BASELINE_NAS_THEN_SPLIT:
        return nas_then_split(job, out_dir, result);
    case BASELINE_PRUNE_SPLIT:
        return prune_split(job, out_dir, result);
    default:
        return offnas_error("baseline: unknown method %d", (int)method);
    }
}
