/* net: building, running and differentiating the supernet (see net.h). */
#include "net.h"
#include "wire.h"

#include "check.h"
#include "common.h"
#include "op.h"

#include <math.h>
#include <stdio.h>
#include <string.h>


/* Layout pass: hands out parameter and stats offsets in order. */
struct layout {
    size_t params, stats, saved;
};

static void bn_place(struct net_bn *bn, int channels, struct layout *at)
{
    bn->channels = channels;
    bn->gamma = at->params;
    bn->beta = at->params + (size_t)channels;
    at->params += 2 * (size_t)channels;
    bn->running = at->stats;
    bn->running_var = at->stats + (size_t)channels;
    at->stats += 2 * (size_t)channels;
    at->saved += 2 * (size_t)channels * NET_MAX_BN_GROUPS;
}

static void block_place(struct net_block *blk, struct layout *at)
{
    blk->offset = at->params;
    if (blk->spec.kind == OP_SKIP) {
        blk->count = 0;
        return;
    }
    if (blk->spec.expand != 1) {
        blk->w_expand = at->params;
        at->params += (size_t)blk->cin * blk->hidden;
        bn_place(&blk->bn1, blk->hidden, at);
    }
    blk->w_dw = at->params;
    at->params += (size_t)blk->kernel * blk->kernel * blk->hidden;
    bn_place(&blk->bn2, blk->hidden, at);
    blk->w_project = at->params;
    at->params += (size_t)blk->hidden * blk->cout;
    bn_place(&blk->bn3, blk->cout, at);
    blk->count = at->params - blk->offset;
}

/* A batch norm over the first `channels` channels of super (its parameters and running
 * statistics), with batch statistics of its own. */
static void bn_view(struct net_bn *bn, const struct net_bn *super, int channels,
                    struct layout *at)
{
    *bn = *super;
    bn->channels = channels;
    at->saved += 2 * (size_t)channels * NET_MAX_BN_GROUPS;
}

/* The super block of a layer: a block at the largest kernel and expansion of its candidates.
 * Returns 0 when every candidate is skip (no super block). */
static int super_shape(struct net_layer *layer)
{
    struct net_block *sb = &layer->super;
    memset(sb, 0, sizeof *sb);
    int kmax = 0, emax = 0;
    for (int i = 0; i < layer->candidate_count; i++) {
        const struct op_spec *spec = &layer->cand[i].spec;
        if (spec->kind == OP_SKIP)
            continue;
        kmax = spec->kernel > kmax ? spec->kernel : kmax;
        emax = spec->expand > emax ? spec->expand : emax;
    }
    if (!kmax)
        return 0;
    sb->spec = (struct op_spec){OP_BLOCK, kmax, emax};
    sb->cin = layer->cin;
    sb->cout = layer->cout;
    sb->stride = layer->stride;
    sb->kernel = kmax;
    sb->hidden = layer->cin * emax;
    sb->residual = layer->stride == 1 && layer->cin == layer->cout;
    return 1;
}

/* Places a layer's super block and makes every block candidate a slice of it. */
static void super_place(struct net_layer *layer, struct layout *at)
{
    struct net_block *sb = &layer->super;
    if (!super_shape(layer)) {
        for (int i = 0; i < layer->candidate_count; i++)
            block_place(&layer->cand[i], at);
        return;
    }
    block_place(sb, at);
    for (int i = 0; i < layer->candidate_count; i++) {
        struct net_block *blk = &layer->cand[i];
        if (blk->spec.kind == OP_SKIP) {
            blk->offset = at->params;
            blk->count = 0;
            continue;
        }
        blk->sliced = 1;
        blk->offset = sb->offset;
        blk->count = sb->count;
        blk->w_expand = sb->w_expand;
        blk->w_dw = sb->w_dw;
        blk->w_project = sb->w_project;
        if (blk->spec.expand != 1)
            bn_view(&blk->bn1, &sb->bn1, blk->hidden, at);
        bn_view(&blk->bn2, &sb->bn2, blk->hidden, at);
        bn_view(&blk->bn3, &sb->bn3, blk->cout, at);
    }
}

static void bn_bind(struct net_bn *bn, float **saved)
{
    /* group g's statistics at mean + g*channels, rstd + g*channels */
    bn->mean = *saved;
    bn->rstd = *saved + (size_t)bn->channels * NET_MAX_BN_GROUPS;
    *saved += 2 * (size_t)bn->channels * NET_MAX_BN_GROUPS;
}

static void bn_init(struct net *net, const struct net_bn *bn)
{
    for (int c = 0; c < bn->channels; c++) {
        net->params[bn->gamma + c] = 1.0f;
        net->params[bn->beta + c] = 0.0f;
        net->stats[bn->running + c] = 0.0f;
        net->stats[bn->running_var + c] = 1.0f;
    }
}

/* Kaiming normal with fan-out, as torchvision initialises MobileNet convolutions. */
static void kaiming(float *w, size_t n, int fan_out, struct rng *rng)
{
    double std = sqrt(2.0 / fan_out);
    for (size_t i = 0; i < n; i++)
        w[i] = (float)(std * rng_normal(rng));
}

static int spec_allowed(const struct op_spec *spec, int cin, int cout, int stride)
{
    return spec->kind != OP_SKIP || (stride == 1 && cin == cout);
}

/* Shapes of every layer and its candidates (desc's fixed op, or every candidate that fits).
 * Returns 0, or -1 with an error when a feature map would shrink below 1x1 or a layer has
 * no candidate that fits. */
