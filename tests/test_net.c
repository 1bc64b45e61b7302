/* Tests of the supernet: whole-network gradients against finite differences, the parameter
 * layout, and that a step uses (and an optimizer touches) only the chosen candidates. */
#include "testing.h"
#include "tiny.h"

#include "common.h"
#include "job.h"
#include "net.h"
#include "op.h"
#include "train.h"

#include <stdlib.h>

/* The tiny space with stem stride and kind of supernet ("separate" or "shared"). */
static struct job tiny_job_of(int stem_stride, const char *supernet)
{
    char sets[64];
    snprintf(sets, sizeof sets, "net.stem_stride=%d;net.supernet=%s", stem_stride, supernet);
    return tiny_job(sets);
}

/* Loss of the current parameters on (x, labels) in training mode (batch statistics). */
static double net_loss(struct net *net, const float *x, const unsigned char *labels, int B)
{
    float saved[4096];
    OFFNAS_ASSERT(net->stat_count <= 4096);
    memcpy(saved, net->stats, net->stat_count * sizeof(float)); /* keep running stats fixed */
    net_forward(net, x, B, 1);
    memcpy(net->stats, saved, net->stat_count * sizeof(float));
    return op_softmax_xent_forward(net->probs, NULL, net->logits, labels, B, net->classes, 0.0f);
}

/* d loss / d *value by a central difference of step h on the batch (x, labels). */
static double central_difference(struct net *net, float *value, double h, const float *x,
                                 const unsigned char *labels)
{
    float v0 = *value;
    *value = v0 + (float)h;
    double lp = net_loss(net, x, labels, 3);
    *value = v0 - (float)h;
    double lm = net_loss(net, x, labels, 3);
    *value = v0;
    return (lp - lm) / (2 * h);
}

/* The gradient checks' batch: 3 images of 9x9 drawn from rng into x, labels 1, 4, 2; then one
 * training forward and backward of net on it (gradients in net->grads). */
static void gradient_batch(struct net *net, float *x, unsigned char *labels, struct rng *rng)
{
    int B = 3, side = 9;
    for (int i = 0; i < B * side * side; i++)
        x[i] = (float)rng_normal(rng);
    labels[0] = 1, labels[1] = 4, labels[2] = 2;
    net_zero_grads(net);
    net_loss(net, x, labels, B);
    op_softmax_xent_backward(net->probs, net->probs, labels, B, net->classes, 0.0f);
    net_backward(net, net->probs, B);
}

/* The analytic gradient of the whole network (fixed and supernet with a channel mask) agrees
 * with central differences along random directions of all parameters (h = 3e-4 along a
 * unit-RMS direction). The forward is float32 and ReLU6 has kinks that a finite step can
 * cross, and float32 rounding of a sum over many outputs adds noise of about 1e-3 to each
 * difference quotient: at least 6 of 8 directions must agree within 5% (of max(|numeric|,
 * 0.05)), and none may be off by more than 25%. The
 * per-op gradients are checked element by element in float64 in test_op. */
static void check_path_gradient(int fixed, int with_mask, int stem_stride, const char *supernet,
                                const int *choice)
{
    op_set_threads(1);
    struct job job = tiny_job_of(stem_stride, supernet);
    int B = 3, side = 9;
    struct net *net = net_create(&job.net, B, side, 1, 5, fixed, 7);
    CU_ASSERT_PTR_NOT_NULL_FATAL(net);
    if (!fixed)
        for (int l = 0; l < net->layer_count; l++)
            net->choice[l] = choice[l];
    if (with_mask) {
        net->mask_layer = 1;
        for (int c = 0; c < 8; c++)
            net->mask[c] = (c % 3 == 0) ? 0.0f : 1.0f;
    }
    net_set_residual_scales(net, 1.0f);
    float x[3 * 81];
    unsigned char labels[3];
    struct rng rng = test_rng(11);
    gradient_batch(net, x, labels, &rng);

    size_t P = net->param_count;
    float *base = malloc(P * sizeof(float)), *dir = malloc(P * sizeof(float));
    memcpy(base, net->params, P * sizeof(float));
    int agree = 0, trials = 8;
    for (int trial = 0; trial < trials; trial++) {
        double analytic = 0.0;
        for (size_t i = 0; i < P; i++) {
            dir[i] = (float)rng_normal(&rng);
            analytic += (double)dir[i] * net->grads[i];
        }
        double h = 3e-4, lp, lm;
        for (size_t i = 0; i < P; i++)
            net->params[i] = base[i] + (float)(h * dir[i]);
        lp = net_loss(net, x, labels, B);
        for (size_t i = 0; i < P; i++)
            net->params[i] = base[i] - (float)(h * dir[i]);
        lm = net_loss(net, x, labels, B);
        memcpy(net->params, base, P * sizeof(float));
        double numeric = (lp - lm) / (2 * h);
        double scale = fmax(fabs(numeric), 0.05);
        agree += fabs(analytic - numeric) <= 0.05 * scale;
        EXPECT_NEAR(analytic, numeric, 0.25 * scale);
    }
    EXPECT_EQ_INT(agree >= trials - 2, 1);
    if (with_mask) {
        /* mask gradient: d loss / d mask[c] by central differences on the mask itself */
        for (int c = 0; c < 8; c++) {
            double numeric = central_difference(net, &net->mask[c], 1e-2, x, labels);
            EXPECT_NEAR(net->mask_grad[c], numeric, 0.03 * fmax(fabs(numeric), 0.05));
        }
    }
    free(base);
    free(dir);
    net_free(net);
}

