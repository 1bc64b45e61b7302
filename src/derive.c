/* derive: the split and channels that are best for the derived ops (see derive.h). */
#include "derive.h"

#include "common.h"
#include "derived.h"
#include "latency.h"
#include "op.h"
#include "search.h"
#include "train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Channel indices 0..n-1 ordered by score, largest first (ties: lower index first). */
static void rank_channels(int *order, const float *g, int n)
{
    for (int c = 0; c < n; c++) {
        int at = c;
        while (at > 0 && g[order[at - 1]] < g[c]) {
            order[at] = order[at - 1];
            at--;
        }
        order[at] = c;
    }
}

/* choice->keep from the first `kept` channels of order, and the predicted latency. */
static void fill_choice(struct derive_choice *choice, const struct arch *arch,
                        const struct arch_cost *cost, const int *ops, int s, const int *order,
                        int kept)
{
    int L = arch->layer_count;
    choice->split = s;
    choice->total = s >= 1 && s <= L ? arch->channels[s] : 0;
    choice->kept = choice->total ? kept : 0;
    memset(choice->keep, 0, sizeof choice->keep);
    for (int i = 0; i < choice->kept; i++)
        choice->keep[order[i]] = 1;
    choice->latency = arch_network_latency(arch, cost, ops, s, choice->kept);
    choice->bytes = arch_bytes_sent(arch, cost, s, choice->kept);
    choice->accuracy = NAN;
}

void derive_pinned(struct derive_choice *choice, const struct arch *arch,
                   const struct arch_cost *cost, const int *ops, int s, const float *scores,
                   int kept)
{
    int order[NET_MAX_CHANNELS] = {0};
    if (s >= 1 && s <= arch->layer_count)
        rank_channels(order, scores, arch->channels[s]);
    fill_choice(choice, arch, cost, ops, s, order, kept);
}

/* Sets net's channel mask to that of choice (none at split 0 or L+1). */
static void apply_choice(struct net *net, const struct derive_choice *choice)
{
    net->mask_layer = choice->total ? choice->split - 1 : -1;
    if (choice->total)
        for (int c = 0; c < choice->total; c++)
            net->mask[c] = choice->keep[c] ? 1.0f : 0.0f;
}

/* Re-estimates net's batch-norm running statistics for its current choices and mask: the
 * exact mean of the statistics of bn_batches training batches (the first images). */
static void recalibrate(struct net *net, const struct derive_data *data,
                        const struct derive_options *o, struct train_batch *tb)
{
    net_reset_running_stats(net);
    long n = data->train->count;
    for (int k = 0; k < o->bn_batches; k++) {
        long start = ((long)k * net->batch) % n;
        int B = (int)(n - start < net->batch ? n - start : net->batch);
        train_batch_fill(tb, data->train, start, B, 0, NULL);
        net->bn_momentum = 1.0f / (float)(k + 1); /* running = mean of the batches' statistics */
        net_forward(net, tb->x, B, 1);
    }
    net->bn_momentum = NET_BN_MOMENTUM;
}

/* Validation accuracy of the network as net is set, batch norm re-estimated first. */
static double measure(struct net *net, const struct derive_data *data,
                      const struct derive_options *o, struct train_batch *tb)
{
    recalibrate(net, data, o, tb);
    struct dataset view = *data->val;
    if (o->val_images > 0 && view.count > o->val_images)
        view.count = o->val_images;
    double accuracy;
    train_evaluate(net, &view, data->side, &accuracy, NULL);
    return accuracy;
}

void derive_argmax(struct derive_result *r, const struct arch *arch, const struct arch_cost *cost)
{
    int split, kept, order[NET_MAX_CHANNELS];
    float mask[NET_MAX_CHANNELS];
    arch_derive(arch, r->ops, &split, mask, &kept);
    int total = split >= 1 && split <= arch->layer_count ? arch->channels[split] : 0, n = 0;
    for (int c = 0; c < total; c++)
        if (mask[c] != 0.0f)
            order[n++] = c;
    fill_choice(&r->argmax, arch, cost, r->ops, split, order, n);
}

/* Smallest channel count at split s (order ranked by gamma) whose accuracy is at least
 * floor, by bisection over 1..total (accuracy is taken as non-decreasing in the count);
 * 0 when even all channels fall short. Records the measurements in *sp. */
