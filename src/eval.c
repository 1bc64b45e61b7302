/* eval: a retrained derived network's accuracy and predicted latency (see eval.h). */
#include "eval.h"

#include "common.h"
#include "derived.h"
#include "h5.h"
#include "latency.h"
#include "op.h"
#include "search.h"
#include "train.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

struct eval_state {
    struct eval_model m;
    struct net *fixed;
    struct train_data td;
};

const char EVAL_NO_TABLES[] = "(no tables)";

/* The in_channels and classes attributes of a model file (written since the split runtime),
 * in plausible ranges: 0, or -1 when the file or either attribute is missing or out of range
 * (the caller asks the data file instead; model.h5 itself is checked when it is loaded). */
static int model_shape(const char *path, int *channels, int *classes)
{
    hid_t f = h5_open_read(path);
    if (f < 0)
        return -1;
    int64_t c = 0, k = 0;
    int ok = h5_attr_exists(f, "in_channels") > 0 && h5_attr_exists(f, "classes") > 0 &&
             !h5_attr_get_int(f, "in_channels", &c) && !h5_attr_get_int(f, "classes", &k) &&
             c >= 1 && c <= 64 && k >= 1 && k <= 256;
    h5_close(f);
    *channels = (int)c;
    *classes = (int)k;
    return ok ? 0 : -1;
}

