/* Tests of latency_measure: a table measured on a tiny net, the end-to-end forward timing and
 * the stamp of a measured table. */
#define _POSIX_C_SOURCE 200809L
#include "fixture.h"
#include "testing.h"
#include "tiny.h"

#include "common.h"
#include "latency.h"
#include "latency_measure.h"
#include "net.h"
#include "op.h"

TEST(measure_gives_ordered_positive_statistics)
{
    op_set_threads(1);
    offnas_log_quiet = 1;
    struct net *net = tiny_net("data.resize=16", 1);
    struct latency_table t;
    latency_table_init(&t, net, "here");
    latency_measure(&t, net, 2, 9);
    int skip = net_find_candidate(net, 2, &(struct op_spec){.kind = OP_SKIP});
    CU_ASSERT_FATAL(skip >= 0);
    for (int s = 0; s < t.slot_count; s++)
        for (int i = 0; i < t.op_count[s]; i++) {
            int is_skip = s == 3 && i == skip;
            CU_ASSERT(isfinite(t.median[s][i]) && (is_skip || t.median[s][i] > 0));
            CU_ASSERT(t.p10[s][i] <= t.median[s][i] && t.median[s][i] <= t.p90[s][i]);
            EXPECT_EQ_INT(t.repeats[s][i], 9);
        }
    /* skip is a no-op: far cheaper than the biggest block of its layer */
    double block = 0;
    for (int i = 0; i < t.op_count[3]; i++)
        block = t.median[3][i] > block ? t.median[3][i] : block;
    if (!(t.median[3][skip] * 10 < block))
        fprintf(stderr, "skip %.6f ms, largest block %.6f ms\n", t.median[3][skip], block);
    CU_ASSERT(t.median[3][skip] * 10 < block);
    net_free(net);
}

TEST(forward_timing_is_ordered_and_counts_its_repeats)
{
    op_set_threads(1);
    struct net *net = tiny_net(NULL, 1);
    float x[12 * 12];
    for (int i = 0; i < 12 * 12; i++)
        x[i] = (float)(i % 7) - 3.0f;
    struct timing t = latency_forward_timing(net, x, 1, 5);
    EXPECT_EQ_INT(t.repeats, 5);
    CU_ASSERT(t.min > 0);
    CU_ASSERT(t.min <= t.p10 && t.p10 <= t.median && t.median <= t.p90 && t.p90 <= t.max);
    CU_ASSERT(t.max < 1e4); /* milliseconds of a 12x12 network: far below ten seconds */
    net_free(net);
}

TEST(stamp_here_names_this_machine_and_now)
{
    struct net *net = tiny_net(NULL, 1);
    struct latency_table t;
    latency_table_init(&t, net, "here");
    latency_stamp_here(&t, 4);
    EXPECT_EQ_INT(t.threads, 4);
    CU_ASSERT_STRING_EQUAL(t.source, "measured");
    CU_ASSERT(t.host[0] != 0 && t.cpu[0] != 0);
    /* 2026-11-27T17:20:00Z */
    EXPECT_EQ_INT(strlen(t.date), 20);
    CU_ASSERT(t.date[4] == '-' && t.date[10] == 'T' && t.date[19] == 'Z');
    net_free(net);
}

static const struct test_case TESTS[] = {
    CASE(measure_gives_ordered_positive_statistics),
    CASE(forward_timing_is_ordered_and_counts_its_repeats),
    CASE(stamp_here_names_this_machine_and_now),
};
TEST_MAIN("latency_measure", TESTS)
