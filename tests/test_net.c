/* Tests of the supernet: whole-network gradients against finite differences, the parameter
 * layout, and that a step uses (and an optimizer touches) only the chosen candidates. */
#include "testing.h"

#include "common.h"
#include "job.h"
#include "net.h"
#include "op.h"
#include "train.h"

#include <stdlib.h>

static struct job tiny_job_with_stem_stride(int stem_stride)
{
    struct job job;
    job_defaults(&job);
    char stride[32];
    snprintf(stride, sizeof stride, "net.stem_stride=%d", stem_stride);
    CU_ASSERT_EQUAL_FATAL(job_set(&job, stride), 0);
    CU_ASSERT_EQUAL_FATAL(job_set(&job, "net.layers=6/1, 8/2, 8/1"), 0);
    CU_ASSERT_EQUAL_FATAL(job_set(&job, "net.ops=k3e1, k5e3, k3e3"), 0);
    CU_ASSERT_EQUAL_FATAL(job_set(&job, "net.candidates=k3e1, k5e3, k3e3, skip"), 0);
    CU_ASSERT_EQUAL_FATAL(job_set(&job, "net.stem=4"), 0);
    CU_ASSERT_EQUAL_FATAL(job_set(&job, "net.head=10"), 0);
    CU_ASSERT_EQUAL_FATAL(job_finalize(&job), 0);
    return job;
}

static struct job tiny_job(void) { return tiny_job_with_stem_stride(1); }

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

/* The analytic gradient of the whole network (fixed and supernet with a channel mask) agrees
 * with central differences along random directions of all parameters (h = 3e-4 along a
 * unit-RMS direction). The forward is float32 and ReLU6 has kinks that a finite step can
 * cross, and float32 rounding of a sum over many outputs adds noise of about 1e-3 to each
 * difference quotient: at least 6 of 8 directions must agree within 5% (of max(|numeric|,
 * 0.05)), and none may be off by more than 25%. The
 * per-op gradients are checked element by element in float64 in test_op. */
static void check_network_gradient(int fixed, int with_mask, int stem_stride)
{
    op_set_threads(1);
    struct job job = tiny_job_with_stem_stride(stem_stride);
    int B = 3, side = 9;
    struct net *net = net_create(&job, B, side, 1, 5, fixed, 7);
    CU_ASSERT_PTR_NOT_NULL_FATAL(net);
    if (!fixed) {
        net->choice[0] = 1; /* k5e3 at stride 1 with residual */
        net->choice[1] = 2; /* k3e3 stride 2 */
        net->choice[2] = 3; /* skip */
    }
    if (with_mask) {
        net->mask_layer = 1;
        for (int c = 0; c < 8; c++)
            net->mask[c] = (c % 3 == 0) ? 0.0f : 1.0f;
    }
    struct rng rng;
    rng_seed(&rng, 11, 0);
    /* residual BN scales start at 0, which would hide the block bodies: start them at 1 */
    for (int l = 0; l < net->layer_count; l++)
        for (int i = 0; i < net->layers[l].candidate_count; i++) {
            const struct net_block *blk = &net->layers[l].cand[i];
            if (blk->spec.kind == OP_BLOCK && blk->residual)
                for (int c = 0; c < blk->cout; c++)
                    net->params[blk->bn3.gamma + c] = 1.0f;
        }
    float x[3 * 81];
    for (int i = 0; i < B * side * side; i++)
        x[i] = (float)rng_normal(&rng);
    unsigned char labels[3] = {1, 4, 2};

    net_zero_grads(net);
    net_loss(net, x, labels, B);
    op_softmax_xent_backward(net->probs, net->probs, labels, B, net->classes, 0.0f);
    net_backward(net, net->probs, B);

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
            float m0 = net->mask[c];
            double h = 1e-2;
            net->mask[c] = m0 + (float)h;
            double lp = net_loss(net, x, labels, B);
            net->mask[c] = m0 - (float)h;
            double lm = net_loss(net, x, labels, B);
            net->mask[c] = m0;
            double numeric = (lp - lm) / (2 * h);
            EXPECT_NEAR(net->mask_grad[c], numeric, 0.03 * fmax(fabs(numeric), 0.05));
        }
    }
    free(base);
    free(dir);
    net_free(net);
}

TEST(net_fixed_gradient_matches_finite_differences) { check_network_gradient(1, 0, 1); }
TEST(net_supernet_gradient_with_channel_mask) { check_network_gradient(0, 1, 1); }
/* the strided stem's backward (im2col at 5x5 output of the 9x9 input) reaches every weight */
TEST(net_gradient_with_stem_stride_2) { check_network_gradient(0, 1, 2); }

/* A stride-2 stem halves every feature map after it: 12x12 input -> 6x6 stem -> 6, 3, 3 for
 * layers 6/1, 8/2, 8/1; the MAC count uses the 6x6 stem output, the parameters do not change,
 * and the forward fills finite logits. */
TEST(net_stem_stride_2_halves_the_feature_maps)
{
    struct job job1 = tiny_job_with_stem_stride(1), job2 = tiny_job_with_stem_stride(2);
    struct net *one = net_create(&job1, 2, 12, 1, 5, 1, 3);
    struct net *two = net_create(&job2, 2, 12, 1, 5, 1, 3);
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
    struct rng rng;
    rng_seed(&rng, 4, 0);
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
    struct job job = tiny_job();
    struct net *net = net_create(&job, 2, 9, 1, 5, 0, 1);
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
    struct job job = tiny_job();
    int B = 2, side = 9;
    struct net *net = net_create(&job, B, side, 1, 5, 0, 3);
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
    struct net *net = net_create(&job, 1, 28, 1, 10, 1, 1);
    CU_ASSERT_PTR_NOT_NULL_FATAL(net);
    double macs = net_macs_chosen(net);
    CU_ASSERT(macs > 6.0e6 && macs < 8.0e6);
    fprintf(stderr, "default network: %.3f M MACs, %zu parameters\n", macs / 1e6,
            net_param_count_chosen(net));
    net_free(net);
}

static const struct test_case TESTS[] = {
    CASE(net_fixed_gradient_matches_finite_differences),
    CASE(net_supernet_gradient_with_channel_mask),
    CASE(net_gradient_with_stem_stride_2),
    CASE(net_stem_stride_2_halves_the_feature_maps),
    CASE(net_layout_is_reverse_layer_order_and_tiles_the_buffer),
    CASE(net_step_touches_only_chosen_candidates),
    CASE(net_default_fixed_network_costs_about_7M_macs),
};
TEST_MAIN("net", TESTS)