int eval_model_open(struct eval_model *m, const char *run, const char *const *sets, int n,
                    const char *lut_device, const char *lut_edge)
{
    memset(m, 0, sizeof *m);
    char path[JOB_PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/arch.json", run);
    OFFNAS_TRY(derived_load(&m->d, path));
    OFFNAS_TRY(derived_job(&m->job, &m->d, run, sets, n));
    /* the input's channels and the classes: from the first image of the data file (of /train
     * when /test is empty: eval says so once it has the test split); where there is no data
     * file (an edge server), from model.h5's attributes (loading the model checks them) */
    struct dataset one;
    long rows = 0;
    if (!data_rows(m->job.data_path, "test", &rows) &&
        !data_load(&one, m->job.data_path, rows > 0 ? "test" : "train", 0, 1)) {
        m->channels = one.channels;
        m->classes = one.classes;
        data_free(&one);
    } else {
        char data_error[1024];
        snprintf(data_error, sizeof data_error, "%s", offnas_last_error());
        snprintf(path, sizeof path, "%s/model.h5", run);
        if (model_shape(path, &m->channels, &m->classes))
            return offnas_error("%s", data_error);
    }
    m->super = net_create(&m->job.net, 1, m->job.data_resize, m->channels, m->classes, 0, 1);
    if (!m->super)
        return -1;
    arch_init(&m->arch, m->super, 0.0f);
    if (lut_device != EVAL_NO_TABLES) {
        OFFNAS_TRY(latency_load(&m->tables[0], lut_device ? lut_device : m->d.lut_device,
                                m->super));
        OFFNAS_TRY(latency_load(&m->tables[1], lut_edge ? lut_edge : m->d.lut_edge, m->super));
        OFFNAS_TRY(search_cost_init(&m->cost, &m->job, &m->tables[0], &m->tables[1]));
        m->has_tables = 1;
    }
    for (int l = 0; l < m->super->layer_count; l++) {
        m->ops[l] = net_find_candidate(m->super, l, &m->job.net.fixed_ops[l]);
        if (m->ops[l] < 0)
            return offnas_error("%s: op %d is not a candidate of the search space", run, l + 1);
    }
    return 0;
}

int eval_model_check_data(const struct eval_model *m, const struct dataset *ds)
{
    if (ds->channels != m->channels || ds->classes != m->classes)
        return offnas_error("%s: %d channels and %d classes, the model was trained for %d and %d",
                            m->job.data_path, ds->channels, ds->classes, m->channels, m->classes);
    return 0;
}

void eval_model_close(struct eval_model *m)
{
    json_decref(m->d.root);
    m->d.root = NULL;
    arch_free(&m->arch);
    net_free(m->super);
    m->super = NULL;
}

/* The derived network with its trained weights and test data, the search space, tables and
 * link. */
static int eval_open(struct eval_state *s, const char *run, const char *const *sets, int n)
{
    OFFNAS_TRY(eval_model_open(&s->m, run, sets, n, NULL, NULL));
    const struct job *job = &s->m.job;
    op_set_threads(job->train_threads);
    OFFNAS_TRY(train_data_load(&s->td, job, NULL));
    if (s->td.test.count < 1)
        return offnas_error("%s: the test split is empty: no test accuracy to report",
                            job->data_path);
    const struct dataset *t = &s->td.test;
    OFFNAS_TRY(eval_model_check_data(&s->m, t));
    OFFNAS_TRY(train_check_memory(job, 256, &s->td, 1, 1));
    s->fixed = net_create(&job->net, 256, job->data_resize, t->channels, t->classes, 1, 1);
    if (!s->fixed)
        return -1;
    char path[JOB_PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/model.h5", run);
    return train_load_model(s->fixed, path);
}

static void eval_close(struct eval_state *s)
{
    eval_model_close(&s->m);
    net_free(s->fixed);
    train_data_free(&s->td);
}

/* Adds the figures of r to summary (the fields `offnas report` reads, docs/formats.md). */
static void summary_fill(json_t *summary, const struct eval_state *s, const struct eval_result *r)
{
    const struct eval_model *m = &s->m;
    const struct job *job = &m->job;
    int searched = !strcmp(m->d.method, "search") || !strcmp(m->d.method, "nas-then-split");
    json_object_set_new(summary, "method", json_string(m->d.method));
    json_object_set_new(summary, "lambda", searched ? json_real(job->search_lambda) : json_null());
    json_object_set_new(summary, "test_accuracy", json_real(r->test_accuracy));
    json_object_set_new(summary, "split_point", json_integer(r->split));
    json_object_set_new(summary, "kept_channels", json_integer(r->kept));
    json_object_set_new(summary, "total_channels", json_integer(r->total));
    json_object_set_new(summary, "bytes_sent", json_real(r->bytes_sent));
    json_object_set_new(summary, "input_bytes", json_real(m->arch.input_bytes));
    json_object_set_new(summary, "wire", json_string(job->search_wire));
    json_t *ms = derived_latency_json(&r->latency);
    json_object_set_new(ms, "all_device", json_real(r->all_device.total));
    json_object_set_new(ms, "all_edge", json_real(r->all_edge.total));
    json_object_set_new(ms, "all_edge_parts", derived_latency_json(&r->all_edge));
    json_object_set_new(summary, "latency_ms", ms);
    json_t *net = json_object();
    json_object_set_new(net, "name", json_string(m->cost.link.name));
    json_object_set_new(net, "bandwidth_mbps", json_real(m->cost.link.bandwidth_mbps));
    json_object_set_new(net, "rtt_ms", json_real(m->cost.link.rtt_ms));
    json_object_set_new(summary, "network", net);
    json_object_set_new(summary, "device_profile", json_string(m->tables[0].device));
    json_object_set_new(summary, "edge_profile", json_string(m->tables[1].device));
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
        struct eval_model *m = &s->m;
        train_evaluate(s->fixed, &s->td.test, m->job.data_resize, &r->test_accuracy, NULL);
        int L = m->super->layer_count, split = m->d.split.split;
        r->split = split;
        r->total = split >= 1 && split <= L ? m->arch.channels[split] : 0;
        r->kept = r->total ? m->d.split.kept : 0;
        r->latency = arch_network_latency(&m->arch, &m->cost, m->ops, split, r->kept);
        r->all_device = arch_network_latency(&m->arch, &m->cost, m->ops, L + 1, 0);
        r->all_edge = arch_network_latency(&m->arch, &m->cost, m->ops, 0, 0);
        r->bytes_sent = arch_bytes_sent(&m->arch, &m->cost, split, r->kept);
        r->macs = net_macs_chosen(s->fixed);
        r->params = (long)net_param_count_chosen(s->fixed);
        snprintf(r->network, sizeof r->network, "%s", m->cost.link.name);
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
