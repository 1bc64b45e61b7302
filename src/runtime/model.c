/* model: a run folder as the split runtime deploys it (see model.h). */
#include "model.h"

#include "common.h"
#include "data.h"
#include "train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MODEL_MAX_SETS 72

/* The hello's one-line summary: "k3e1,k3e3,...; split 2; 6/16 channels; int8". */
static void describe(struct runtime_model *rm)
{
    const struct net *space = rm->m.super;
    char ops[160] = "", name[16];
    size_t n = 0;
    for (int l = 0; l < rm->layers && n < sizeof ops; l++)
        n += (size_t)snprintf(ops + n, sizeof ops - n, "%s%s", l ? "," : "",
                              op_spec_name(&space->layers[l].cand[rm->m.ops[l]].spec, name));
    snprintf(rm->hello.model, sizeof rm->hello.model, "%s; split %d; %d/%d channels; %s", ops,
             rm->split, rm->kept, rm->total, rm->format ? wire_format_name(rm->format) : "none");
}

/* The fingerprint of what both sides must share: the summary (ops, split, channel count,
 * format), the kept channels, the weights and running statistics, all as little-endian bytes. */
static uint64_t fingerprint(const struct runtime_model *rm, const struct net *net)
{
    uint64_t h = wire_fingerprint(WIRE_FINGERPRINT_SEED, rm->hello.model, strlen(rm->hello.model));
    for (int k = 0; k < rm->kept; k++) {
        uint8_t c[2] = {(uint8_t)(rm->channels[k] & 0xff), (uint8_t)(rm->channels[k] >> 8)};
        h = wire_fingerprint(h, c, 2);
    }
    h = wire_fingerprint_floats(h, net->params, net->param_count);
    return wire_fingerprint_floats(h, net->stats, net->stat_count);
}

/* The wire format of what crosses at the model's split. */
static int crossing_format(const struct runtime_model *rm)
{
    if (rm->split == 0)
        return WIRE_U8;
    if (rm->split > rm->layers)
        return 0;
    return wire_format_parse(rm->m.job.search_wire);
}

int runtime_model_open(struct runtime_model *rm, const char *run,
                       const struct runtime_model_options *opts)
{
    memset(rm, 0, sizeof *rm);
    if (snprintf(rm->run, sizeof rm->run, "%s", run) >= (int)sizeof rm->run)
        return offnas_error("%s: path too long", run);
    snprintf(rm->model_path, sizeof rm->model_path, "%s/model.h5", run);
    const char *sets[MODEL_MAX_SETS];
    int n = 0;
    for (int i = 0; i < opts->set_count && n < MODEL_MAX_SETS - 2; i++)
        sets[n++] = opts->sets[i];
    if (opts->tables_unscaled) {
        sets[n++] = "latency.device_scale=1";
        sets[n++] = "latency.edge_scale=1";
    }
    OFFNAS_TRY(eval_model_open(&rm->m, run, sets, n,
                               opts->no_tables ? EVAL_NO_TABLES : opts->lut_device,
                               opts->lut_edge));
    rm->layers = rm->m.super->layer_count;
    rm->split = rm->m.d.split.split;
    rm->use_mask = 1;
    if (opts->split >= 0 && opts->split != rm->split) {
        if (opts->split > rm->layers + 1)
            return offnas_error("--split: %d is not in 0..%d", opts->split, rm->layers + 1);
        rm->split = opts->split;
        rm->use_mask = 0;
    }

    struct runtime_worker w;
    int rc = runtime_worker_open(&w, rm);
    if (!rc) {
        rm->height = w.half.height;
        rm->width = w.half.width;
        rm->total = w.half.total;
        rm->kept = w.half.kept;
        memcpy(rm->channels, w.half.channels, sizeof(uint16_t) * (size_t)w.half.kept);
        rm->format = crossing_format(rm);
        rc = rm->format < 0 ? -1 : 0;
    }
    if (!rc && rm->use_mask && rm->split >= 1 && rm->split <= rm->layers &&
        rm->kept != rm->m.d.split.kept)
        rc = offnas_error("%s: the mask of model.h5 keeps %d channels, arch.json %d", run,
                          rm->kept, rm->m.d.split.kept);
    if (!rc) {
        describe(rm);
        rm->hello.fingerprint = fingerprint(rm, w.net);
        rm->hello.split = rm->split;
        rm->hello.total_channels = rm->total;
        rm->hello.kept = rm->kept;
        rm->hello.format = rm->format;
        int inner = rm->split >= 1 && rm->split <= rm->layers;
        if (!rm->m.has_tables)
            return runtime_worker_close(&w), 0;
        rm->predicted = arch_network_latency(&rm->m.arch, &rm->m.cost, rm->m.ops, rm->split,
                                             inner ? rm->kept : 0);
        rm->bytes_predicted = arch_bytes_sent(&rm->m.arch, &rm->m.cost, rm->split,
                                              inner ? rm->kept : 0);
    }
    runtime_worker_close(&w);
    return rc;
}

