/* arch: op, split and channel parameters, their sampling, and the expected latency with its
 * exact gradients (see arch.h for the math). */
#include "arch.h"

#include "common.h"

#include <math.h>
#include <string.h>

void arch_init(struct arch *arch, const struct net *net, float gamma_init)
{
    memset(arch, 0, sizeof *arch);
    int L = net->layer_count;
    arch->layer_count = L;
    arch->split_count = L + 2;
    size_t at = 0;
    for (int l = 0; l < L; l++) {
        arch->op_count[l] = net->layers[l].candidate_count;
        arch->alpha[l] = at;
        at += (size_t)arch->op_count[l];
    }
    arch->beta = at;
    at += (size_t)arch->split_count;
    arch->channels[0] = net->in_channels;
    arch->side[0] = net->side;
    for (int s = 1; s <= L; s++) {
        arch->channels[s] = net_out_channels(net, s);
        arch->side[s] = net_out_side(net, s);
        arch->gamma[s] = at;
        at += (size_t)arch->channels[s];
    }
    arch->channels[L + 1] = 0;
    arch->input_bytes = (double)net->side * net->side * net->in_channels;
    arch->count = at;
    arch->params = offnas_calloc(at, sizeof(float));
    arch->grads = offnas_calloc(at, sizeof(float));
    arch->adam_m = offnas_calloc(at, sizeof(float));
    arch->adam_v = offnas_calloc(at, sizeof(float));
    for (int s = 1; s <= L; s++)
        for (int c = 0; c < arch->channels[s]; c++)
            arch->params[arch->gamma[s] + c] = gamma_init;
}

void arch_free(struct arch *arch)
{
    free(arch->params);
    free(arch->grads);
    free(arch->adam_m);
    free(arch->adam_v);
    memset(arch, 0, sizeof *arch);
}

/* Numerically safe softmax of n floats into double. */
static void softmax(double *out, const float *logits, int n, double inv_tau)
{
    double max = logits[0];
    for (int i = 1; i < n; i++)
        if (logits[i] > max)
            max = logits[i];
    double sum = 0.0;
    for (int i = 0; i < n; i++)
        sum += out[i] = exp(((double)logits[i] - max) * inv_tau);
    for (int i = 0; i < n; i++)
        out[i] /= sum;
}

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

void arch_op_probs(const struct arch *arch, int layer, double *pi)
{
    softmax(pi, arch->params + arch->alpha[layer], arch->op_count[layer], 1.0);
}

void arch_split_probs(const struct arch *arch, double *p)
{
    softmax(p, arch->params + arch->beta, arch->split_count, 1.0);
}

double arch_keep_prob(const struct arch *arch, int split, int channel)
{
    return sigmoid(arch->params[arch->gamma[split] + channel]);
}

/* ms per byte on the link: T_net(b) = rtt + b * per_byte. */
static double per_byte_ms(const struct arch_cost *cost)
{
    return 8.0 / (cost->link.bandwidth_mbps * 1e3);
}

/* Per-slot costs of the stem (0) and head (L+1): one op each. */
static double slot_fixed(const struct latency_table *t, int slot, double scale)
{
    return latency_ms(t, slot, 0, scale);
}

