/* model: a run folder of `offnas train --arch` (or a baseline) as the split runtime deploys it:
 * the derived network with its trained weights at batch 1, its two halves, the format of what
 * crosses the link, the hello both sides exchange, and the predicted latency of the split.
 *
 *     struct runtime_model rm;
 *     if (runtime_model_open(&rm, "runs/camera-derived", &opts)) ... offnas_last_error()
 *     struct runtime_worker w;                     // one per thread that computes
 *     runtime_worker_open(&w, &rm);
 *     ... split_device_forward(&w.half, x) / split_edge_forward(&w.half, sent) ...
 *     runtime_worker_close(&w);
 *     runtime_model_close(&rm);
 *
 * What crosses: split 0 sends the input as u8 pixels (of the resized image; the edge
 * normalises them), an inner split the kept channels in the job's search.wire format (int8,
 * fp16, fp32), split L + 1 nothing. The fingerprint covers the ops, the split, the kept
 * channels, the format, the weights and the running statistics: two sides agree on it only
 * when they run the same model. */
#ifndef OFFNAS_RUNTIME_MODEL_H
#define OFFNAS_RUNTIME_MODEL_H

#include "eval.h"
#include "split.h"
#include "wire.h"

struct runtime_model_options {
    const char *const *sets; /* --set overrides of the run's job */
    int set_count;
    const char *lut_device, *lut_edge; /* tables to predict with (NULL: arch.json's) */
    int tables_unscaled; /* the tables are of the machines the halves run on: scales 1 */
    int no_tables;       /* the edge: no prediction, so no tables needed */
    int split;           /* -1: arch.json's; else split there with every channel sent (a
                          * sweep of one trained network's splits; the trained mask and its
                          * simulated wire stay where they were, inside a half) */
};

struct runtime_model {
    char run[1024];
    char model_path[1100];
    struct eval_model m;
    int split, layers;       /* 0 .. L + 1, L */
    int use_mask;            /* the split is model.h5's, with its channel mask */
    int format;              /* enum wire_format of what crosses (0 at split L + 1) */
    int height, width, total, kept; /* of what crosses */
    uint16_t channels[WIRE_MAX_CHANNELS];
    struct wire_hello hello; /* the role is the caller's to set */
    struct arch_latency predicted; /* of the split on the tables and link of the job */
    double bytes_predicted;  /* what the prediction sends per image (payload of the values) */
};

/* Opens run/arch.json and run/model.h5 (see model.h). Returns 0 or -1 with an error naming
 * the file; call runtime_model_close either way. */
int runtime_model_open(struct runtime_model *rm, const char *run,
                       const struct runtime_model_options *opts);
void runtime_model_close(struct runtime_model *rm);

/* What one thread computes with: its own network (batch 1, the trained weights) and halves. */
struct runtime_worker {
    struct net *net;
    struct split_half half;
    float *values; /* (height, width, kept) floats of a received tensor */
};

int runtime_worker_open(struct runtime_worker *w, const struct runtime_model *rm);
void runtime_worker_close(struct runtime_worker *w);

/* Device side: the device half on one input x (side, side, channels; normalised as in
 * training) encoded as a TENSOR frame appended to b (split 0: the pixels as u8, recovered
 * from x). Returns 0, or -1 at split L + 1 (nothing to send: the logits are in w->net). */
int runtime_device_encode(struct runtime_worker *w, const struct runtime_model *rm,
                          const float *x, uint64_t id, struct wire_buf *b);

/* Edge side: checks a decoded tensor against the model (format, shape, channels; WIRE_E_FIELD
 * with an error naming the field otherwise), then runs the edge half: the logits in
 * w->net->logits. Returns 0 or the wire error. */
int runtime_edge_run(struct runtime_worker *w, const struct runtime_model *rm,
                     const struct wire_tensor *t);

#endif
