/* net: the supernet and the fixed networks built from it (DESIGN.md, "The search space").
 *
 * stem (3x3 conv, BN, ReLU6) -> L searchable layers -> head (1x1 conv, BN, ReLU6, average
 * pool, linear). Every layer holds all its candidate ops (inverted residual blocks k x k with
 * expansion e, or skip); one forward uses one candidate per layer (net->choice), so a step
 * costs one network. A fixed network is the same structure with one candidate per layer.
 *
 * All parameters live in one float buffer (net->params), gradients in a buffer of the same
 * layout (net->grads), laid out in reverse layer order (head, layer L-1 ... layer 0, stem) so
 * that gradient buckets fill in the order backward produces them. Every candidate's
 * parameters are one contiguous range, so an optimizer can step only the ops a batch used.
 * Activations are sized at creation for the largest candidate of each layer and a batch of
 * at most net->batch: forward and backward never allocate.
 *
 *     struct net *net = net_create(&job.net, 64, 28, 1, 10, 1, seed);
 *     net_forward(net, x, B, 1);                 // logits in net->logits (B, classes)
 *     float loss = op_softmax_xent_forward(net->probs, ..., net->logits, ...);
 *     op_softmax_xent_backward(net->probs, net->probs, labels, B, classes, 0);
 *     net_backward(net, net->probs, B);          // gradients accumulate in net->grads
 */
#ifndef OFFNAS_NET_H
#define OFFNAS_NET_H

#include "op.h"
#include "rng.h"

#include <stddef.h>

#define NET_MAX_LAYERS 32
#define NET_MAX_CANDIDATES 16
#define NET_MAX_CHANNELS 1024 /* of the stem and of every searchable layer (channel masks) */

/* What net_create builds; struct job holds one, filled from its [net] section. */
struct net_desc {
    int stem_channels; /* stem conv 3x3 output channels */
    int stem_stride;   /* stem conv stride, 1 or 2 */
    int head_channels; /* head 1x1 conv channels */
    int layer_count;
    int layer_channels[NET_MAX_LAYERS];
    int layer_stride[NET_MAX_LAYERS];
    struct op_spec fixed_ops[NET_MAX_LAYERS];      /* the fixed network: one op per layer */
    int candidate_count;
    struct op_spec candidates[NET_MAX_CANDIDATES]; /* the search space: ops of every layer */
    int shared; /* supernet: one superkernel per layer that every candidate slices (1), or
                 * separate weights per candidate (0); fixed networks ignore it */
};

/* A batch norm's place in the buffers: gamma/beta in params, running mean/var in stats. */
struct net_bn {
    int channels;
    size_t gamma, beta;       /* offsets into params (and grads) */
    size_t running;           /* offset into stats of the running mean (channels values) */
    size_t running_var;       /* ... and of the running variance */
    float *mean, *rstd;       /* batch statistics saved by the forward pass (channels each) */
};

/* One candidate op at one layer position. With separate weights it owns its parameters;
 * sliced from a layer's superkernel (net->shared) it uses the first `hidden` hidden channels
 * and the centre k x k of the layer's super block: w_expand and w_dw then index the super
 * block's (cin, Hmax) and (kmax, kmax, Hmax) arrays, w_project its first hidden rows, its
 * batch norms the first channels of the super block's, and offset/count the whole super
 * block (what a step of this candidate updates). */
struct net_block {
    struct op_spec spec;
    int cin, cout, hidden, kernel, stride, residual;
    size_t offset, count;             /* its parameters: params[offset, offset+count) */
    size_t w_expand, w_dw, w_project; /* (cin,hidden) [e>1 only], (k,k,hidden), (hidden,cout) */
    struct net_bn bn1, bn2, bn3;      /* after expand [e>1 only], depthwise, project */
    int sliced;                       /* 1: a slice of the layer's super block */
};