struct arch_latency arch_expected_latency(const struct arch *arch, const struct arch_cost *cost,
                                          float *grads, double scale)
{
    int L = arch->layer_count, S = arch->split_count;
    double D[ARCH_MAX_SPLITS], E[ARCH_MAX_SPLITS]; /* expected cost of slot j on each side */
    double pi[NET_MAX_LAYERS][NET_MAX_CANDIDATES];
    D[0] = slot_fixed(cost->device, 0, cost->device_scale);
    E[0] = slot_fixed(cost->edge, 0, cost->edge_scale);
    D[L + 1] = slot_fixed(cost->device, L + 1, cost->device_scale);
    E[L + 1] = slot_fixed(cost->edge, L + 1, cost->edge_scale);
    for (int l = 0; l < L; l++) {
        arch_op_probs(arch, l, pi[l]);
        D[l + 1] = E[l + 1] = 0.0;
        for (int o = 0; o < arch->op_count[l]; o++) {
            D[l + 1] += pi[l][o] * latency_ms(cost->device, l + 1, o, cost->device_scale);
            E[l + 1] += pi[l][o] * latency_ms(cost->edge, l + 1, o, cost->edge_scale);
        }
    }
    /* prefix sums of device cost, suffix sums of edge cost */
    double dev_prefix[ARCH_MAX_SPLITS], edge_suffix[ARCH_MAX_SPLITS + 1];
    for (int j = 0; j <= L + 1; j++)
        dev_prefix[j] = D[j] + (j ? dev_prefix[j - 1] : 0.0);
    edge_suffix[L + 2] = 0.0;
    for (int j = L + 1; j >= 0; j--)
        edge_suffix[j] = E[j] + edge_suffix[j + 1];

    double p[ARCH_MAX_SPLITS], T[ARCH_MAX_SPLITS], dev[ARCH_MAX_SPLITS], net[ARCH_MAX_SPLITS],
        edge[ARCH_MAX_SPLITS];
    arch_split_probs(arch, p);
    double bpv = per_byte_ms(cost) * cost->wire_bytes;
    for (int s = 0; s < S; s++) {
        dev[s] = s == 0 ? 0.0 : dev_prefix[s];
        edge[s] = s == 0 ? edge_suffix[0] : edge_suffix[s + 1];
        if (s == 0) {
            net[s] = link_transfer_ms(&cost->link, arch->input_bytes);
        } else if (s <= L) {
            double kept = 0.0;
            for (int c = 0; c < arch->channels[s]; c++)
                kept += arch_keep_prob(arch, s, c);
            net[s] = cost->link.rtt_ms + (double)arch->side[s] * arch->side[s] * kept * bpv;
        } else {
            net[s] = 0.0;
        }
        T[s] = dev[s] + net[s] + edge[s];
    }
    struct arch_latency r = {0, 0, 0, 0};
    for (int s = 0; s < S; s++) {
        r.total += p[s] * T[s];
        r.device += p[s] * dev[s];
        r.transfer += p[s] * net[s];
        r.edge += p[s] * edge[s];
    }
    if (!grads)
        return r;

    /* beta: dE/dbeta_s = p_s (T_s - E[T]) */
    for (int s = 0; s < S; s++)
        grads[arch->beta + s] += (float)(scale * p[s] * (T[s] - r.total));
    /* gamma: dE/dq_sc = p_s H_s W_s bpv / BW, times q (1 - q) */
    for (int s = 1; s <= L; s++) {
        double dq = p[s] * (double)arch->side[s] * arch->side[s] * bpv;
        for (int c = 0; c < arch->channels[s]; c++) {
            double q = arch_keep_prob(arch, s, c);
            grads[arch->gamma[s] + c] += (float)(scale * dq * q * (1.0 - q));
        }
    }
    /* alpha: layer slot j = l+1 runs on the device for every s >= j */
    double on_device = 0.0; /* sum of p_s for s >= j, built from the top */
    double tail[ARCH_MAX_SPLITS + 1];
    tail[S] = 0.0;
    for (int s = S - 1; s >= 0; s--)
        tail[s] = p[s] + tail[s + 1];
    for (int l = 0; l < L; l++) {
        on_device = tail[l + 1];
        double g[NET_MAX_CANDIDATES], mean = 0.0;
        for (int o = 0; o < arch->op_count[l]; o++) {
            g[o] = on_device * latency_ms(cost->device, l + 1, o, cost->device_scale) +
                   (1.0 - on_device) * latency_ms(cost->edge, l + 1, o, cost->edge_scale);
            mean += pi[l][o] * g[o];
        }
        for (int o = 0; o < arch->op_count[l]; o++)
            grads[arch->alpha[l] + o] += (float)(scale * pi[l][o] * (g[o] - mean));
    }
    return r;
}