/* k5e3 at stride 1 with residual, k3e3 at stride 2, skip */
static const int PATH[3] = {1, 2, 3};
static void check_network_gradient(int fixed, int with_mask, int stem_stride)
{
    check_path_gradient(fixed, with_mask, stem_stride, "separate", PATH);
}

TEST(net_fixed_gradient_matches_finite_differences) { check_network_gradient(1, 0, 1); }
TEST(net_supernet_gradient_with_channel_mask) { check_network_gradient(0, 1, 1); }
/* the strided stem's backward (im2col at 5x5 output of the 9x9 input) reaches every weight */
TEST(net_gradient_with_stem_stride_2) { check_network_gradient(0, 1, 2); }

/* The shared supernet (one superkernel per layer, k5e3 here): for each candidate of each layer
 * as a slice of it, every parameter's gradient (through the gather of the slice and the
 * scatter of its gradients into the superkernel) agrees with a central difference, element
 * by element: within 10% of max(|numeric|, 0.01) for all but at most 0.5% of the parameters
 * (float32 differences at h = 1e-3 carry noise of about 1e-4, and a ReLU6 kink can fall
 * inside a step), and parameters outside the path get no gradient. Paths: each layer's
 * candidates in turn (layers 0 and 1: k3e1, k5e3, k3e3; layer 2 also skip), and a stride-2
 * stem. Measured: at most 1 of 2565 parameters outside 10% (12%, a stem weight). */
static void check_shared_path(int stem_stride, const int *choice)
{
    op_set_threads(1);
    struct job job = tiny_job_of(stem_stride, "shared");
    int B = 3, side = 9;
    struct net *net = net_create(&job.net, B, side, 1, 5, 0, 7);
    CU_ASSERT_PTR_NOT_NULL_FATAL(net);
    for (int l = 0; l < net->layer_count; l++)
        net->choice[l] = choice[l];
    net_set_residual_scales(net, 1.0f);
    float x[3 * 81];
    unsigned char labels[3];
    struct rng rng = test_rng(11);
    gradient_batch(net, x, labels, &rng);
    unsigned char *used = calloc(net->param_count, 1);
    for (int l = 0; l < net->layer_count; l++) {
        const struct net_block *blk = &net->layers[l].cand[choice[l]];
        memset(used + blk->offset, 1, blk->count);
    }
    memset(used + net->head_offset, 1, net->head_count);
    memset(used + net->stem_offset, 1, net->stem_count);
    int off = 0, stray = 0;
    for (size_t i = 0; i < net->param_count; i++) {
        if (!used[i]) {
            stray += net->grads[i] != 0.0f;
            continue;
        }
        double numeric = central_difference(net, &net->params[i], 1e-3, x, labels);
        off += fabs(net->grads[i] - numeric) > 0.1 * fmax(fabs(numeric), 0.01);
    }
    EXPECT_EQ_INT(stray, 0);
    EXPECT_EQ_INT(off <= (int)(net->param_count / 200), 1);
    free(used);
    net_free(net);
}

TEST(net_shared_supernet_gradient_of_every_slice)
{
    const int paths[4][3] = {{0, 0, 0}, {1, 1, 1}, {2, 2, 2}, {0, 2, 3}};
    for (int p = 0; p < 4; p++)
        check_shared_path(1, paths[p]);
    check_shared_path(2, PATH);
}