void runtime_model_close(struct runtime_model *rm)
{
    eval_model_close(&rm->m);
}

int runtime_worker_open(struct runtime_worker *w, const struct runtime_model *rm)
{
    memset(w, 0, sizeof *w);
    const struct job *job = &rm->m.job;
    w->net = net_create(&job->net, 1, job->data_resize, rm->m.channels, rm->m.classes, 1, 1);
    if (!w->net)
        return -1;
    OFFNAS_TRY(train_load_model(w->net, rm->model_path));
    if (rm->use_mask && w->net->mask_layer >= 0 && w->net->mask_layer != rm->split - 1)
        return offnas_error("%s: the channel mask is on layer %d's output, arch.json splits "
                            "after layer %d", rm->model_path, w->net->mask_layer + 1, rm->split);
    const float *mask = rm->use_mask && w->net->mask_layer >= 0 ? w->net->mask : NULL;
    const int trained_mask_layer = w->net->mask_layer;
    OFFNAS_TRY(split_half_init(&w->half, w->net, rm->split, mask));
    /* at another split, the trained mask (and the wire simulated there) stays inside the half
     * that holds its layer: the network computes what it was trained to, only the crossing moves */
    if (!rm->use_mask)
        w->net->mask_layer = trained_mask_layer;
    size_t values = (size_t)w->half.height * w->half.width * (w->half.kept ? w->half.kept : 1);
    w->values = offnas_calloc(values, sizeof(float));
    return 0;
}

void runtime_worker_close(struct runtime_worker *w)
{
    split_half_free(&w->half);
    net_free(w->net);
    free(w->values);
    memset(w, 0, sizeof *w);
}

int runtime_device_encode(struct runtime_worker *w, const struct runtime_model *rm,
                          const float *x, uint64_t id, struct wire_buf *b)
{
    const float *sent = split_device_forward(&w->half, x);
    if (!sent)
        return -1;
    const int h = w->half.height, wd = w->half.width, c = w->half.kept;
    if (rm->format != WIRE_U8)
        return wire_encode_tensor(b, id, rm->format, sent, NULL, h, wd, c, w->half.total,
                                  w->half.channels);
    /* split 0: the pixel values the normalisation came from, rounded to u8 */
    size_t n = (size_t)h * wd * c;
    uint8_t *q = (uint8_t *)w->values; /* values holds n floats: room for n bytes */
    for (size_t i = 0; i < n; i++) {
        float v = (sent[i] - DATA_OFFSET) / DATA_GAIN;
        wire_fake_quant(&v, 1, WIRE_U8); /* as train --arch rounds them */
        q[i] = (uint8_t)v;
    }
    return wire_encode_tensor(b, id, WIRE_U8, NULL, q, h, wd, c, w->half.total, w->half.channels);
}

int runtime_edge_run(struct runtime_worker *w, const struct runtime_model *rm,
                     const struct wire_tensor *t)
{
    const struct split_half *hf = &w->half;
    if (rm->split > rm->layers)
        return offnas_error("tensor: this model runs all on the device, nothing to serve"),
               WIRE_E_STATE;
    if (t->format != rm->format)
        return offnas_error("tensor: format %s, the model sends %s", wire_format_name(t->format),
                            wire_format_name(rm->format)),
               WIRE_E_FIELD;
    if (t->h != hf->height || t->w != hf->width || t->c != hf->kept ||
        t->total_channels != hf->total)
        return offnas_error("tensor: shape %dx%dx%d of %d channels, the model sends %dx%dx%d of %d",
                            t->h, t->w, t->c, t->total_channels, hf->height, hf->width, hf->kept,
                            hf->total),
               WIRE_E_FIELD;
    for (int k = 0; k < t->c; k++)
        if (t->channels[k] != hf->channels[k])
            return offnas_error("tensor: channel %d is %u, the model sends %u", k,
                                (unsigned)t->channels[k], (unsigned)hf->channels[k]),
                   WIRE_E_FIELD;
    wire_tensor_dequantize(t, w->values);
    if (t->format == WIRE_U8) {
        size_t n = (size_t)t->h * t->w * t->c;
        for (size_t i = 0; i < n; i++)
            w->values[i] = w->values[i] * DATA_GAIN + DATA_OFFSET;
    }
    split_edge_forward(&w->half, w->values);
    return 0;
}