double arch_bytes_sent(const struct arch *arch, const struct arch_cost *cost, int split,
                       int kept_channels)
{
    if (split == 0)
        return arch->input_bytes;
    if (split > arch->layer_count)
        return 0.0;
    return (double)arch->side[split] * arch->side[split] * kept_channels * cost->wire_bytes;
}

struct arch_latency arch_network_latency(const struct arch *arch, const struct arch_cost *cost,
                                         const int *ops, int split, int kept_channels)
{
    int L = arch->layer_count;
    struct arch_latency r = {0, 0, 0, 0};
    for (int j = 0; j <= L + 1; j++) {
        int op = (j == 0 || j == L + 1) ? 0 : ops[j - 1];
        int on_device = split >= 1 && j <= split;
        if (on_device)
            r.device += latency_ms(cost->device, j, op, cost->device_scale);
        else
            r.edge += latency_ms(cost->edge, j, op, cost->edge_scale);
    }
    if (split == 0)
        r.transfer = link_transfer_ms(&cost->link, arch->input_bytes);
    else if (split <= L)
        r.transfer = cost->link.rtt_ms +
                     arch_bytes_sent(arch, cost, split, kept_channels) * per_byte_ms(cost);
    r.total = r.device + r.transfer + r.edge;
    return r;
}

/* Hard Gumbel-softmax: soft = softmax((logits + g) / tau), returns argmax. */
static int gumbel_pick(float *soft, const float *logits, int n, float tau, struct rng *rng)
{
    float z[ARCH_MAX_SPLITS > NET_MAX_CANDIDATES ? ARCH_MAX_SPLITS : NET_MAX_CANDIDATES] = {0};
    double out[ARCH_MAX_SPLITS > NET_MAX_CANDIDATES ? ARCH_MAX_SPLITS : NET_MAX_CANDIDATES];
    int best = 0;
    for (int i = 0; i < n; i++) {
        z[i] = (float)(logits[i] + rng_gumbel(rng));
        if (z[i] > z[best])
            best = i;
    }
    softmax(out, z, n, 1.0 / tau);
    for (int i = 0; i < n; i++)
        soft[i] = (float)out[i];
    return best;
}

void arch_sample(struct arch_sample *sample, const struct arch *arch, float tau, struct rng *rng)
{
    sample->tau = tau;
    for (int l = 0; l < arch->layer_count; l++)
        sample->ops[l] = gumbel_pick(sample->op_soft[l], arch->params + arch->alpha[l],
                                     arch->op_count[l], tau, rng);
    sample->split = gumbel_pick(sample->split_soft, arch->params + arch->beta, arch->split_count,
                                tau, rng);
    sample->kept = 0;
    int s = sample->split;
    if (s >= 1 && s <= arch->layer_count) {
        /* Bernoulli(sigmoid(gamma)) as gamma + logistic noise > 0 */
        for (int c = 0; c < arch->channels[s]; c++) {
            double u = rng_uniform(rng);
            u = u < 1e-12 ? 1e-12 : u;
            double noise = log(u) - log1p(-u);
            sample->mask[c] = arch->params[arch->gamma[s] + c] + noise > 0.0 ? 1.0f : 0.0f;
            sample->kept += sample->mask[c] != 0.0f;
        }
    }
}

void arch_apply(const struct arch_sample *sample, struct net *net)
{
    for (int l = 0; l < net->layer_count; l++)
        net->choice[l] = sample->ops[l];
    int s = sample->split;
    if (s >= 1 && s <= net->layer_count) {
        net->mask_layer = s - 1;
        memcpy(net->mask, sample->mask, (size_t)net->layers[s - 1].cout * sizeof(float));
    } else {
        net->mask_layer = -1;
    }
}

/* grads[o] += upstream * d soft_k / d logits_o with soft = softmax(z / tau), k the pick. */
static void soft_pick_grad(float *grads, const float *soft, int n, int k, double upstream,
                           float tau)
{
    for (int o = 0; o < n; o++)
        grads[o] += (float)(upstream * soft[k] * ((o == k) - soft[o]) / tau);
}