/* The shared supernet's candidates are slices of one block per layer: all block candidates of a
 * layer share one parameter range (smaller than the separate supernet's), and a candidate's
 * output depends only on its slice: a weight outside it (the ring of the 5x5 depthwise kernel
 * around the centre 3x3, a hidden channel beyond e*cin) changes the output of a candidate
 * that covers it and not of one that does not. */
TEST(net_shared_candidates_slice_one_superkernel)
{
    op_set_threads(1);
    struct job shared = tiny_job_of(1, "shared"), separate = tiny_job_of(1, "separate");
    int B = 2, side = 9;
    struct net *net = net_create(&shared.net, B, side, 1, 5, 0, 3);
    struct net *sep = net_create(&separate.net, B, side, 1, 5, 0, 3);
    CU_ASSERT_PTR_NOT_NULL_FATAL(net);
    CU_ASSERT_PTR_NOT_NULL_FATAL(sep);
    EXPECT_EQ_INT(net->param_count < sep->param_count, 1);
    const struct net_layer *layer = &net->layers[2]; /* 8 -> 8, stride 1: k3e1 k5e3 k3e3 skip */
    const struct net_block *sb = &layer->super;
    EXPECT_EQ_INT(sb->kernel, 5);
    EXPECT_EQ_INT(sb->hidden, 8 * 3);
    for (int i = 0; i < 3; i++) {
        EXPECT_EQ_INT(layer->cand[i].offset, sb->offset);
        EXPECT_EQ_INT(layer->cand[i].count, sb->count);
    }
    EXPECT_EQ_INT(layer->cand[3].count, 0);
    net_set_residual_scales(net, 1.0f);
    float x[2 * 81], base[2 * 5];
    for (int i = 0; i < B * side * side; i++)
        x[i] = (float)((i * 37) % 11) / 5.0f - 1.0f;
    /* logits with layer 2's candidate cand, before and after adding 5 to a region of the
     * (5,5,24) depthwise superkernel: taps on the ring (1) or in the centre 3x3 (0), hidden
     * channels [c0, c1) */
    struct { int ring, c0, c1, cand, expect_change; } cases[] = {
        {1, 0, 24, 0, 0}, {1, 0, 24, 2, 0}, {1, 0, 24, 1, 1}, /* only k5 sees the ring */
        {0, 8, 24, 0, 0}, {0, 8, 24, 2, 1}, {0, 8, 24, 1, 1}, /* only e3 sees channels >= 8 */
        {0, 0, 8, 0, 1},                                      /* all see the centre, c < 8 */
    };
    float *saved = malloc(net->param_count * sizeof(float));
    for (size_t k = 0; k < OFFNAS_ARRAY_LEN(cases); k++) {
        net->choice[0] = net->choice[1] = 0;
        net->choice[2] = cases[k].cand;
        net_forward(net, x, B, 0);
        memcpy(base, net->logits, sizeof base);
        memcpy(saved, net->params, net->param_count * sizeof(float));
        for (int y = 0; y < 5; y++)
            for (int xk = 0; xk < 5; xk++) {
                int ring = y == 0 || y == 4 || xk == 0 || xk == 4;
                if (ring != cases[k].ring)
                    continue;
                for (int c = cases[k].c0; c < cases[k].c1; c++)
                    net->params[sb->w_dw + ((size_t)y * 5 + xk) * 24 + c] += 5.0f;
            }
        net_forward(net, x, B, 0);
        memcpy(net->params, saved, net->param_count * sizeof(float));
        int changed = memcmp(base, net->logits, sizeof base) != 0;
        EXPECT_EQ_INT(changed, cases[k].expect_change);
    }
    free(saved);
    net_free(net);
    net_free(sep);
}

/* Eval mode runs each convolution with its batch norm folded in (the *_affine_forward ops): an
 * image's logits are the same bits in a batch of 3 as alone, for every candidate of every
 * layer (sliced superkernels, residual and skip blocks), and they move with the running
 * statistics the eval batch norm reads. */