static int net_shape(struct net *net, const struct net_desc *desc, int fixed)
{
    int h = net->stem_side, cin = net->stem_channels;
    for (int l = 0; l < net->layer_count; l++) {
        struct net_layer *layer = &net->layers[l];
        layer->cin = cin;
        layer->cout = desc->layer_channels[l];
        layer->stride = desc->layer_stride[l];
        layer->hin = layer->win = h;
        layer->hout = layer->wout = op_conv_out_size(h, 3, layer->stride);
        if (layer->hout < 1)
            return offnas_error("net.layers: layer %d would shrink the %dx%d feature map below "
                                "1x1", l + 1, h, h);
        const struct op_spec *specs = fixed ? &desc->fixed_ops[l] : desc->candidates;
        int count = fixed ? 1 : desc->candidate_count;
        for (int i = 0; i < count; i++) {
            if (!spec_allowed(&specs[i], layer->cin, layer->cout, layer->stride))
                continue;
            struct net_block *blk = &layer->cand[layer->candidate_count++];
            blk->spec = specs[i];
            blk->cin = layer->cin;
            blk->cout = layer->cout;
            blk->stride = layer->stride;
            blk->kernel = specs[i].kernel;
            blk->hidden = specs[i].kind == OP_SKIP ? layer->cin : layer->cin * specs[i].expand;
            blk->residual = layer->stride == 1 && layer->cin == layer->cout;
        }
        if (layer->candidate_count == 0)
            return offnas_error("net: layer %d (%d->%d channels, stride %d) has no candidate op "
                                "that fits", l + 1, layer->cin, layer->cout, layer->stride);
        h = layer->hout;
        cin = layer->cout;
    }
    return 0;
}

/* Parameter and statistics offsets in reverse layer order (head, layers L-1..0, stem), and
 * the buffers they index. */
static void net_layout(struct net *net)
{
    struct layout at = {0, 0, 0};
    int last_c = net_out_channels(net, net->layer_count);
    net->head_offset = at.params;
    net->w_head = at.params;
    at.params += (size_t)last_c * net->head_channels;
    bn_place(&net->bn_head, net->head_channels, &at);
    net->w_fc = at.params;
    at.params += (size_t)net->head_channels * net->classes;
    net->b_fc = at.params;
    at.params += (size_t)net->classes;
    net->head_count = at.params - net->head_offset;
    for (int l = net->layer_count - 1; l >= 0; l--) {
        struct net_layer *layer = &net->layers[l];
        layer->offset = at.params;
        if (net->shared)
            super_place(layer, &at);
        else
            for (int i = 0; i < layer->candidate_count; i++)
                block_place(&layer->cand[i], &at);
        layer->count = at.params - layer->offset;
    }
    net->stem_offset = at.params;
    net->w_stem = at.params;
    at.params += (size_t)9 * net->in_channels * net->stem_channels;
    bn_place(&net->bn_stem, net->stem_channels, &at);
    net->stem_count = at.params - net->stem_offset;

    net->param_count = at.params;
    net->stat_count = at.stats;
    net->params = offnas_calloc(at.params, sizeof(float));
    net->grads = offnas_calloc(at.params, sizeof(float));
    net->stats = offnas_calloc(at.stats, sizeof(float));
    net->bn_saved = offnas_calloc(at.saved, sizeof(float));
}

/* Gives every batch norm its slice of net->bn_saved for the batch statistics. */
static void net_bind_batchnorms(struct net *net)
{
    float *saved = net->bn_saved;
    bn_bind(&net->bn_head, &saved);
    bn_bind(&net->bn_stem, &saved);
    for (int l = 0; l < net->layer_count; l++)
        for (int i = 0; i < net->layers[l].candidate_count; i++) {
            struct net_block *blk = &net->layers[l].cand[i];
            if (blk->spec.kind == OP_SKIP)
                continue;
            if (blk->spec.expand != 1)
                bn_bind(&blk->bn1, &saved);
            bn_bind(&blk->bn2, &saved);
            bn_bind(&blk->bn3, &saved);
        }
}

/* Initial values of one candidate's parameters, drawn from rng. */
static void block_init(struct net *net, const struct net_block *blk, struct rng *rng)
{
    if (blk->spec.expand != 1) {
        kaiming(net->params + blk->w_expand, (size_t)blk->cin * blk->hidden, blk->hidden, rng);
        bn_init(net, &blk->bn1);
    }
    kaiming(net->params + blk->w_dw, (size_t)blk->kernel * blk->kernel * blk->hidden,
            blk->kernel * blk->kernel, rng);
    bn_init(net, &blk->bn2);
    kaiming(net->params + blk->w_project, (size_t)blk->hidden * blk->cout, blk->cout, rng);
    bn_init(net, &blk->bn3);
    /* A residual block starts as the identity (its last BN scale 0, as in Goyal et al. 2017):
     * a supernet then starts as a shallow network whatever ops are sampled, which shortens the
     * plateau at the start of a search. */
    if (blk->residual)
        for (int c = 0; c < blk->cout; c++)
            net->params[blk->bn3.gamma + c] = 0.0f;
}

/* Initial values of every parameter and running statistic, drawn from seed in the order stem,
 * layers 0..L-1, head. */
static void net_init_params(struct net *net, uint64_t seed)
{
    struct rng rng;
    rng_seed(&rng, seed, 0x6e6574);
    kaiming(net->params + net->w_stem, (size_t)9 * net->in_channels * net->stem_channels,
            9 * net->stem_channels, &rng);
    bn_init(net, &net->bn_stem);
    for (int l = 0; l < net->layer_count; l++) {
        const struct net_layer *layer = &net->layers[l];
        if (net->shared && layer->super.hidden)
            block_init(net, &layer->super, &rng);
        else
            for (int i = 0; i < layer->candidate_count; i++)
                if (layer->cand[i].spec.kind != OP_SKIP)
                    block_init(net, &layer->cand[i], &rng);
    }
    int last_c = net_out_channels(net, net->layer_count);
    kaiming(net->params + net->w_head, (size_t)last_c * net->head_channels, net->head_channels,
            &rng);
    bn_init(net, &net->bn_head);
    for (size_t i = 0; i < (size_t)net->head_channels * net->classes; i++)
        net->params[net->w_fc + i] = (float)(0.01 * rng_normal(&rng));
}

static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

