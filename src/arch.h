/* arch: the three learned choices of the search and the expected end-to-end latency.
 *
 *   alpha[l][o]  op logits of searchable layer l (1..L), pi = softmax(alpha[l])
 *   beta[s]      split logits, s = 0..L+1, p = softmax(beta): s = 0 sends the input, s in 1..L
 *                runs the stem and layers 1..s on the device and sends layer s's output,
 *                s = L+1 runs everything (head included) on the device and sends nothing
 *   gamma[s][c]  channel logits of the feature map sent at split s in 1..L, q = sigmoid(gamma)
 *
 * All three live in one float buffer (arch->params; gradients and Adam moments share its
 * layout), so an allreduce or an optimizer step is one call.
 *
 * Latency slots j = 0..L+1 are the stem, the searchable layers and the head (as in
 * latency.h). For split s the device runs slots 0..s (none when s = 0; all when s = L+1),
 * the edge the rest, and
 *   T(s) = sum_{j on device} D_j + T_net(bytes(s)) + sum_{j on edge} E_j,
 *   D_j = sum_o pi_jo T_dev[j][o] (fixed for stem and head), E_j likewise with T_edge,
 *   bytes(0) = input bytes (uint8), bytes(s) = H_s W_s bpv sum_c q_sc, T_net(L+1) = 0,
 *   E[T] = sum_s p_s T(s), computed with prefix sums; exact gradients in alpha, beta, gamma.
 */
#ifndef OFFNAS_ARCH_H
#define OFFNAS_ARCH_H

#include "latency.h"
#include "link.h"
#include "net.h"
#include "rng.h"

#include <stddef.h>

#define ARCH_MAX_SPLITS (NET_MAX_LAYERS + 2)

struct arch {
    int layer_count;                      /* L */
    int op_count[NET_MAX_LAYERS];         /* candidates of each searchable layer */
    int split_count;                      /* L + 2 */
    int channels[ARCH_MAX_SPLITS];        /* channels sent at split s (0 for s = L+1) */
    int side[ARCH_MAX_SPLITS];            /* spatial side of the map sent at split s */
    double input_bytes;                   /* bytes(0): the raw input as uint8 */
    size_t count;                         /* floats in params */
    size_t alpha[NET_MAX_LAYERS];         /* offsets into params */
    size_t beta;
    size_t gamma[ARCH_MAX_SPLITS];        /* valid for s in 1..L */
    float *params, *grads, *adam_m, *adam_v;
};

/* Sizes the parameters for net's search space: alpha 0 (uniform ops), beta 0 (uniform
 * splits), gamma gamma_init (keep probability sigmoid(gamma_init)). */
void arch_init(struct arch *arch, const struct net *net, float gamma_init);
void arch_free(struct arch *arch);

/* The latency inputs of E[T]: both devices' tables, scale factors, link and wire format. */
struct arch_cost {
    const struct latency_table *device, *edge;
    double device_scale, edge_scale;
    struct link link;
    int wire_bytes; /* bytes per value sent (fp32 4, fp16 2, int8 1) */
};

/* E[T] and its three parts, from pi, p, q. */
struct arch_latency {
    double total, device, transfer, edge; /* ms; total = device + transfer + edge */
};

/* Computes E[T] for the current params. When grads is non-NULL, ADDS scale * dE[T]/d(params)
 * into grads (same layout as params). Returns the expectation and its parts. */
struct arch_latency arch_expected_latency(const struct arch *arch, const struct arch_cost *cost,
                                          float *grads, double scale);

/* Latency of one exact network: ops[l] per layer, split s, kept channels at s (ignored for
 * s = 0 and L+1). */
struct arch_latency arch_network_latency(const struct arch *arch, const struct arch_cost *cost,
                                         const int *ops, int split, int kept_channels);

/* Pins the split: beta logit ARCH_FIXED_LOGIT at split, 0 elsewhere, so p(split) = 1 to float
 * precision and every sample draws it (the caller keeps beta's gradient at zero). */
#define ARCH_FIXED_LOGIT 60.0f
void arch_fix_split(struct arch *arch, int split);

/* The split arch_fix_split pinned, or -1 when the split is searched. */
int arch_pinned_split(const struct arch *arch);

/* min over splits s of T(s) for the current pi and q (only the pinned split when there is
 * one): the expected latency of the fastest split of the supernet, its split in *split_out
 * (may be NULL). The reference T_ref of search.t_ref = fastest. */
double arch_fastest_split_latency(const struct arch *arch, const struct arch_cost *cost,
                                  int *split_out);

/* Bytes sent at split s with kept_channels channels: the raw input for s = 0, the kept
 * channels of layer s's output in the wire format for s in 1..L, nothing for s = L+1. */
double arch_bytes_sent(const struct arch *arch, const struct arch_cost *cost, int split,
                       int kept_channels);

/* One sample of the search, drawn with hard Gumbel-softmax at temperature tau. */
struct arch_sample {
    int ops[NET_MAX_LAYERS];
    float op_soft[NET_MAX_LAYERS][NET_MAX_CANDIDATES]; /* softmax((alpha + g) / tau) */
    int split;
    float split_soft[ARCH_MAX_SPLITS];
    float mask[NET_MAX_CHANNELS];   /* hard 0/1 channel mask at split (1..L), from logistic noise */
    int kept;           /* ones in mask */
    float tau;
};

/* Draws ops, split and channel mask. */
void arch_sample(struct arch_sample *sample, const struct arch *arch, float tau, struct rng *rng);

/* Applies a sample to net: choices per layer, and the channel mask on the output of layer
 * split-1 for split in 1..L (no mask otherwise). */
void arch_apply(const struct arch_sample *sample, struct net *net);

/* After net_backward of a forward with the sample applied: ADDS the straight-through
 * gradients of the task loss to arch->grads, from net->gate_grad (d loss / d op gate per
 * layer; only with with_ops), net->split_gate_grad (d loss / d split gate) and net->mask_grad
 * (d loss / d mask). */
void arch_task_gradients(struct arch *arch, const struct arch_sample *sample,
                         const struct net *net, int with_ops);

/* The paired score-function estimate of d E[loss] / d alpha from two paths a and b drawn from
 * pi = softmax(alpha) and evaluated on the same batch (losses la, lb): ADDS (la - lb) / 2 to
 * the logit of a's op and subtracts it from b's in every layer where they differ (the
 * two-sample leave-one-out form of REINFORCE: (la - lb)/2 (d log pi(a) - d log pi(b))). */
void arch_paired_op_gradients(struct arch *arch, const struct arch_sample *a, double la,
                              const struct arch_sample *b, double lb);

/* Argmax op per layer, argmax split, and channels with q > 0.5 at that split (mask 0/1 into
 * mask, count returned in *kept). */
void arch_derive(const struct arch *arch, int *ops, int *split, float *mask, int *kept);

/* The probabilities: pi of layer l (op_count[l] values), p (split_count values), q at split s. */
void arch_op_probs(const struct arch *arch, int layer, double *pi);
void arch_split_probs(const struct arch *arch, double *p);
double arch_keep_prob(const struct arch *arch, int split, int channel);

#endif