static int smallest_count(struct derive_split *sp, struct net *net, const int *ops,
                          const struct arch *arch, const struct arch_cost *cost, int s,
                          const int *order, double floor, const struct derive_data *data,
                          const struct derive_options *o, struct train_batch *tb)
{
    struct derive_choice *c = offnas_malloc(sizeof *c);
    int lo = 1, hi = arch->channels[s], found = 0;
    double found_accuracy = NAN;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        fill_choice(c, arch, cost, ops, s, order, mid);
        apply_choice(net, c);
        double t0 = offnas_now(), a = measure(net, data, o, tb);
        sp->evaluated++;
        offnas_log("derive: split %d with %d of %d channels: supernet accuracy %.4f (floor %.4f, "
                   "%.1f s)",
                   s, mid, arch->channels[s], a, floor, offnas_now() - t0);
        if (a >= floor) {
            found = mid;
            found_accuracy = a;
            hi = mid - 1;
        } else {
            lo = mid + 1;
        }
    }
    free(c);
    sp->accuracy = found_accuracy;
    return found;
}

int derive_for_ops(struct derive_result *r, struct net *net, const struct arch *arch,
                   const struct arch_cost *cost, const struct derive_data *data,
                   const struct derive_options *o)
{
    memset(r, 0, sizeof *r);
    derive_argmax(r, arch, cost);
    for (int l = 0; l < net->layer_count; l++)
        net->choice[l] = r->ops[l];
    const float *scores[ARCH_MAX_SPLITS] = {0};
    for (int s = 1; s <= arch->layer_count; s++)
        scores[s] = arch->params + arch->gamma[s];
    return derive_split_for(r, net, arch, cost, scores, data, o);
}

int derive_split_for(struct derive_result *r, struct net *net, const struct arch *arch,
                     const struct arch_cost *cost, const float *const *scores,
                     const struct derive_data *data, const struct derive_options *o)
{
    if (data->train->count < 1 || data->val->count < 1)
        return offnas_error("derive: needs training images (batch norm) and validation images "
                            "(accuracy); found %ld and %ld",
                            data->train->count, data->val->count);
    int L = arch->layer_count, order[NET_MAX_CHANNELS] = {0}; /* zeroed for gcc: only the first kept are read */
    memset(r->splits, 0, sizeof r->splits);
    struct train_batch tb;
    train_batch_init(&tb, net->batch, data->side, data->train->channels, data->train->count);

    /* splits 0 and L+1 send no feature map: their accuracy is the unmasked one */
    fill_choice(&r->chosen, arch, cost, r->ops, 0, order, 0);
    apply_choice(net, &r->chosen);
    r->unmasked_accuracy = measure(net, data, o, &tb);
    r->measurements = 1;
    offnas_log("derive: derived ops, no mask: supernet accuracy %.4f", r->unmasked_accuracy);
    struct derive_choice device;
    fill_choice(&device, arch, cost, r->ops, L + 1, order, 0);
    if (device.latency.total < r->chosen.latency.total)
        r->chosen = device;
    r->chosen.accuracy = r->unmasked_accuracy;
    for (int s = 0; s <= L + 1; s += L + 1) {
        struct derive_split *sp = &r->splits[s];
        sp->accuracy = r->unmasked_accuracy;
        sp->latency_ms = arch_network_latency(arch, cost, r->ops, s, 0).total;
    }

    /* inner splits, cheapest first: one whose one-channel latency is not below the best so
     * far cannot win, so it is not measured */
    int by_cost[ARCH_MAX_SPLITS], n = 0;
    for (int s = 1; s <= L; s++) {
        double t = arch_network_latency(arch, cost, r->ops, s, 1).total;
        r->splits[s].latency_ms = t;
        r->splits[s].total = arch->channels[s];
        int at = n++;
        while (at > 0 && r->splits[by_cost[at - 1]].latency_ms > t) {
            by_cost[at] = by_cost[at - 1];
            at--;
        }
        by_cost[at] = s;
    }
    double floor = r->unmasked_accuracy - o->max_accuracy_drop;
    struct derive_choice *c = offnas_malloc(sizeof *c);
    for (int i = 0; i < n; i++) {
        int s = by_cost[i];
        struct derive_split *sp = &r->splits[s];
        if (sp->latency_ms >= r->chosen.latency.total) {
            sp->pruned = 1;
            sp->accuracy = NAN;
            continue;
        }
        rank_channels(order, scores[s], arch->channels[s]);
        int kept = smallest_count(sp, net, r->ops, arch, cost, s, order, floor, data, o, &tb);
        r->measurements += sp->evaluated;
        sp->kept = kept;
        if (!kept)
            continue;
        fill_choice(c, arch, cost, r->ops, s, order, kept);
        sp->latency_ms = c->latency.total;
        c->accuracy = sp->accuracy;
        if (c->latency.total < r->chosen.latency.total)
            r->chosen = *c;
    }
    free(c);
    apply_choice(net, &r->chosen);
    train_batch_free(&tb);
    return 0;
}