/* Activations of a layer for a batch of B, sized for its largest candidate. Widens *max_feat
 * and *max_hid to its feature maps and hidden maps. */
static void layer_alloc(struct net_layer *layer, size_t B, size_t *max_feat, size_t *max_hid)
{
    int hidden = 0;
    for (int i = 0; i < layer->candidate_count; i++)
        if (layer->cand[i].hidden > hidden)
            hidden = layer->cand[i].hidden;
    size_t pin = B * layer->hin * layer->win, pout = B * layer->hout * layer->wout;
    layer->a1 = offnas_malloc(pin * hidden * sizeof(float));
    layer->r1 = offnas_malloc(pin * hidden * sizeof(float));
    layer->a2 = offnas_malloc(pout * hidden * sizeof(float));
    layer->r2 = offnas_malloc(pout * hidden * sizeof(float));
    layer->a3 = offnas_malloc(pout * layer->cout * sizeof(float));
    layer->out = offnas_malloc(pout * layer->cout * sizeof(float));
    *max_hid = max_size(*max_hid, pin * hidden);
    *max_feat = max_size(*max_feat, max_size(pin * layer->cin, pout * layer->cout));
    const struct net_block *sb = &layer->super;
    if (sb->hidden) { /* a sliced candidate's weights and gradients, contiguous */
        size_t expand = (size_t)sb->cin * sb->hidden, dw = (size_t)sb->kernel * sb->kernel * sb->hidden;
        layer->w_expand = offnas_malloc(expand * sizeof(float));
        layer->g_expand = offnas_malloc(expand * sizeof(float));
        layer->w_dw = offnas_malloc(dw * sizeof(float));
        layer->g_dw = offnas_malloc(dw * sizeof(float));
    }
}

/* Activations, backward scratch and the channel mask, for batches of at most net->batch. */
static void net_alloc_activations(struct net *net)
{
    size_t B = (size_t)net->batch, stem_pixels = B * net->stem_side * net->stem_side;
    size_t max_feat = stem_pixels * net->stem_channels, max_hid = 0;
    net->stem_col = offnas_malloc(stem_pixels * 9 * net->in_channels * sizeof(float));
    net->g_col = offnas_malloc(stem_pixels * 9 * net->in_channels * sizeof(float));
    net->stem_a = offnas_malloc(max_feat * sizeof(float));
    net->stem_y = offnas_malloc(max_feat * sizeof(float));
    for (int l = 0; l < net->layer_count; l++)
        layer_alloc(&net->layers[l], B, &max_feat, &max_hid);
    int hl = net_out_side(net, net->layer_count);
    size_t phead = B * hl * hl * net->head_channels;
    net->head_a = offnas_malloc(phead * sizeof(float));
    net->head_y = offnas_malloc(phead * sizeof(float));
    max_feat = max_size(max_feat, phead);
    net->pooled = offnas_malloc(B * net->head_channels * sizeof(float));
    net->logits = offnas_malloc(B * net->classes * sizeof(float));
    net->probs = offnas_malloc(B * net->classes * sizeof(float));
    net->g_a = offnas_malloc(max_feat * sizeof(float));
    net->g_b = offnas_malloc(max_feat * sizeof(float));
    net->g_hid1 = offnas_malloc(max_size(max_hid, max_feat) * sizeof(float));
    net->g_hid2 = offnas_malloc(max_size(max_hid, max_feat) * sizeof(float));
    net->masked = offnas_malloc(max_feat * sizeof(float));
    net->mask = offnas_calloc(NET_MAX_CHANNELS, sizeof(float));
    net->mask_grad = offnas_calloc(NET_MAX_CHANNELS, sizeof(float));
}

struct net *net_create(const struct net_desc *desc, int batch, int side, int in_channels,
                       int classes, int fixed, uint64_t seed)
{
    struct net *net = offnas_calloc(1, sizeof *net);
    net->batch = batch;
    net->side = side;
    net->in_channels = in_channels;
    net->classes = classes;
    net->layer_count = desc->layer_count;
    net->stem_channels = desc->stem_channels;
    net->stem_stride = desc->stem_stride;
    net->stem_side = op_conv_out_size(side, 3, net->stem_stride);
    net->head_channels = desc->head_channels;
    net->mask_layer = -1;
    net->bn_groups = 1;
    net->bn_momentum = NET_BN_MOMENTUM;
    net->shared = desc->shared && !fixed;
    if (net_shape(net, desc, fixed)) {
        free(net);
        return NULL;
    }
    net_layout(net);
    net_bind_batchnorms(net);
    net_init_params(net, seed);
    net_alloc_activations(net);
    return net;
}

void net_free(struct net *net)
{
    if (!net)
        return;
    for (int l = 0; l < net->layer_count; l++) {
        struct net_layer *layer = &net->layers[l];
        free(layer->a1);
        free(layer->r1);
        free(layer->a2);
        free(layer->r2);
        free(layer->a3);
        free(layer->out);
        free(layer->w_expand);
        free(layer->g_expand);
        free(layer->w_dw);
        free(layer->g_dw);
    }
    free(net->stem_col);
    free(net->g_col);
    free(net->stem_a);
    free(net->stem_y);
    free(net->head_a);
    free(net->head_y);
    free(net->pooled);
    free(net->logits);
    free(net->probs);
    free(net->g_a);
    free(net->g_b);
    free(net->g_hid1);
    free(net->g_hid2);
    free(net->masked);
    free(net->mask);
    free(net->bn_sums);
    free(net->mask_grad);
    free(net->params);
    free(net->grads);
    free(net->stats);
    free(net->bn_saved);
    free(net);
}

/* Running averages after a grouped forward: the mean over the groups of each group's batch
 * statistics enters with the usual momentum. Trainers that each update their own running
 * averages and average them later reach the same values, as the update is linear. */