void arch_task_gradients(struct arch *arch, const struct arch_sample *sample,
                         const struct net *net, int with_ops)
{
    for (int l = 0; with_ops && l < arch->layer_count; l++)
        soft_pick_grad(arch->grads + arch->alpha[l], sample->op_soft[l], arch->op_count[l],
                       sample->ops[l], net->gate_grad[l], sample->tau);
    int s = sample->split;
    if (s < 1 || s > arch->layer_count)
        return;
    /* split gate h: y' = h (y * m) + (1 - h) y, so dL/dh = sum_c (m_c - 1) dL/dm_c */
    double split_grad = 0.0;
    for (int c = 0; c < arch->channels[s]; c++)
        split_grad += (sample->mask[c] - 1.0) * net->mask_grad[c];
    soft_pick_grad(arch->grads + arch->beta, sample->split_soft, arch->split_count, s, split_grad,
                   sample->tau);
    for (int c = 0; c < arch->channels[s]; c++) {
        double q = arch_keep_prob(arch, s, c);
        arch->grads[arch->gamma[s] + c] += (float)(net->mask_grad[c] * q * (1.0 - q));
    }
}

void arch_paired_op_gradients(struct arch *arch, const struct arch_sample *a, double la,
                              const struct arch_sample *b, double lb)
{
    float half = (float)(0.5 * (la - lb));
    for (int l = 0; l < arch->layer_count; l++) {
        if (a->ops[l] == b->ops[l])
            continue;
        arch->grads[arch->alpha[l] + a->ops[l]] += half;
        arch->grads[arch->alpha[l] + b->ops[l]] -= half;
    }
}

static int argmax(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return best;
}

void arch_derive(const struct arch *arch, int *ops, int *split, float *mask, int *kept)
{
    for (int l = 0; l < arch->layer_count; l++)
        ops[l] = argmax(arch->params + arch->alpha[l], arch->op_count[l]);
    int s = argmax(arch->params + arch->beta, arch->split_count);
    *split = s;
    *kept = 0;
    if (s < 1 || s > arch->layer_count)
        return;
    const float *g = arch->params + arch->gamma[s];
    for (int c = 0; c < arch->channels[s]; c++) {
        mask[c] = g[c] > 0.0f ? 1.0f : 0.0f; /* q > 0.5 */
        *kept += mask[c] != 0.0f;
    }
    if (*kept == 0) { /* send at least the most likely channel */
        mask[argmax(g, arch->channels[s])] = 1.0f;
        *kept = 1;
    }
}

void arch_fix_split(struct arch *arch, int split)
{
    float *beta = arch->params + arch->beta;
    for (int s = 0; s < arch->split_count; s++)
        beta[s] = s == split ? ARCH_FIXED_LOGIT : 0.0f;
}

int arch_pinned_split(const struct arch *arch)
{
    const float *beta = arch->params + arch->beta;
    for (int s = 0; s < arch->split_count; s++)
        if (beta[s] == ARCH_FIXED_LOGIT)
            return s;
    return -1;
}

double arch_fastest_split_latency(const struct arch *arch, const struct arch_cost *cost,
                                  int *split_out)
{
    struct arch pinned = *arch;
    pinned.params = offnas_malloc(arch->count * sizeof(float));
    pinned.grads = pinned.adam_m = pinned.adam_v = NULL;
    int pinned_split = arch_pinned_split(arch);
    double best = INFINITY;
    int best_split = -1;
    for (int s = 0; s < arch->split_count; s++) {
        if (pinned_split >= 0 && s != pinned_split)
            continue;
        memcpy(pinned.params, arch->params, arch->count * sizeof(float));
        arch_fix_split(&pinned, s);
        double t = arch_expected_latency(&pinned, cost, NULL, 0).total;
        if (t < best) {
            best = t;
            best_split = s;
        }
    }
    free(pinned.params);
    if (split_out)
        *split_out = best_split;
    return best;
}