struct net_layer {
    int cin, cout, stride;
    int hin, win, hout, wout;
    int candidate_count;
    struct net_block cand[NET_MAX_CANDIDATES];
    /* shared supernet: the superkernel at the largest kernel kmax and hidden width Hmax =
     * cin * emax of the layer's candidates (spec k<kmax>e<emax>), and the contiguous copies of
     * a sliced candidate's expand and depthwise weights and their gradients */
    struct net_block super;
    float *w_expand, *g_expand, *w_dw, *g_dw;
    size_t offset, count; /* parameters of all candidates of the layer */
    /* activations of the chosen candidate: (B, hin, win, hidden) for a1 r1, (B, hout, wout,
     * hidden) for a2 r2, (B, hout, wout, cout) for a3 and out */
    float *a1, *r1, *a2, *r2, *a3, *out;
    const float *in; /* input of the last forward */
    const float *y;  /* output of the last forward (out, or in for skip, or the masked copy) */
};

#define NET_MAX_BN_GROUPS 64
#define NET_BN_MOMENTUM 0.1f /* running = (1 - m) running + m batch, as PyTorch's default */

struct net {
    int batch;        /* largest batch forward accepts */
    int side;         /* input side */
    int in_channels;
    int classes;
    int layer_count;
    struct net_layer layers[NET_MAX_LAYERS];
    int choice[NET_MAX_LAYERS]; /* candidate used per layer by the next forward */

    /* stem: conv 3x3 stride stem_stride -> BN -> ReLU6, output (B, stem_side, stem_side,
     * stem_channels) */
    int stem_channels;
    int stem_stride, stem_side;
    size_t w_stem;
    struct net_bn bn_stem;
    float *stem_col, *stem_a, *stem_y;
    const float *input;

    /* head: pointwise -> BN -> ReLU6 -> average pool -> linear */
    int head_channels;
    size_t w_head, w_fc, b_fc;
    struct net_bn bn_head;
    float *head_a, *head_y, *pooled, *logits, *probs;

    /* channel mask on the output of layer mask_layer (-1: none), mask (cout of that layer) */
    int mask_layer;
    float *mask;
    float *mask_grad;   /* (max channels) straight-through gradient of the mask */
    float *masked;      /* masked copy of the feature map */
    /* The wire format of what crosses the split (enum wire_format, 0: none simulated), as
     * `train --arch`, eval and the runtime agree on it: at mask_layer, int8 and fp16 values are
     * quantised and dequantised per image as the runtime sends them (straight-through
     * gradient); WIRE_U8 (split 0) means the input pixels are rounded, which the batch fillers
     * do (train_batch.round_u8). */
    int wire_format;

    /* With want_gate_grad set, net_backward stores d loss / d h_l for a gate h_l = 1 that
     * multiplies the output of layer l's chosen op: sum(dy * y) over that output (GDAS-style
     * straight-through gradient of the op choice). */
    int want_gate_grad;
    float gate_grad[NET_MAX_LAYERS];
    /* With skip_weight_grads set, net_backward computes only what flows back to the layers'
     * inputs (gate and mask gradients, batch-norm scale and shift as a by-product) and none of
     * the convolution and linear weight gradients, nor the stem's or the first layer's backward
     * (nothing flows from them to a gate): the architecture step, which uses no weight
     * gradient. */
    int skip_weight_grads;

    /* Batch norm in training mode computes its statistics over bn_groups equal slices of the
     * batch (default 1: the whole batch). With one group per data shard, one trainer computes
     * exactly what one trainer per shard computes (the batch must divide into the groups). */
    int bn_groups;
    /* Momentum of the running averages (NET_BN_MOMENTUM; 1/(k+1) at the k-th batch of a
     * re-estimation makes them the plain mean of the batches). */
    float bn_momentum;

    /* When set, net_backward calls grad_ready(ctx, grads, offset, count) for every parameter
     * range as soon as its gradient is final, in buffer order (head, the chosen op of layer
     * L-1 ... 0, stem), so gradient allreduce can start while backward goes on. */
    void (*grad_ready)(void *ctx, float *grads, size_t offset, size_t count);
    void *grad_ready_ctx;