static void bn_update_running(struct net *net, const struct net_bn *bn, int n)
{
    int G = net->bn_groups, C = bn->channels;
    float *rm = net->stats + bn->running, *rv = net->stats + bn->running_var;
    for (int c = 0; c < C; c++) {
        double mean = 0, var = 0;
        for (int g = 0; g < G; g++) {
            double r = bn->rstd[(size_t)g * C + c];
            mean += bn->mean[(size_t)g * C + c];
            var += (1.0 / (r * r) - 1e-5) * (n > 1 ? (double)n / (n - 1) : 1.0);
        }
        float m = net->bn_momentum;
        rm[c] = (1.0f - m) * rm[c] + m * (float)(mean / G);
        rv[c] = (1.0f - m) * rv[c] + m * (float)(var / G);
    }
}

/* Training-mode batch norm (fused with ReLU6 when relu6) over N pixels; with bn_groups > 1
 * every group of N/groups pixels (a contiguous slice of the batch) has its own statistics.
 * sums: the groups' sums from op_pointwise_forward_sums (2C each), or NULL for a pass of its
 * own. (Eval mode folds batch norm into the convolutions: block_infer.) */
static void bn_run(struct net *net, float *out, const float *in, const struct net_bn *bn, int N,
                   int relu6, const double *sums)
{
    int G = net->bn_groups, C = bn->channels, n = N / G;
    float momentum = G > 1 ? 0.0f : net->bn_momentum;
    const float *gamma = net->params + bn->gamma, *beta = net->params + bn->beta;
    float *running = net->stats + bn->running, *running_var = net->stats + bn->running_var;
    for (int g = 0; g < G; g++) {
        size_t at = (size_t)g * n * C;
        float *mean = bn->mean + (size_t)g * C, *rstd = bn->rstd + (size_t)g * C;
        if (sums)
            op_batchnorm_sums_forward(out + at, mean, rstd, in + at, sums + (size_t)g * 2 * C,
                                      gamma, beta, running, running_var, n, C, momentum, relu6);
        else if (relu6)
            op_batchnorm_relu6_forward(out + at, mean, rstd, in + at, gamma, beta, running,
                                       running_var, n, C, 1, momentum);
        else
            op_batchnorm_forward(out + at, mean, rstd, in + at, gamma, beta, running, running_var,
                                 n, C, 1, momentum);
    }
    if (G > 1)
        bn_update_running(net, bn, n);
}

/* Room for the sums of every batch-norm group of C channels (grown on a wider block's first
 * training step, then never again). */
static double *bn_sums(struct net *net, int C)
{
    size_t need = (size_t)net->bn_groups * 2 * C;
    if (need > net->bn_sums_size) {
        free(net->bn_sums);
        net->bn_sums = offnas_malloc(need * sizeof(double));
        net->bn_sums_size = need;
    }
    return net->bn_sums;
}

/* The pointwise convolution a = x w (N pixels, ci -> bn's channels) and its training-mode
 * batch norm (+ ReLU6) into y; the GEMM gathers the statistics of a as it writes it, group by
 * group, so the batch norm does not read a once more for them. */
static void pointwise_bn_forward(struct net *net, float *a, float *y, const float *x,
                                 const float *w, const struct net_bn *bn, int N, int ci,
                                 int relu6)
{
    int C = bn->channels;
    int G = net->bn_groups, n = N / G;
    double *sums = bn_sums(net, C);
    for (int g = 0; g < G; g++)
        op_pointwise_forward_sums(a + (size_t)g * n * C, sums + (size_t)g * 2 * C,
                                  x + (size_t)g * n * ci, w, n, ci, C);
    bn_run(net, y, a, bn, N, relu6, sums);
}

/* Training-mode batch norm + ReLU6 in one pass; out must not alias in. */
static void bn_relu6_forward(struct net *net, float *out, const float *in, const struct net_bn *bn,
                             int N)
{
    bn_run(net, out, in, bn, N, 1, NULL);
}

/* Backward of bn_run (training mode), group by group; din may alias dout. */
static void bn_run_backward(struct net *net, float *din, const float *dout, const float *in,
                            const struct net_bn *bn, int N, int relu6, const double *sums)
{
    int G = net->bn_groups, C = bn->channels, n = N / G;
    for (int g = 0; g < G; g++) {
        size_t at = (size_t)g * n * C;
        const float *mean = bn->mean + (size_t)g * C, *rstd = bn->rstd + (size_t)g * C;
        if (sums)
            op_batchnorm_relu6_sums_backward(
                din + at, net->grads + bn->gamma, net->grads + bn->beta, dout + at,
                sums + (size_t)g * 2 * C, in + at, mean, rstd, net->params + bn->gamma,
                net->params + bn->beta, n, C);
        else if (relu6)
            op_batchnorm_relu6_backward(din + at, net->grads + bn->gamma, net->grads + bn->beta,
                                        dout + at, in + at, mean, rstd, net->params + bn->gamma,
                                        net->params + bn->beta, n, C);
        else
            op_batchnorm_backward(din + at, net->grads + bn->gamma, net->grads + bn->beta,
                                  dout + at, in + at, mean, rstd, net->params + bn->gamma, n, C);
    }
}

/* Backward of bn_relu6_forward (its input in; the ReLU6 mask is recomputed from it); din may
 * alias dout. */
static void bn_relu6_backward(struct net *net, float *din, const float *dout, const float *in,
                              const struct net_bn *bn, int N)
{
    bn_run_backward(net, din, dout, in, bn, N, 1, NULL);
}

/* The backward of y = r w with r = relu6(bn(a)) (N pixels, bn's C channels -> co): from gy, the
 * weight gradient gw in one GEMM (NULL skips it), then group by group the gradient of r, the
 * batch norm's sums gathered as each chunk of it is written, and the batch norm's backward in
 * place: ga = the gradient of a. A block's project convolution and its bn2. */