/* ---- a search's run folder -> arch.json --------------------------------------------------- */

struct run_state {
    struct job job;
    char *job_text;
    struct net *net;
    struct arch arch;
    struct latency_table *tables; /* device, edge */
    struct arch_cost cost;
    struct train_data td;
    char lut_device[JOB_PATH_MAX * 2], lut_edge[JOB_PATH_MAX * 2];
};

/* The search's job, its supernet with the checkpoint's weights and parameters, its tables. */
static int run_open(struct run_state *s, const char *run, int batch, int with_data)
{
    char path[JOB_PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/checkpoint.h5", run);
    s->job_text = search_checkpoint_job(path);
    if (!s->job_text)
        return -1;
    if (job_load_text(&s->job, s->job_text, run, "job.ini"))
        return offnas_error_context("%s: job", path);
    int channels = 1, classes = 10;
    if (with_data) {
        op_set_threads(s->job.train_threads);
        OFFNAS_TRY(train_data_load(&s->td, &s->job, NULL));
        channels = s->td.train.channels;
        classes = s->td.train.classes;
    }
    OFFNAS_TRY(train_check_memory(&s->job, batch, &s->td, 0, 1));
    s->net = net_create(&s->job.net, batch, s->job.data_resize, channels, classes, 0, 1);
    if (!s->net)
        return -1;
    arch_init(&s->arch, s->net, 0.0f);
    struct search_state state = {0};
    OFFNAS_TRY(search_load_checkpoint(path, s->net, &s->arch, &state));
    /* derive uses no step: the epochs alone are compared (its data shards may differ) */
    OFFNAS_TRY(search_check_progress(path, &state, &s->job, 0, 0));
    snprintf(s->lut_device, sizeof s->lut_device, "%s/lut_device.h5", run);
    snprintf(s->lut_edge, sizeof s->lut_edge, "%s/lut_edge.h5", run);
    s->tables = offnas_calloc(2, sizeof *s->tables);
    OFFNAS_TRY(latency_load(&s->tables[0], s->lut_device, s->net));
    OFFNAS_TRY(latency_load(&s->tables[1], s->lut_edge, s->net));
    return search_cost_init(&s->cost, &s->job, &s->tables[0], &s->tables[1]);
}

static void run_close(struct run_state *s)
{
    free(s->job_text);
    free(s->tables);
    arch_free(&s->arch);
    net_free(s->net);
    train_data_free(&s->td);
}

int derive_run(const char *run, int argmax_only, struct derive_result *r)
{
    struct run_state *s = offnas_calloc(1, sizeof *s);
    int rc = run_open(s, run, 128, !argmax_only);
    if (!rc && argmax_only) {
        memset(r, 0, sizeof *r);
        derive_argmax(r, &s->arch, &s->cost);
        r->chosen = r->argmax;
    } else if (!rc) {
        struct derive_data data = {&s->td.train, &s->td.val, s->job.data_resize};
        struct derive_options o = {s->job.derive_max_accuracy_drop, s->job.derive_bn_batches,
                                   s->job.derive_val_images};
        rc = derive_for_ops(r, s->net, &s->arch, &s->cost, &data, &o);
    }
    if (!rc) {
        int L = s->net->layer_count;
        struct derived_record rec = {
            .method = strcmp(s->job.search_split, "device") ? "search" : "nas-then-split",
            .rule = argmax_only ? "argmax" : "accuracy",
            .space = s->net,
            .r = r,
            .choice = &r->chosen,
            .all_device_ms = arch_network_latency(&s->arch, &s->cost, r->ops, L + 1, 0).total,
            .all_edge_ms = arch_network_latency(&s->arch, &s->cost, r->ops, 0, 0).total,
            .layers = s->job.net_layers,
            .input_side = s->job.data_resize,
            .wire = s->job.search_wire,
            .network = s->cost.link.name,
            .search_run = run,
            .lut_device = s->lut_device,
            .lut_edge = s->lut_edge,
            .job_text = s->job_text,
            .max_accuracy_drop = s->job.derive_max_accuracy_drop,
        };
        char path[JOB_PATH_MAX * 2];
        snprintf(path, sizeof path, "%s/arch.json", run);
        rc = derived_write(path, &rec);
    }
    run_close(s);
    free(s);
    return rc;
}