    float *params, *grads;
    size_t param_count;
    size_t head_offset, head_count, stem_offset, stem_count;
    float *stats;
    size_t stat_count;

    /* backward scratch */
    float *g_a, *g_b;       /* feature-map gradients, ping-pong */
    float *g_hid1, *g_hid2; /* hidden-width gradients */
    float *g_col;           /* stem dcol */
    float *bn_saved;        /* storage of every BN's batch mean/rstd */
    double *bn_sums;        /* the batch-norm sums a pointwise GEMM gathers, per group */
    size_t bn_sums_size;    /* doubles in bn_sums, grown on first use */
    int training;           /* mode of the last forward */
    int shared;             /* candidates slice one superkernel per layer (a supernet only) */
};

/* Builds the network desc describes: with fixed != 0 one candidate per layer (fixed_ops),
 * otherwise the supernet (the candidates at every layer, skip only where shapes allow).
 * Parameters are initialised from seed (Kaiming normal, fan-out; BN gamma 1, beta 0).
 * Returns NULL with an error when a layer's feature map would shrink below 1x1. */
struct net *net_create(const struct net_desc *desc, int batch, int side, int in_channels,
                       int classes, int fixed, uint64_t seed);
void net_free(struct net *net);

/* Channels and side of the feature map after slot s: the stem's output for s = 0, layer s's
 * output (net->layers[s - 1]) for s in 1..L; s = L is what the head takes. */
static inline int net_out_channels(const struct net *net, int s)
{
    return s > 0 ? net->layers[s - 1].cout : net->stem_channels;
}
static inline int net_out_side(const struct net *net, int s)
{
    return s > 0 ? net->layers[s - 1].hout : net->stem_side;
}

/* Forward over B <= net->batch images x (B, side, side, in_channels) with net->choice; logits
 * go to net->logits (B, classes). training selects batch statistics (and updates running
 * averages) or running averages. */
void net_forward(struct net *net, const float *x, int B, int training);

/* The three stages of net_forward, for profiling one piece at a time: the stem on x (output
 * in net->stem_y), one candidate of layer l on in (returns its output, masked if l is the mask
 * layer), and the head on in (logits in net->logits). */
void net_run_stem(struct net *net, const float *x, int B, int training);
const float *net_run_block(struct net *net, int layer, int candidate, const float *in, int B,
                           int training);
void net_run_head(struct net *net, const float *in, int B, int training);

/* Backward from dlogits (B, classes) of the last training forward; ACCUMULATES parameter
 * gradients into net->grads (zero them first with net_zero_grads), and into net->mask_grad
 * when a mask is active. */
void net_backward(struct net *net, const float *dlogits, int B);

void net_zero_grads(struct net *net);

/* Sets every batch norm's running mean to 0 and variance to 1 (before re-estimating them for
 * one path of a supernet). */
void net_reset_running_stats(struct net *net);

/* Parameters and multiply-accumulates per image of the network with the current choices. */
size_t net_param_count_chosen(const struct net *net);
double net_macs_chosen(const struct net *net);
/* Multiply-accumulates per image of one candidate at one layer. */
double net_block_macs(const struct net *net, int layer, int candidate);

/* Calls fn(offset, count, ctx) for every parameter range the current choices use (stem, the
 * chosen candidates, head), in buffer order: what one optimizer step must update. */
void net_for_each_used_range(const struct net *net, void (*fn)(size_t, size_t, void *), void *ctx);

/* After weights were read from path into net->params and net->stats: every parameter and
 * running statistic is finite and every running variance >= 0. Returns 0, or -1 with
 * "PATH: FIELD[i]: VALUE is ..." (params_field, stats_field: the data sets they came from). */
int net_check_loaded(const struct net *net, const char *path, const char *params_field,
                     const char *stats_field);

/* Index of the candidate named spec at layer l, or -1. */
int net_find_candidate(const struct net *net, int layer, const struct op_spec *spec);

#endif