static void relu6_bn_pointwise_backward(struct net *net, float *ga, float *gw, const float *gy,
                                        const float *r, const float *w, const float *a,
                                        const struct net_bn *bn, int N, int co)
{
    int C = bn->channels, G = net->bn_groups, n = N / G;
    op_pointwise_backward(NULL, gw, gy, r, w, N, C, co);
    double *sums = bn_sums(net, C);
    for (int g = 0; g < G; g++)
        op_pointwise_din_sums(ga + (size_t)g * n * C, sums + (size_t)g * 2 * C,
                              gy + (size_t)g * n * co, w, n, C, co, a + (size_t)g * n * C,
                              bn->mean + (size_t)g * C, bn->rstd + (size_t)g * C,
                              net->params + bn->gamma, net->params + bn->beta);
    bn_run_backward(net, ga, ga, a, bn, N, 1, sums);
}

/* The backward of r = relu6(bn(a)), a = x w (N pixels, ci -> bn's C channels), group by group:
 * from gr (the gradient of r, overwritten) the weight gradient gw (NULL skips it) and dx.
 * A block's expand convolution and its bn1. */
static void expand_backward(struct net *net, float *dx, float *gw, float *gr, const float *a,
                            const float *x, const float *w, const struct net_bn *bn, int N,
                            int ci)
{
    int C = bn->channels, G = net->bn_groups, n = N / G;
    for (int g = 0; g < G; g++)
        op_batchnorm_relu6_pointwise_backward(
            dx + (size_t)g * n * ci, gw, net->grads + bn->gamma, net->grads + bn->beta,
            gr + (size_t)g * n * C, a + (size_t)g * n * C, x + (size_t)g * n * ci, w,
            bn->mean + (size_t)g * C, bn->rstd + (size_t)g * C, net->params + bn->gamma,
            net->params + bn->beta, n, ci, C);
}

static void bn_backward(struct net *net, float *din, const float *dout, const float *in,
                        const struct net_bn *bn, int N)
{
    bn_run_backward(net, din, dout, in, bn, N, 0, NULL);
}

/* The expand and depthwise weights of candidate blk as contiguous (cin, hidden) and
 * (k, k, hidden) arrays: its own, or for a slice of the super block (first hidden columns of
 * the (cin, Hmax) expand weights, centre k x k and first hidden channels of the (kmax, kmax,
 * Hmax) depthwise kernel) copied into the layer's scratch. */
static void block_weights(const struct net *net, struct net_layer *layer,
                          const struct net_block *blk, const float **w_expand,
                          const float **w_dw)
{
    const float *P = net->params;
    *w_expand = P + blk->w_expand;
    *w_dw = P + blk->w_dw;
    if (!blk->sliced)
        return;
    const struct net_block *sb = &layer->super;
    int H = sb->hidden, h = blk->hidden, k = blk->kernel, K = sb->kernel, c0 = (K - k) / 2;
    if (blk->spec.expand != 1) {
        for (int i = 0; i < blk->cin; i++)
            memcpy(layer->w_expand + (size_t)i * h, P + sb->w_expand + (size_t)i * H,
                   (size_t)h * sizeof(float));
        *w_expand = layer->w_expand;
    }
    for (int y = 0; y < k; y++)
        for (int x = 0; x < k; x++)
            memcpy(layer->w_dw + ((size_t)y * k + x) * h,
                   P + sb->w_dw + ((size_t)(y + c0) * K + (x + c0)) * H, (size_t)h * sizeof(float));
    *w_dw = layer->w_dw;
}

/* Adds a sliced candidate's expand and depthwise gradients (in the layer's scratch) into the
 * super block's places in net->grads. */
static void block_scatter_grads(struct net *net, const struct net_layer *layer,
                                const struct net_block *blk)
{
    const struct net_block *sb = &layer->super;
    int H = sb->hidden, h = blk->hidden, k = blk->kernel, K = sb->kernel, c0 = (K - k) / 2;
    float *G = net->grads;
    if (blk->spec.expand != 1)
        for (int i = 0; i < blk->cin; i++) {
            float *to = G + sb->w_expand + (size_t)i * H;
            const float *from = layer->g_expand + (size_t)i * h;
            for (int j = 0; j < h; j++)
                to[j] += from[j];
        }
    for (int y = 0; y < k; y++)
        for (int x = 0; x < k; x++) {
            float *to = G + sb->w_dw + ((size_t)(y + c0) * K + (x + c0)) * H;
            const float *from = layer->g_dw + ((size_t)y * k + x) * h;
            for (int j = 0; j < h; j++)
                to[j] += from[j];
        }
}

/* A run of adjacent gradient ranges on its way to net->grad_ready. */
struct range_run {
    struct net *net;
    size_t offset, count;
};

static void run_add(struct range_run *r, size_t offset, size_t count)
{
    if (r->count && r->offset + r->count == offset) {
        r->count += count;
        return;
    }
    if (r->count)
        r->net->grad_ready(r->net->grad_ready_ctx, r->net->grads, r->offset, r->count);
    r->offset = offset;
    r->count = count;
}

/* Hands the gradient ranges a sliced candidate wrote (its slice of the super block) to
 * net->grad_ready in buffer order, adjacent ones as one: the first h of each expand row and of
 * bn1, the centre k x k taps' first h, the first h of bn2, the first h rows of the projection
 * and bn3. The rest of the super block's gradient is zero in this step and is not sent. */
static void block_slice_grads_ready(struct net *net, const struct net_layer *layer,
                                    const struct net_block *blk)
{
    const struct net_block *sb = &layer->super;
    size_t H = (size_t)sb->hidden, h = (size_t)blk->hidden, K = (size_t)sb->kernel;
    size_t k = (size_t)blk->kernel, c0 = (K - k) / 2;
    struct range_run r = {net, 0, 0};
    if (blk->spec.expand != 1) {
        for (size_t i = 0; i < (size_t)blk->cin; i++)
            run_add(&r, sb->w_expand + i * H, h);
        run_add(&r, blk->bn1.gamma, h);
        run_add(&r, blk->bn1.beta, h);
    }
    for (size_t y = 0; y < k; y++)
        for (size_t x = 0; x < k; x++)
            run_add(&r, sb->w_dw + ((y + c0) * K + (x + c0)) * H, h);
    run_add(&r, blk->bn2.gamma, h);
    run_add(&r, blk->bn2.beta, h);
    run_add(&r, blk->w_project, h * (size_t)blk->cout);
    run_add(&r, blk->bn3.gamma, (size_t)blk->cout);
    run_add(&r, blk->bn3.beta, (size_t)blk->cout);
    run_add(&r, 0, 0); /* hands over the last run */
}