TEST(net_eval_gives_each_image_its_batch1_bits)
{
    op_set_threads(1);
    struct job job = tiny_job_of(1, "shared");
    int B = 3, side = 9, classes = 5;
    struct net *net = net_create(&job.net, B, side, 1, classes, 0, 7);
    CU_ASSERT_PTR_NOT_NULL_FATAL(net);
    net_set_residual_scales(net, 1.0f);
    struct rng rng;
    rng_seed(&rng, 5, 0);
    for (size_t i = 0; i < net->stat_count; i++) /* running means and variances (> 0) */
        net->stats[i] = (float)(0.5 + rng_uniform(&rng));
    float x[3 * 81], batch[3 * 5], alone[5];
    for (int i = 0; i < B * side * side; i++)
        x[i] = (float)rng_normal(&rng);
    int widest = 0;
    for (int l = 0; l < net->layer_count; l++)
        widest = net->layers[l].candidate_count > widest ? net->layers[l].candidate_count : widest;
    for (int c = 0; c < widest; c++) {
        for (int l = 0; l < net->layer_count; l++)
            net->choice[l] = c % net->layers[l].candidate_count;
        net_forward(net, x, B, 0);
        memcpy(batch, net->logits, sizeof batch);
        for (int b = 0; b < B; b++) {
            net_forward(net, x + b * side * side, 1, 0);
            memcpy(alone, net->logits, sizeof alone);
            int same = !memcmp(alone, batch + b * classes, sizeof alone);
            if (!same)
                fprintf(stderr, "\n  choice %d image %d: batch-1 logits differ\n", c, b);
            CU_ASSERT(same);
        }
    }
    float before = net->logits[0];
    for (size_t i = 0; i < net->stat_count; i++)
        net->stats[i] += 0.5f;
    net_forward(net, x + (B - 1) * side * side, 1, 0);
    CU_ASSERT(net->logits[0] != before);
    net_free(net);
}

/* A stride-2 stem halves every feature map after it: 12x12 input -> 6x6 stem -> 6, 3, 3 for
 * layers 6/1, 8/2, 8/1; the MAC count uses the 6x6 stem output, the parameters do not change,
 * and the forward fills finite logits. */
TEST(net_stem_stride_2_halves_the_feature_maps)
{
    struct job job1 = tiny_job_of(1, "separate"), job2 = tiny_job_of(2, "separate");
    struct net *one = net_create(&job1.net, 2, 12, 1, 5, 1, 3);
    struct net *two = net_create(&job2.net, 2, 12, 1, 5, 1, 3);
    CU_ASSERT_PTR_NOT_NULL_FATAL(one);
    CU_ASSERT_PTR_NOT_NULL_FATAL(two);
    EXPECT_EQ_INT(one->stem_side, 12);
    EXPECT_EQ_INT(two->stem_side, 6);
    static const int hin[] = {6, 6, 3}, hout[] = {6, 3, 3};
    for (int l = 0; l < 3; l++) {
        EXPECT_EQ_INT(two->layers[l].hin, hin[l]);
        EXPECT_EQ_INT(two->layers[l].hout, hout[l]);
    }
    EXPECT_EQ_INT(one->param_count == two->param_count, 1);
    double stem2 = 6.0 * 6 * 9 * 4; /* stride 1: 12 * 12 * 9 * 4 */
    double blocks2 = 0.0;
    for (int l = 0; l < 3; l++)
        blocks2 += net_block_macs(two, l, 0);
    EXPECT_NEAR(net_macs_chosen(two), stem2 + blocks2 + 3.0 * 3 * 8 * 10 + 10.0 * 5, 1e-6);

    float x[2 * 144];
    struct rng rng = test_rng(4);
    for (int i = 0; i < 2 * 144; i++)
        x[i] = (float)rng_normal(&rng);
    net_forward(two, x, 2, 0);
    for (int i = 0; i < 2 * 5; i++)
        CU_ASSERT(isfinite(two->logits[i]));
    net_free(one);
    net_free(two);
}

/* Parameter ranges: head first, then layers in reverse order, then stem; candidates are
 * disjoint contiguous ranges that tile the buffer. */
