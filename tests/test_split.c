/* Tests of split: the device half followed by the edge half computes what the whole network
 * computes with the channel mask, at every split, and sends only the kept channels. */
#include "testing.h"
#include "tiny.h"

#include "common.h"
#include "split.h"

#include <math.h>
#include <stdlib.h>

/* Every split 0..L+1 of the tiny fixed network, with a mask that drops every third channel
 * (and the first) at the inner splits: logits of the halves equal net_forward's with the mask
 * to 1e-6, and the device sends exactly the kept channels of the feature map. */
TEST(split_halves_compute_the_masked_network)
{
    struct job job = tiny_job(NULL);
    struct net *net = net_create(&job.net, 1, job.data_resize, 1, 10, 1, 7);
    CU_ASSERT_PTR_NOT_NULL_FATAL(net);
    struct rng r = test_rng(3);
    const int L = net->layer_count, n = job.data_resize * job.data_resize;
    float *x = offnas_calloc((size_t)n, sizeof(float));
    for (int i = 0; i < n; i++)
        x[i] = (float)rng_normal(&r);
    /* running statistics other than 0 and 1, so that eval-mode batch norm matters */
    for (size_t i = 0; i < net->stat_count; i++)
        net->stats[i] = 0.5f + 0.25f * (float)rng_uniform(&r);
    float ref[16], mask[NET_MAX_CHANNELS];
    for (int s = 0; s <= L + 1; s++) {
        int total = s >= 1 && s <= L ? net_out_channels(net, s) : 0;
        int kept = 0;
        for (int c = 0; c < total; c++) {
            mask[c] = c % 3 != 0;
            kept += mask[c] != 0.0f;
        }
        net->mask_layer = total ? s - 1 : -1;
        for (int c = 0; c < total; c++)
            net->mask[c] = mask[c];
        net_forward(net, x, 1, 0);
        for (int k = 0; k < net->classes; k++)
            ref[k] = net->logits[k];
        /* the feature map the device should send: layer s's masked output, kept channels */
        struct split_half h;
        CU_ASSERT_EQUAL_FATAL(split_half_init(&h, net, s, total ? mask : NULL), 0);
        CU_ASSERT_EQUAL(net->mask_layer, -1);
        if (total) {
            EXPECT_EQ_INT(h.kept, kept);
            EXPECT_EQ_INT(h.channels[0], 1);
        }
        const float *sent = split_device_forward(&h, x);
        if (s == L + 1) {
            CU_ASSERT_PTR_NULL(sent);
        } else {
            CU_ASSERT_PTR_NOT_NULL_FATAL(sent);
            /* the logits must come from the edge half: spoil them first */
            for (int k = 0; k < net->classes; k++)
                net->logits[k] = NAN;
            split_edge_forward(&h, sent);
        }
        for (int k = 0; k < net->classes; k++)
            EXPECT_NEAR(net->logits[k], ref[k], 1e-6);
        split_half_free(&h);
    }
    free(x);
    net_free(net);
}

/* A split out of range, or a mask that keeps no channel, is refused with its figures. */
TEST(split_half_init_refuses_bad_splits)
{
    struct job job = tiny_job(NULL);
    struct net *net = net_create(&job.net, 1, job.data_resize, 1, 10, 1, 7);
    CU_ASSERT_PTR_NOT_NULL_FATAL(net);
    struct split_half h;
    EXPECT_EQ_INT(split_half_init(&h, net, net->layer_count + 2, NULL), -1);
    EXPECT_CONTAINS(offnas_last_error(), "split: 5 is not in 0..4");
    split_half_free(&h);
    float none[NET_MAX_CHANNELS] = {0};
    EXPECT_EQ_INT(split_half_init(&h, net, 1, none), -1);
    EXPECT_CONTAINS(offnas_last_error(), "keeps none of its 6 channels");
    split_half_free(&h);
    net_free(net);
}

static const struct test_case TESTS[] = {
    CASE(split_halves_compute_the_masked_network),
    CASE(split_half_init_refuses_bad_splits),
};

TEST_MAIN("split", TESTS)