/* The eval-mode batch norm bn as the per-channel affine y = x * scale + shift. */
static void bn_eval_affine(const struct net *net, const struct net_bn *bn, float *scale,
                           float *shift)
{
    op_batchnorm_eval_fold(scale, shift, net->params + bn->gamma, net->params + bn->beta,
                           net->stats + bn->running, net->stats + bn->running_var, bn->channels);
}

/* block_forward in eval mode: each convolution ends in its batch norm and activation (and the
 * residual add), so a block is three passes and the pre-norm tensors a1..a3 are not written. */
static const float *block_infer(struct net *net, struct net_layer *layer,
                                const struct net_block *blk, int B)
{
    const float *x = layer->in, *w_expand, *w_dw;
    block_weights(net, layer, blk, &w_expand, &w_dw);
    int nin = B * layer->hin * layer->win, nout = B * layer->hout * layer->wout;
    int widest = blk->hidden > blk->cout ? blk->hidden : blk->cout;
    float scale[widest], shift[widest];
    const float *r1 = x;
    if (blk->spec.expand != 1) {
        bn_eval_affine(net, &blk->bn1, scale, shift);
        op_pointwise_affine_forward(layer->r1, x, w_expand, scale, shift, NULL, nin, blk->cin,
                                    blk->hidden, 1);
        r1 = layer->r1;
    }
    bn_eval_affine(net, &blk->bn2, scale, shift);
    op_depthwise_affine_forward(layer->r2, r1, w_dw, scale, shift, B, layer->hin, layer->win,
                                blk->hidden, blk->kernel, blk->stride, 1);
    bn_eval_affine(net, &blk->bn3, scale, shift);
    op_pointwise_affine_forward(layer->out, layer->r2, net->params + blk->w_project, scale, shift,
                                blk->residual ? x : NULL, nout, blk->hidden, blk->cout, 0);
    return layer->out;
}

/* Runs candidate blk of layer on layer->in; returns the output pointer. */
static const float *block_forward(struct net *net, struct net_layer *layer,
                                  const struct net_block *blk, int B, int training)
{
    const float *x = layer->in;
    if (blk->spec.kind == OP_SKIP)
        return x;
    if (!training)
        return block_infer(net, layer, blk, B);
    const float *P = net->params, *w_expand, *w_dw;
    block_weights(net, layer, blk, &w_expand, &w_dw);
    int nin = B * layer->hin * layer->win, nout = B * layer->hout * layer->wout;
    const float *r1 = x;
    if (blk->spec.expand != 1) {
        pointwise_bn_forward(net, layer->a1, layer->r1, x, w_expand, &blk->bn1, nin, blk->cin,
                             1);
        r1 = layer->r1;
    }
    op_depthwise_forward(layer->a2, r1, w_dw, B, layer->hin, layer->win, blk->hidden,
                         blk->kernel, blk->stride);
    bn_relu6_forward(net, layer->r2, layer->a2, &blk->bn2, nout);
    pointwise_bn_forward(net, layer->a3, layer->out, layer->r2, P + blk->w_project, &blk->bn3,
                         nout, blk->hidden, 0);
    if (blk->residual)
        op_add_forward(layer->out, layer->out, x, (size_t)nout * blk->cout);
    return layer->out;
}

/* Backward of block_forward: dy (B,hout,wout,cout) -> dx (B,hin,win,cin), overwritten.
 * A sliced candidate's expand and depthwise gradients go through the layer's scratch (the
 * weights there are still the forward's copies: nothing changes params in between). */
static void block_backward(struct net *net, struct net_layer *layer, const struct net_block *blk,
                           float *dx, const float *dy, int B)
{
    int nin = B * layer->hin * layer->win, nout = B * layer->hout * layer->wout;
    if (blk->spec.kind == OP_SKIP) {
        memcpy(dx, dy, (size_t)nin * blk->cin * sizeof(float));
        return;
    }
    const float *P = net->params;
    float *G = net->grads;
    int weights = !net->skip_weight_grads;
    const float *w_expand = P + blk->w_expand, *w_dw = P + blk->w_dw;
    float *g_expand = G + blk->w_expand, *g_dw = G + blk->w_dw, *g_project = G + blk->w_project;
    if (blk->sliced) {
        w_expand = layer->w_expand;
        w_dw = layer->w_dw;
        g_expand = layer->g_expand;
        g_dw = layer->g_dw;
        if (weights) {
            memset(g_expand, 0, (size_t)blk->cin * blk->hidden * sizeof(float));
            memset(g_dw, 0, (size_t)blk->kernel * blk->kernel * blk->hidden * sizeof(float));
        }
    }
    if (!weights)
        g_expand = g_dw = g_project = NULL;
    float *g3 = net->g_hid1, *g2 = net->g_hid2;
    bn_backward(net, g3, dy, layer->a3, &blk->bn3, nout);
    relu6_bn_pointwise_backward(net, g2, g_project, g3, layer->r2, P + blk->w_project, layer->a2,
                                &blk->bn2, nout, blk->cout);
    const float *r1 = blk->spec.expand != 1 ? layer->r1 : layer->in;
    if (blk->spec.expand != 1) {
        float *g1 = net->g_hid1;
        op_depthwise_backward(g1, g_dw, g2, r1, w_dw, B, layer->hin, layer->win, blk->hidden,
                              blk->kernel, blk->stride);
        expand_backward(net, dx, g_expand, g1, layer->a1, layer->in, w_expand, &blk->bn1, nin,
                        blk->cin);
    } else {
        op_depthwise_backward(dx, g_dw, g2, r1, w_dw, B, layer->hin, layer->win, blk->hidden,
                              blk->kernel, blk->stride);
    }
    if (blk->residual)
        op_add_forward(dx, dx, dy, (size_t)nin * blk->cin);
    if (blk->sliced && weights)
        block_scatter_grads(net, layer, blk);
}

