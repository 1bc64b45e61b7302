/* Tests of the supernet: whole-network gradients against finite differences, the parameter
 * layout, and that a step uses (and an optimizer touches) only the chosen candidates. */
#include "testing.h"

#include "common.h"
#include "job.h"
#include "net.h"
#include "op.h"
#include "train.h"

#include <stdlib.h>

static struct job tiny_job(void)
{
    struct job job;
    job_defaults(&job);
    CU_ASSERT_EQUAL_FATAL(job_set(&job, "net.layers=6/1, 8/2, 8/1"), 0);
    CU_ASSERT_EQUAL_FATAL(job_set(&job, "net.ops=k3e1, k5e3, k3e3"), 0);
    CU_ASSERT_EQUAL_FATAL(job_set(&job, "net.candidates=k3e1, k5e3, k3e3, skip"), 0);
    CU_ASSERT_EQUAL_FATAL(job_set(&job, "net.stem=4"), 0);
    CU_ASSERT_EQUAL_FATAL(job_set(&job, "net.head=10"), 0);
    CU_ASSERT_EQUAL_FATAL(job_finalize(&job), 0);
    return job;
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

/* The analytic gradient of the whole network (fixed and supernet with a channel mask) agrees
 * with central differences along random directions of all parameters (h = 3e-4 along a
 * unit-RMS direction). The forward is float32 and ReLU6 has kinks that a finite step can
 * cross, and float32 rounding of a sum over many outputs adds noise of about 1e-3 to each
 * difference quotient: at least 6 of 8 directions must agree within 5% (of max(|numeric|,
 * 0.05)), and none may be off by more than 25%. The
 * per-op gradients are checked element by element in float64 in test_op. */
static void check_network_gradient(int fixed, int with_mask)
{
    op_set_threads(1);
    struct job job = tiny_job();
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

TEST(net_fixed_gradient_matches_finite_differences) { check_network_gradient(1, 0); }
TEST(net_supernet_gradient_with_channel_mask) { check_network_gradient(0, 1); }

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
    CASE(net_layout_is_reverse_layer_order_and_tiles_the_buffer),
    CASE(net_step_touches_only_chosen_candidates),
    CASE(net_default_fixed_network_costs_about_7M_macs),
};
TEST_MAIN("net", TESTS)