TEST(net_layout_is_reverse_layer_order_and_tiles_the_buffer)
{
    struct job job = tiny_job(NULL);
    struct net *net = net_create(&job.net, 2, 9, 1, 5, 0, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(net);
    EXPECT_EQ_INT(net->head_offset, 0);
    size_t at = net->head_count;
    for (int l = net->layer_count - 1; l >= 0; l--) {
        EXPECT_EQ_INT(net->layers[l].offset, at);
        for (int i = 0; i < net->layers[l].candidate_count; i++) {
            EXPECT_EQ_INT(net->layers[l].cand[i].offset, at);
            at += net->layers[l].cand[i].count;
        }
    }
    EXPECT_EQ_INT(net->stem_offset, at);
    EXPECT_EQ_INT(net->stem_offset + net->stem_count, net->param_count);
    /* skip is dropped where the shapes do not allow it (layer 0: 4->6, layer 1: stride 2) */
    EXPECT_EQ_INT(net->layers[0].candidate_count, 3);
    EXPECT_EQ_INT(net->layers[1].candidate_count, 3);
    EXPECT_EQ_INT(net->layers[2].candidate_count, 4);
    net_free(net);
}

/* A backward pass writes gradients only into the chosen candidates' ranges, and an SGD step
 * leaves every other candidate's parameters untouched. */
TEST(net_step_touches_only_chosen_candidates)
{
    op_set_threads(1);
    struct job job = tiny_job(NULL);
    int B = 2, side = 9;
    struct net *net = net_create(&job.net, B, side, 1, 5, 0, 3);
    CU_ASSERT_PTR_NOT_NULL_FATAL(net);
    net->choice[0] = 0;
    net->choice[1] = 2;
    net->choice[2] = 1;
    float x[2 * 81];
    for (int i = 0; i < B * side * side; i++)
        x[i] = (float)((i * 37) % 11) / 5.0f - 1.0f;
    unsigned char labels[2] = {0, 3};
    float *before = malloc(net->param_count * sizeof(float));
    float *mom = calloc(net->param_count, sizeof(float));
    memcpy(before, net->params, net->param_count * sizeof(float));
    net_zero_grads(net);
    net_forward(net, x, B, 1);
    op_softmax_xent_forward(net->probs, NULL, net->logits, labels, B, 5, 0.0f);
    op_softmax_xent_backward(net->probs, net->probs, labels, B, 5, 0.0f);
    net_backward(net, net->probs, B);
    train_sgd_step(net, mom, 0.1f, 0.9f, 1e-3f);
    for (int l = 0; l < net->layer_count; l++)
        for (int i = 0; i < net->layers[l].candidate_count; i++) {
            const struct net_block *blk = &net->layers[l].cand[i];
            int changed = 0, has_grad = 0;
            for (size_t p = blk->offset; p < blk->offset + blk->count; p++) {
                changed |= net->params[p] != before[p];
                has_grad |= net->grads[p] != 0.0f;
            }
            if (blk->count == 0)
                continue;
            EXPECT_EQ_INT(changed, i == net->choice[l]);
            EXPECT_EQ_INT(has_grad, i == net->choice[l]);
        }
    free(before);
    free(mom);
    net_free(net);
}

/* The default fixed network has the size DESIGN.md states: about 7 M MACs per image. */
TEST(net_default_fixed_network_costs_about_7M_macs)
{
    struct job job;
    job_defaults(&job);
    CU_ASSERT_EQUAL_FATAL(job_finalize(&job), 0);
    struct net *net = net_create(&job.net, 1, 28, 1, 10, 1, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(net);
    double macs = net_macs_chosen(net);
    CU_ASSERT(macs > 6.0e6 && macs < 8.0e6);
    fprintf(stderr, "default network: %.3f M MACs, %zu parameters\n", macs / 1e6,
            net_param_count_chosen(net));
    net_free(net);
}

/* ---- ghost batch norm (bn_groups) ---------------------------------------------------------- */

#define GHOST_B 3    /* images per group */
#define GHOST_SIDE 9
#define BN_M 0.1     /* net.c's BN_MOMENTUM */

/* The tiny fixed network with residual BN scales at 1 (at 0 they hide the block bodies) and
 * 2*GHOST_B random images. */
static struct net *ghost_net(float *x, unsigned char *labels)
{
    op_set_threads(1);
    struct job job = tiny_job(NULL);
    struct net *net = net_create(&job.net, 2 * GHOST_B, GHOST_SIDE, 1, 5, 1, 13);
    CU_ASSERT_PTR_NOT_NULL_FATAL(net);
    net_set_residual_scales(net, 1.0f);
    /* running statistics away from their initial 0 / 1, so the old values matter */
    for (size_t i = 0; i < net->stat_count; i++)
        net->stats[i] += 0.25f + 0.01f * (float)(i % 7);
    struct rng rng = test_rng(21);
    for (int i = 0; i < 2 * GHOST_B * GHOST_SIDE * GHOST_SIDE; i++)
        x[i] = (float)(rng_normal(&rng) * 1.5 + 0.3);
    for (int i = 0; i < 2 * GHOST_B; i++)
        labels[i] = (unsigned char)((i * 3 + 1) % 5);
    return net;
}

/* A training forward with bn_groups = 2 on 2b images gives the logits of two training forwards
 * of the halves with bn_groups = 1 (within 1e-5 of max(1, |logit|)), and moves the running
 * statistics to (1-m)*old + m*(mean over the halves of their batch statistics), m = 0.1: the
 * halves' statistics are recovered in float64 from the running statistics each separate
 * forward (from the same state) leaves, stat_h = (after_h - (1-m)*old) / m, and the grouped
 * forward's running statistics must match within 1e-5 of max(1, |value|). */
TEST(net_ghost_bn_forward_matches_separate_halves)
{
    float x[2 * GHOST_B * GHOST_SIDE * GHOST_SIDE];
    unsigned char labels[2 * GHOST_B];
    struct net *net = ghost_net(x, labels);
    size_t S = net->stat_count, K = (size_t)net->classes;
    size_t half = (size_t)GHOST_B * GHOST_SIDE * GHOST_SIDE;
    float *old = malloc(S * sizeof(float)), *after[2], *grouped = malloc(S * sizeof(float));
    float *logits = malloc(2 * GHOST_B * K * sizeof(float));
    memcpy(old, net->stats, S * sizeof(float));

    net->bn_groups = 1;
    for (int h = 0; h < 2; h++) {
        memcpy(net->stats, old, S * sizeof(float));
        net_forward(net, x + h * half, GHOST_B, 1);
        memcpy(logits + h * GHOST_B * K, net->logits, GHOST_B * K * sizeof(float));
        after[h] = malloc(S * sizeof(float));
        memcpy(after[h], net->stats, S * sizeof(float));
    }
    memcpy(net->stats, old, S * sizeof(float));
    net->bn_groups = 2;
    net_forward(net, x, 2 * GHOST_B, 1);
    memcpy(grouped, net->stats, S * sizeof(float));

    size_t off = 0;
    for (size_t i = 0; i < 2 * GHOST_B * K; i++) {
        double tol = 1e-5 * fmax(1.0, fabs(logits[i]));
        if (fabs((double)net->logits[i] - logits[i]) > tol && off++ < 3)
            fprintf(stderr, "logit %zu: grouped %.9g, separate halves %.9g\n", i, net->logits[i],
                    logits[i]);
    }
    EXPECT_EQ_INT(off, 0);
    /* the halves differ, so the grouped logits are not those of one batch of 2b */
    double spread = 0;
    for (size_t i = 0; i < GHOST_B * K; i++)
        spread += fabs((double)logits[i] - logits[GHOST_B * K + i]);
    CU_ASSERT(spread > 1e-3);

    size_t bad = 0, moved = 0;
    double worst = 0;
    for (size_t i = 0; i < S; i++) {
        double s1 = ((double)after[0][i] - (1 - BN_M) * old[i]) / BN_M;
        double s2 = ((double)after[1][i] - (1 - BN_M) * old[i]) / BN_M;
        double want = (1 - BN_M) * old[i] + BN_M * (s1 + s2) / 2;
        double diff = fabs(grouped[i] - want), tol = 1e-5 * fmax(1.0, fabs(want));
        if (diff > worst)
            worst = diff;
        if (diff > tol && bad++ < 3)
            fprintf(stderr, "running stat %zu: grouped %.9g, expected %.9g (old %.9g, halves' "
                    "batch stats %.9g %.9g)\n", i, grouped[i], want, old[i], s1, s2);
        moved += fabs(want - old[i]) > 1e-4;
    }
    EXPECT_EQ_INT(bad, 0);
    CU_ASSERT(moved > S / 2); /* the statistics did move: the comparison is not vacuous */
    if (bad)
        fprintf(stderr, "%zu of %zu running statistics off, worst |diff| %.3g\n", bad, S, worst);

    /* eval mode ignores bn_groups: the same logits as with one group */
    net_forward(net, x, 2 * GHOST_B, 0);
    memcpy(logits, net->logits, 2 * GHOST_B * K * sizeof(float));
    net->bn_groups = 1;
    net_forward(net, x, 2 * GHOST_B, 0);
    CU_ASSERT(memcmp(logits, net->logits, 2 * GHOST_B * K * sizeof(float)) == 0);

    free(old);
    free(after[0]);
    free(after[1]);
    free(grouped);
    free(logits);
    net_free(net);
}

/* Gradients with bn_groups = 2 on 2b images (loss mean over 2b) equal the mean of the two
 * halves' gradients with bn_groups = 1 (each loss a mean over b): grad = (g1 + g2) / 2, the
 * reference in float64, within 1e-4 relative per element (of max(|ref|, 1e-2 * the largest
 * |ref|), as single elements near zero are sums that cancel: measured worst 4.4e-5 with a floor
 * of 1e-3, absolute differences about 1e-8) and within 1e-5 relative in the 2-norm. */
TEST(net_ghost_bn_gradient_is_mean_of_halves)
{
    float x[2 * GHOST_B * GHOST_SIDE * GHOST_SIDE];
    unsigned char labels[2 * GHOST_B];
    struct net *net = ghost_net(x, labels);
    size_t P = net->param_count, S = net->stat_count, K = (size_t)net->classes;
    size_t half = (size_t)GHOST_B * GHOST_SIDE * GHOST_SIDE;
    float *old = malloc(S * sizeof(float));
    memcpy(old, net->stats, S * sizeof(float));
    double *ref = calloc(P, sizeof(double));

    net->bn_groups = 1;
    for (int h = 0; h < 2; h++) {
        memcpy(net->stats, old, S * sizeof(float));
        net_zero_grads(net);
        net_forward(net, x + h * half, GHOST_B, 1);
        op_softmax_xent_forward(net->probs, NULL, net->logits, labels + h * GHOST_B, GHOST_B,
                                (int)K, 0.0f);
        op_softmax_xent_backward(net->probs, net->probs, labels + h * GHOST_B, GHOST_B, (int)K,
                                 0.0f);
        net_backward(net, net->probs, GHOST_B);
        for (size_t i = 0; i < P; i++)
            ref[i] += 0.5 * net->grads[i];
    }
    memcpy(net->stats, old, S * sizeof(float));
    net->bn_groups = 2;
    net_zero_grads(net);
    net_forward(net, x, 2 * GHOST_B, 1);
    op_softmax_xent_forward(net->probs, NULL, net->logits, labels, 2 * GHOST_B, (int)K, 0.0f);
    op_softmax_xent_backward(net->probs, net->probs, labels, 2 * GHOST_B, (int)K, 0.0f);
    net_backward(net, net->probs, 2 * GHOST_B);

    double top = 0;
    for (size_t i = 0; i < P; i++)
        top = fmax(top, fabs(ref[i]));
    CU_ASSERT_FATAL(top > 1e-3);
    size_t bad = 0, nonzero = 0;
    double worst = 0, err2 = 0, ref2 = 0;
    for (size_t i = 0; i < P; i++) {
        err2 += (net->grads[i] - ref[i]) * (net->grads[i] - ref[i]);
        ref2 += ref[i] * ref[i];
        double scale = fmax(fabs(ref[i]), 1e-2 * top);
        double rel = fabs(net->grads[i] - ref[i]) / scale;
        worst = fmax(worst, rel);
        nonzero += ref[i] != 0.0;
        if (rel > 1e-4 && bad++ < 3)
            fprintf(stderr, "grad[%zu]: grouped %.9g, mean of halves %.9g\n", i, net->grads[i],
                    ref[i]);
    }
    fprintf(stderr, "ghost BN gradient: worst relative difference %.3g over %zu parameters, "
            "2-norm %.3g\n", worst, P, sqrt(err2 / ref2));
    EXPECT_EQ_INT(bad, 0);
    CU_ASSERT(sqrt(err2) <= 1e-5 * sqrt(ref2));
    CU_ASSERT(nonzero > P / 2);
    free(old);
    free(ref);
    net_free(net);
}

/* The architecture step's backward (skip_weight_grads) gives the same gate and mask gradients
 * as the full backward, bit for bit, on the shared and the separate supernet with a channel
 * mask, for paths through every candidate; it writes no convolution or linear weight gradient
 * (the head's, the chosen blocks' expand, depthwise and projection weights, the stem's) and
 * leaves the layers' inputs' gradient below layer 0 alone. */
static void check_skip_weight_grads(const char *supernet, const int *choice)
{
    op_set_threads(1);
    struct job job = tiny_job_of(1, supernet);
    int B = 3, side = 9;
    struct net *net = net_create(&job.net, B, side, 1, 5, 0, 7);
    CU_ASSERT_PTR_NOT_NULL_FATAL(net);
    for (int l = 0; l < net->layer_count; l++)
        net->choice[l] = choice[l];
    net->mask_layer = 1;
    for (int c = 0; c < 8; c++)
        net->mask[c] = (c % 3 == 0) ? 0.25f : 1.0f;
    net_set_residual_scales(net, 1.0f);
    net->want_gate_grad = 1;
    float x[3 * 81];
    unsigned char labels[3];
    struct rng rng = test_rng(11);
    gradient_batch(net, x, labels, &rng);
    float gate[NET_MAX_LAYERS], mask[NET_MAX_CHANNELS];
    memcpy(gate, net->gate_grad, sizeof gate);
    memcpy(mask, net->mask_grad, sizeof mask);
    int nonzero = 0;
    for (int l = 0; l < net->layer_count; l++)
        nonzero += gate[l] != 0.0f;
    EXPECT_EQ_INT(nonzero, net->layer_count); /* so equal is not equal by being zero */

    memset(net->gate_grad, 0, sizeof net->gate_grad);
    net->skip_weight_grads = 1;
    rng = test_rng(11);
    gradient_batch(net, x, labels, &rng);
    net->skip_weight_grads = 0;
    EXPECT_EQ_INT(memcmp(gate, net->gate_grad, (size_t)net->layer_count * sizeof(float)), 0);
    EXPECT_EQ_INT(memcmp(mask, net->mask_grad, 8 * sizeof(float)), 0);
    /* the weight gradients it skips stay zero */
    size_t written = 0;
    const float *G = net->grads;
    for (size_t i = 0; i < (size_t)net->head_channels * net->classes + net->classes; i++)
        written += G[net->w_fc + i] != 0.0f;
    for (size_t i = 0; i < (size_t)net_out_channels(net, net->layer_count) * net->head_channels; i++)
        written += G[net->w_head + i] != 0.0f;
    for (size_t i = 0; i < net->stem_count; i++)
        written += G[net->stem_offset + i] != 0.0f;
    for (int l = 0; l < net->layer_count; l++) {
        const struct net_layer *layer = &net->layers[l];
        const struct net_block *blk = &layer->cand[choice[l]];
        if (blk->spec.kind == OP_SKIP)
            continue;
        const struct net_block *w = blk->sliced ? &layer->super : blk;
        size_t expand = w->spec.expand != 1 ? (size_t)w->cin * w->hidden : 0;
        for (size_t i = 0; i < expand; i++)
            written += G[w->w_expand + i] != 0.0f;
        for (size_t i = 0; i < (size_t)w->kernel * w->kernel * w->hidden; i++)
            written += G[w->w_dw + i] != 0.0f;
        for (size_t i = 0; i < (size_t)w->hidden * w->cout; i++)
            written += G[w->w_project + i] != 0.0f;
    }
    EXPECT_EQ_INT(written, 0);
    net_free(net);
}

TEST(net_skip_weight_grads_keeps_gate_and_mask_gradients)
{
    const int paths[4][3] = {{0, 0, 0}, {1, 1, 1}, {2, 2, 2}, {0, 2, 3}};
    for (int p = 0; p < 4; p++) {
        check_skip_weight_grads("shared", paths[p]);
        check_skip_weight_grads("separate", paths[p]);
    }
}

static const struct test_case TESTS[] = {
    CASE(net_fixed_gradient_matches_finite_differences),
    CASE(net_eval_gives_each_image_its_batch1_bits),
    CASE(net_supernet_gradient_with_channel_mask),
    CASE(net_gradient_with_stem_stride_2),
    CASE(net_shared_supernet_gradient_of_every_slice),
    CASE(net_shared_candidates_slice_one_superkernel),
    CASE(net_stem_stride_2_halves_the_feature_maps),
    CASE(net_layout_is_reverse_layer_order_and_tiles_the_buffer),
    CASE(net_step_touches_only_chosen_candidates),
    CASE(net_default_fixed_network_costs_about_7M_macs),
    CASE(net_ghost_bn_forward_matches_separate_halves),
    CASE(net_ghost_bn_gradient_is_mean_of_halves),
    CASE(net_skip_weight_grads_keeps_gate_and_mask_gradients),
};
TEST_MAIN("net", TESTS)