void net_run_stem(struct net *net, const float *x, int B, int training)
{
    OFFNAS_ASSERT(B >= 1 && B <= net->batch);
    net->training = training;
    OFFNAS_ASSERT(!training || (net->bn_groups >= 1 && net->bn_groups <= NET_MAX_BN_GROUPS &&
                                B % net->bn_groups == 0));
    net->input = x;
    int n = B * net->stem_side * net->stem_side;
    if (!training) {
        float scale[net->stem_channels], shift[net->stem_channels];
        bn_eval_affine(net, &net->bn_stem, scale, shift);
        op_conv_affine_forward(net->stem_y, x, net->params + net->w_stem, scale, shift, B,
                               net->side, net->side, net->in_channels, net->stem_channels, 3,
                               net->stem_stride, 1);
        return;
    }
    op_conv_forward(net->stem_a, net->stem_col, x, net->params + net->w_stem, B, net->side,
                    net->side, net->in_channels, net->stem_channels, 3, net->stem_stride);
    bn_relu6_forward(net, net->stem_y, net->stem_a, &net->bn_stem, n);
}

const float *net_run_block(struct net *net, int l, int candidate, const float *in, int B,
                           int training)
{
    OFFNAS_ASSERT(l >= 0 && l < net->layer_count && B >= 1 && B <= net->batch);
    struct net_layer *layer = &net->layers[l];
    OFFNAS_ASSERT(candidate >= 0 && candidate < layer->candidate_count);
    layer->in = in;
    const float *h = block_forward(net, layer, &layer->cand[candidate], B, training);
    if (l == net->mask_layer) {
        size_t image = (size_t)layer->hout * layer->wout * layer->cout;
        op_channel_mask_forward(net->masked, h, net->mask, B * layer->hout * layer->wout,
                                layer->cout);
        if (net->wire_format == WIRE_INT8 || net->wire_format == WIRE_FP16)
            for (int b = 0; b < B; b++) /* one image per message, as the runtime sends it */
                wire_fake_quant(net->masked + b * image, image, net->wire_format);
        h = net->masked;
    }
    layer->y = h;
    return h;
}

void net_run_head(struct net *net, const float *in, int B, int training)
{
    int last_c = net_out_channels(net, net->layer_count);
    int hw = net_out_side(net, net->layer_count);
    int nh = B * hw * hw;
    if (training) {
        op_pointwise_forward(net->head_a, in, net->params + net->w_head, nh, last_c,
                             net->head_channels);
        bn_relu6_forward(net, net->head_y, net->head_a, &net->bn_head, nh);
    } else {
        float scale[net->head_channels], shift[net->head_channels];
        bn_eval_affine(net, &net->bn_head, scale, shift);
        op_pointwise_affine_forward(net->head_y, in, net->params + net->w_head, scale, shift,
                                    NULL, nh, last_c, net->head_channels, 1);
    }
    op_avgpool_forward(net->pooled, net->head_y, B, hw * hw, net->head_channels);
    op_linear_forward(net->logits, net->pooled, net->params + net->w_fc, net->params + net->b_fc, B,
                      net->head_channels, net->classes);
}

void net_forward(struct net *net, const float *x, int B, int training)
{
    net_run_stem(net, x, B, training);
    const float *h = net->stem_y;
    for (int l = 0; l < net->layer_count; l++)
        h = net_run_block(net, l, net->choice[l], h, B, training);
    net_run_head(net, h, B, training);
}

void net_backward(struct net *net, const float *dlogits, int B)
{
    OFFNAS_ASSERT(net->training);
    float *G = net->grads;
    const float *P = net->params;
    int last_c = net_out_channels(net, net->layer_count);
    int hw = net_out_side(net, net->layer_count);
    int nh = B * hw * hw;
    const float *h = net->layer_count ? net->layers[net->layer_count - 1].y : net->stem_y;

    int weights = !net->skip_weight_grads;
    float *dpool = net->g_hid2;
    op_linear_backward(dpool, weights ? G + net->w_fc : NULL, weights ? G + net->b_fc : NULL,
                       dlogits, net->pooled, P + net->w_fc, B, net->head_channels, net->classes);
    float *dh = net->g_hid1;
    op_avgpool_backward(dh, dpool, B, hw * hw, net->head_channels);
    bn_relu6_backward(net, dh, dh, net->head_a, &net->bn_head, nh);
    float *dy = net->g_a, *dx = net->g_b;
    op_pointwise_backward(dy, weights ? G + net->w_head : NULL, dh, h, P + net->w_head, nh, last_c,
                          net->head_channels);
    if (net->grad_ready)
        net->grad_ready(net->grad_ready_ctx, G, net->head_offset, net->head_count);

    for (int l = net->layer_count - 1; l >= 0; l--) {
        struct net_layer *layer = &net->layers[l];
        const struct net_block *blk = &layer->cand[net->choice[l]];
        const float *unmasked = blk->spec.kind == OP_SKIP ? layer->in : layer->out;
        size_t pixels = (size_t)B * layer->hout * layer->wout;
        if (l == net->mask_layer)
            op_channel_mask_backward(dy, net->mask_grad, dy, unmasked, net->mask, (int)pixels,
                                     layer->cout);
        if (net->want_gate_grad) {
            double dot = 0.0;
            for (size_t i = 0; i < pixels * layer->cout; i++)
                dot += (double)dy[i] * unmasked[i];
            net->gate_grad[l] = (float)dot;
        }
        if (l == 0 && !weights)
            return; /* the first layer's input gradient reaches no gate: the stem is not searched */
        block_backward(net, layer, &layer->cand[net->choice[l]], dx, dy, B);
        if (net->grad_ready && blk->sliced)
            block_slice_grads_ready(net, layer, blk);
        else if (net->grad_ready && blk->count)
            net->grad_ready(net->grad_ready_ctx, G, blk->offset, blk->count);
        float *t = dy;
        dy = dx;
        dx = t;
    }
    int n = B * net->stem_side * net->stem_side;
    bn_relu6_backward(net, dy, dy, net->stem_a, &net->bn_stem, n);
    op_conv_backward(NULL, G + net->w_stem, net->g_col, dy, net->stem_col, P + net->w_stem, B,
                     net->side, net->side, net->in_channels, net->stem_channels, 3,
                     net->stem_stride);
    if (net->grad_ready)
        net->grad_ready(net->grad_ready_ctx, G, net->stem_offset, net->stem_count);
}

