/* Tests of timing: the quantiles of a set of samples and the warm-up and timed runs of
 * timing_run. */
#include "testing.h"

#include "common.h"
#include "timing.h"

TEST(timing_of_samples_interpolates_quantiles)
{
    double odd[] = {5, 1, 4, 2, 3};
    struct timing t = timing_of_samples(odd, 5);
    EXPECT_NEAR(t.min, 1, 0);
    EXPECT_NEAR(t.max, 5, 0);
    EXPECT_NEAR(t.median, 3, 0);
    EXPECT_NEAR(t.p10, 1.4, 1e-12); /* position 0.4 between 1 and 2 */
    EXPECT_NEAR(t.p90, 4.6, 1e-12);
    EXPECT_EQ_INT(t.repeats, 5);
    EXPECT_NEAR(odd[0], 1, 0); /* sorted in place */
    EXPECT_NEAR(odd[4], 5, 0);
    double even[] = {8, 2, 6, 4};
    EXPECT_NEAR(timing_of_samples(even, 4).median, 5, 1e-12); /* mean of the middle two */
    double one[] = {0.25};
    t = timing_of_samples(one, 1);
    CU_ASSERT(t.min == 0.25 && t.p10 == 0.25 && t.median == 0.25 && t.p90 == 0.25 &&
              t.max == 0.25);
}

/* Counts its calls and busy-waits a little, so a timed run takes a measurable time. */
static void count_and_wait(void *ctx)
{
    int *calls = ctx;
    ++*calls;
    double start = offnas_now();
    while (offnas_now() - start < 2e-4)
        ;
}

TEST(timing_run_warms_up_then_times_every_repeat)
{
    int calls = 0;
    struct timing t = timing_run(count_and_wait, &calls, 3, 7);
    EXPECT_EQ_INT(calls, 10);
    EXPECT_EQ_INT(t.repeats, 7);
    CU_ASSERT(t.min >= 0.2); /* milliseconds, not seconds */
    CU_ASSERT(t.min <= t.p10 && t.p10 <= t.median && t.median <= t.p90 && t.p90 <= t.max);
}

static const struct test_case TESTS[] = {
    CASE(timing_of_samples_interpolates_quantiles),
    CASE(timing_run_warms_up_then_times_every_repeat),
};
TEST_MAIN("timing", TESTS)
