/* eval: a retrained derived network's accuracy and predicted latency (see eval.h). */
#include "eval.h"

#include "common.h"
#include "derived.h"
#include "latency.h"
#include "op.h"
#include "search.h"
#include "train.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

struct eval_state {
    struct derived d;
    struct job job;
    struct net *fixed, *super;
    struct latency_table tables[2];
    struct train_data td;
    struct arch arch;
    struct arch_cost cost;
    int ops[NET_MAX_LAYERS]; /* the derived ops as candidates of the search space */
};

/* The derived network with its trained weights, the search space, tables and link. */
static int eval_open(struct eval_state *s, const char *run, const char *const *sets, int n)
{
    char path[JOB_PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/arch.json", run);
    OFFNAS_TRY(derived_load(&s->d, path));
    OFFNAS_TRY(derived_job(&s->job, &s->d, run, sets, n));
    op_set_threads(s->job.train_threads);
    OFFNAS_TRY(train_data_load(&s->td, &s->job, NULL));
    if (s->td.test.count < 1)
        return offnas_error("%s: the test split is empty: no test accuracy to report",
                            s->job.data_path);
    const struct dataset *t = &s->td.test;
    OFFNAS_TRY(train_check_memory(&s->job, 256, &s->td, 1, 1));
    s->fixed = net_create(&s->job.net, 256, s->job.data_resize, t->channels, t->classes, 1, 1);
    s->super = net_create(&s->job.net, 1, s->job.data_resize, t->channels, t->classes, 0, 1);
    if (!s->fixed || !s->super)
        return -1;
    snprintf(path, sizeof path, "%s/model.h5", run);
    OFFNAS_TRY(train_load_model(s->fixed, path));
    OFFNAS_TRY(latency_load(&s->tables[0], s->d.lut_device, s->super));
    OFFNAS_TRY(latency_load(&s->tables[1], s->d.lut_edge, s->super));
    arch_init(&s->arch, s->super, 0.0f);
    OFFNAS_TRY(search_cost_init(&s->cost, &s->job, &s->tables[0], &s->tables[1]));
    for (int l = 0; l < s->super->layer_count; l++) {
        s->ops[l] = net_find_candidate(s->super, l, &s->job.net.fixed_ops[l]);
        if (s->ops[l] < 0)
            return offnas_error("%s: op %d is not a candidate of the search space", run, l + 1);
    }
    return 0;
}

static void eval_close(struct eval_state *s)
{
    json_decref(s->d.root);
    arch_free(&s->arch);
    net_free(s->fixed);
    net_free(s->super);
    train_data_free(&s->td);
}

/* Adds the figures of r to summary (the fields `offnas report` reads, docs/formats.md). */
static void summary_fill(json_t *summary, const struct eval_state *s, const struct eval_result *r)
{
    const struct job *job = &s->job;
    int searched = !strcmp(s->d.method, "search") || !strcmp(s->d.method, "nas-then-split");
    json_object_set_new(summary, "method", json_string(s->d.method));
    json_object_set_new(summary, "lambda", searched ? json_real(job->search_lambda) : json_null());
    json_object_set_new(summary, "test_accuracy", json_real(r->test_accuracy));
    json_object_set_new(summary, "split_point", json_integer(r->split));
    json_object_set_new(summary, "kept_channels", json_integer(r->kept));
    json_object_set_new(summary, "total_channels", json_integer(r->total));
    json_object_set_new(summary, "bytes_sent", json_real(r->bytes_sent));
    json_object_set_new(summary, "input_bytes", json_real(s->arch.input_bytes));
    json_object_set_new(summary, "wire", json_string(job->search_wire));
    json_t *ms = derived_latency_json(&r->latency);
    json_object_set_new(ms, "all_device", json_real(r->all_device.total));
    json_object_set_new(ms, "all_edge", json_real(r->all_edge.total));
    json_object_set_new(ms, "all_edge_parts", derived_latency_json(&r->all_edge));
    json_object_set_new(summary, "latency_ms", ms);
    json_t *net = json_object();
    json_object_set_new(net, "name", json_string(s->cost.link.name));
    json_object_set_new(net, "bandwidth_mbps", json_real(s->cost.link.bandwidth_mbps));
    json_object_set_new(net, "rtt_ms", json_real(s->cost.link.rtt_ms));
    json_object_set_new(summary, "network", net);
    json_object_set_new(summary, "device_profile", json_string(s->tables[0].device));
    json_object_set_new(summary, "edge_profile", json_string(s->tables[1].device));
    json_object_set_new(summary, "device_scale", json_real(job->latency_device_scale));
    json_object_set_new(summary, "edge_scale", json_real(job->latency_edge_scale));
    json_object_set_new(summary, "input_side", json_integer(job->data_resize));
    json_object_set_new(summary, "ops", json_string(job->net_ops));
    json_object_set_new(summary, "macs", json_real(r->macs));
    json_object_set_new(summary, "params", json_integer(r->params));
}

int eval_run(const char *run, const char *const *sets, int set_count, struct eval_result *r)
{
    memset(r, 0, sizeof *r);
    struct eval_state *s = offnas_calloc(1, sizeof *s);
    int rc = eval_open(s, run, sets, set_count);
    if (!rc) {
        train_evaluate(s->fixed, &s->td.test, s->job.data_resize, &r->test_accuracy, NULL);
        int L = s->super->layer_count, split = s->d.split.split;
        r->split = split;
        r->total = split >= 1 && split <= L ? s->arch.channels[split] : 0;
        r->kept = r->total ? s->d.split.kept : 0;
        r->latency = arch_network_latency(&s->arch, &s->cost, s->ops, split, r->kept);
        r->all_device = arch_network_latency(&s->arch, &s->cost, s->ops, L + 1, 0);
        r->all_edge = arch_network_latency(&s->arch, &s->cost, s->ops, 0, 0);
        r->bytes_sent = arch_bytes_sent(&s->arch, &s->cost, split, r->kept);
        r->macs = net_macs_chosen(s->fixed);
        r->params = (long)net_param_count_chosen(s->fixed);
        snprintf(r->network, sizeof r->network, "%s", s->cost.link.name);
        snprintf(r->path, sizeof r->path, "%s/summary.json", run);
        json_error_t err;
        json_t *summary = json_load_file(r->path, 0, &err);
        if (!json_is_object(summary)) {
            json_decref(summary);
            summary = json_object();
        }
        summary_fill(summary, s, r);
        rc = train_write_json(summary, r->path);
        json_decref(summary);
    }
    eval_close(s);
    free(s);
    return rc;
}