void net_zero_grads(struct net *net)
{
    memset(net->grads, 0, net->param_count * sizeof(float));
    memset(net->mask_grad, 0, NET_MAX_CHANNELS * sizeof(float));
}

void net_for_each_used_range(const struct net *net, void (*fn)(size_t, size_t, void *), void *ctx)
{
    fn(net->head_offset, net->head_count, ctx);
    for (int l = net->layer_count - 1; l >= 0; l--) {
        const struct net_block *blk = &net->layers[l].cand[net->choice[l]];
        if (blk->count)
            fn(blk->offset, blk->count, ctx);
    }
    fn(net->stem_offset, net->stem_count, ctx);
}

static void add_count(size_t offset, size_t count, void *ctx)
{
    (void)offset;
    *(size_t *)ctx += count;
}

size_t net_param_count_chosen(const struct net *net)
{
    size_t total = 0;
    net_for_each_used_range(net, add_count, &total);
    return total;
}

double net_block_macs(const struct net *net, int l, int i)
{
    const struct net_layer *layer = &net->layers[l];
    const struct net_block *blk = &layer->cand[i];
    if (blk->spec.kind == OP_SKIP)
        return 0.0;
    double pin = (double)layer->hin * layer->win, pout = (double)layer->hout * layer->wout;
    double macs = pout * blk->kernel * blk->kernel * blk->hidden + pout * blk->hidden * blk->cout;
    if (blk->spec.expand != 1)
        macs += pin * blk->cin * blk->hidden;
    return macs;
}

double net_macs_chosen(const struct net *net)
{
    double s2 = (double)net->stem_side * net->stem_side;
    double macs = s2 * 9 * net->in_channels * net->stem_channels;
    for (int l = 0; l < net->layer_count; l++)
        macs += net_block_macs(net, l, net->choice[l]);
    int last_c = net_out_channels(net, net->layer_count);
    int hw = net_out_side(net, net->layer_count);
    macs += (double)hw * hw * last_c * net->head_channels;
    macs += (double)net->head_channels * net->classes;
    return macs;
}

int net_find_candidate(const struct net *net, int layer, const struct op_spec *spec)
{
    const struct net_layer *L = &net->layers[layer];
    for (int i = 0; i < L->candidate_count; i++) {
        const struct op_spec *s = &L->cand[i].spec;
        if (s->kind == spec->kind && (s->kind == OP_SKIP || (s->kernel == spec->kernel &&
                                                             s->expand == spec->expand)))
            return i;
    }
    return -1;
}

static void bn_reset(struct net *net, const struct net_bn *bn)
{
    float *mean = net->stats + bn->running, *var = net->stats + bn->running_var;
    for (int c = 0; c < bn->channels; c++) {
        mean[c] = 0.0f;
        var[c] = 1.0f;
    }
}

/* Every batch norm of net, stem and head first, then each non-skip candidate's (bn1 only
 * where an expand conv exists): what has running statistics. Fills bns and returns the count. */
#define NET_MAX_BATCH_NORMS (2 + 3 * NET_MAX_LAYERS * NET_MAX_CANDIDATES)
static int net_batch_norms(const struct net *net, const struct net_bn **bns)
{
    int n = 0;
    bns[n++] = &net->bn_stem;
    bns[n++] = &net->bn_head;
    for (int l = 0; l < net->layer_count; l++)
        for (int i = 0; i < net->layers[l].candidate_count; i++) {
            const struct net_block *blk = &net->layers[l].cand[i];
            if (blk->spec.kind == OP_SKIP)
                continue;
            if (blk->spec.expand != 1)
                bns[n++] = &blk->bn1;
            bns[n++] = &blk->bn2;
            bns[n++] = &blk->bn3;
        }
    return n;
}

void net_reset_running_stats(struct net *net)
{
    const struct net_bn *bns[NET_MAX_BATCH_NORMS];
    int n = net_batch_norms(net, bns);
    for (int b = 0; b < n; b++)
        bn_reset(net, bns[b]);
}

/* The running variances of one batch norm are finite and not negative; else -1 naming the
 * first bad entry as an index of stats_field. */
static int bn_check_variance(const struct net *net, const struct net_bn *bn, const char *path,
                             const char *stats_field)
{
    for (int c = 0; c < bn->channels; c++) {
        float v = net->stats[bn->running_var + c];
        if (!isfinite(v) || v < 0)
            return offnas_error("%s: %s[%zu]: %g is not a variance (finite, >= 0)", path,
                                stats_field, bn->running_var + (size_t)c, (double)v);
    }
    return 0;
}

int net_check_loaded(const struct net *net, const char *path, const char *params_field,
                     const char *stats_field)
{
    OFFNAS_TRY(check_finite_floats(path, params_field, net->params, net->param_count));
    OFFNAS_TRY(check_finite_floats(path, stats_field, net->stats, net->stat_count));
    const struct net_bn *bns[NET_MAX_BATCH_NORMS];
    int n = net_batch_norms(net, bns);
    for (int b = 0; b < n; b++)
        OFFNAS_TRY(bn_check_variance(net, bns[b], path, stats_field));
    return 0;
}
