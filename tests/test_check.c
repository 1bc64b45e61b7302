/* Tests of check: the range, finiteness and length checks of values read back from files, and
 * the one-line messages naming file and field. */
#define _POSIX_C_SOURCE 200809L
#include "testing.h"

#include "check.h"
#include "common.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Asserts the last error is one line and contains part. */
#define EXPECT_ERROR(part)                                                                      \
    do {                                                                                        \
        EXPECT_CONTAINS(offnas_last_error(), part);                                             \
        CU_ASSERT(strchr(offnas_last_error(), '\n') == NULL);                                   \
    } while (0)

/* 2^32 + 2 narrowed to int is 2: the range check must see the 64-bit value. */
TEST(check_int64_refuses_values_that_would_wrap)
{
    int out = -7;
    CU_ASSERT_EQUAL(check_int64("a.json", "split_point", 4294967298LL, 0, 9, &out), -1);
    EXPECT_ERROR("a.json: split_point: 4294967298 is not in 0..9");
    EXPECT_EQ_INT(out, -7); /* untouched on failure */
    CU_ASSERT_EQUAL(check_int64("a.json", "split_point", -4294967296LL, 0, 9, &out), -1);
    EXPECT_ERROR("-4294967296 is not in 0..9");
    CU_ASSERT_EQUAL(check_int64("a.json", "x", INT64_MIN, INT32_MIN, INT32_MAX, &out), -1);
}

TEST(check_int64_accepts_both_bounds)
{
    int out = -1;
    CU_ASSERT_EQUAL(check_int64("f", "x", 0, 0, 9, &out), 0);
    EXPECT_EQ_INT(out, 0);
    CU_ASSERT_EQUAL(check_int64("f", "x", 9, 0, 9, &out), 0);
    EXPECT_EQ_INT(out, 9);
    CU_ASSERT_EQUAL(check_int64("f", "x", 10, 0, 9, &out), -1);
    CU_ASSERT_EQUAL(check_int64("f", "x", INT32_MIN, INT32_MIN, INT32_MAX, &out), 0);
    EXPECT_EQ_INT(out, INT32_MIN);
}

TEST(check_int64_long_keeps_large_values)
{
    long out = 0;
    CU_ASSERT_EQUAL(check_int64_long("c.h5", "step", 5000000000LL, 0, INT64_MAX, &out), 0);
    CU_ASSERT(out == 5000000000L);
    CU_ASSERT_EQUAL(check_int64_long("c.h5", "step", -1, 0, INT64_MAX, &out), -1);
    EXPECT_ERROR("c.h5: step: -1 is not in 0..");
}

TEST(check_double_names_nan_and_inf)
{
    CU_ASSERT_EQUAL(check_double("p.h5", "fit_mape", NAN, 0, 100), -1);
    EXPECT_ERROR("p.h5: fit_mape: nan is not a number in [0, 100]");
    CU_ASSERT_EQUAL(check_double("p.h5", "fit_mape", INFINITY, 0, INFINITY), -1);
    EXPECT_ERROR("inf is not a number");
    CU_ASSERT_EQUAL(check_double("p.h5", "fit_mape", -INFINITY, -INFINITY, 0), -1);
    CU_ASSERT_EQUAL(check_double("p.h5", "x", 1e308, 0, CHECK_MAX_LATENCY_MS), -1);
    EXPECT_ERROR("1e+308 is not a number in [0, 3.6e+06]");
    CU_ASSERT_EQUAL(check_double("p.h5", "x", CHECK_MAX_LATENCY_MS, 0, CHECK_MAX_LATENCY_MS), 0);
    CU_ASSERT_EQUAL(check_double("p.h5", "x", -0.0, 0, 1), 0);
}

TEST(check_floats_and_doubles_name_the_first_bad_index)
{
    float f[4] = {0.5f, 1.0f, NAN, -1.0f};
    CU_ASSERT_EQUAL(check_floats("m.h5", "/w", f, 2, 0, 1), 0);
    CU_ASSERT_EQUAL(check_floats("m.h5", "/w", f, 4, 0, 1), -1);
    EXPECT_ERROR("m.h5: /w[2]: nan is not a number in [0, 1]");
    double d[3] = {1, 2, 1e300};
    CU_ASSERT_EQUAL(check_doubles("t.h5", "/median_ms", d, 3, 0, 10), -1);
    EXPECT_ERROR("t.h5: /median_ms[2]: 1e+300");
    CU_ASSERT_EQUAL(check_doubles("t.h5", "/median_ms", d, 2, 0, 10), 0);
    CU_ASSERT_EQUAL(check_doubles("t.h5", "/median_ms", NULL, 0, 0, 10), 0); /* empty: nothing bad */
}

TEST(check_string_refuses_what_does_not_fit_with_its_nul)
{
    char text[100];
    memset(text, 'x', sizeof text - 1);
    text[sizeof text - 1] = 0;
    CU_ASSERT_EQUAL(check_string("p.h5", "device", text, 64), -1);
    EXPECT_ERROR("p.h5: device: longer than 63 characters");
    CU_ASSERT_EQUAL(check_string("p.h5", "device", text, 100), 0);  /* 99 + NUL */
    CU_ASSERT_EQUAL(check_string("p.h5", "device", text, 99), -1);  /* no room for the NUL */
    CU_ASSERT_EQUAL(check_string("p.h5", "device", NULL, 64), -1);
    EXPECT_ERROR("p.h5: device: not a string");
    CU_ASSERT_EQUAL(check_string("p.h5", "device", "", 1), 0);
}

static const struct test_case TESTS[] = {
    CASE(check_int64_refuses_values_that_would_wrap),
    CASE(check_int64_accepts_both_bounds),
    CASE(check_int64_long_keeps_large_values),
    CASE(check_double_names_nan_and_inf),
    CASE(check_floats_and_doubles_name_the_first_bad_index),
    CASE(check_string_refuses_what_does_not_fit_with_its_nul),
};
TEST_MAIN("check", TESTS)
