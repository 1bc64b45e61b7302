/* Tests of link: the network presets and custom links, the transfer time and the wire
 * formats. */
#include "testing.h"

#include "common.h"
#include "job.h"
#include "link.h"

#include <stdio.h>

TEST(link_presets_and_custom_values)
{
    struct { const char *preset; double mbps, rtt; } want[] = {
        {"3g", 1.1, 100}, {"lte", 5.85, 50}, {"wifi", 18.88, 10}, {"5g", 50, 20}};
    for (size_t i = 0; i < OFFNAS_ARRAY_LEN(want); i++) {
        struct job job;
        job_defaults(&job);
        char set[64];
        snprintf(set, sizeof set, "network.preset=%s", want[i].preset);
        CU_ASSERT_EQUAL_FATAL(job_set(&job, set), 0);
        struct link link;
        CU_ASSERT_EQUAL_FATAL(link_from_job(&link, &job), 0);
        CU_ASSERT_STRING_EQUAL(link.name, want[i].preset);
        EXPECT_NEAR(link.bandwidth_mbps, want[i].mbps, 0);
        EXPECT_NEAR(link.rtt_ms, want[i].rtt, 0);
    }
    struct job job;
    job_defaults(&job);
    CU_ASSERT_EQUAL_FATAL(job_set(&job, "network.preset=custom") ||
                              job_set(&job, "network.bandwidth_mbps=2.5") ||
                              job_set(&job, "network.rtt_ms=33"),
                          0);
    struct link link;
    CU_ASSERT_EQUAL_FATAL(link_from_job(&link, &job), 0);
    CU_ASSERT_STRING_EQUAL(link.name, "custom");
    EXPECT_NEAR(link.bandwidth_mbps, 2.5, 0);
    EXPECT_NEAR(link.rtt_ms, 33, 0);
    CU_ASSERT_EQUAL_FATAL(job_set(&job, "network.rtt_ms=0"), 0);
    CU_ASSERT_EQUAL(link_from_job(&link, &job), -1);
    EXPECT_CONTAINS(offnas_last_error(), "network.rtt_ms");
}

TEST(transfer_time_formula)
{
    struct link lte = {"lte", 5.85, 50};
    /* 784 input bytes: 50 ms + 6272 bits / 5850 bits per ms */
    EXPECT_NEAR(link_transfer_ms(&lte, 784), 50 + 6272.0 / 5850.0, 1e-12);
    EXPECT_NEAR(link_transfer_ms(&lte, 0), 50, 0);
    struct link fast = {"custom", 1000, 1};
    EXPECT_NEAR(link_transfer_ms(&fast, 125000), 1 + 1, 1e-12); /* 1 Mbit at 1 Gbit/s */
}

TEST(wire_bytes_per_value)
{
    EXPECT_EQ_INT(link_wire_bytes("fp32"), 4);
    EXPECT_EQ_INT(link_wire_bytes("fp16"), 2);
    EXPECT_EQ_INT(link_wire_bytes("int8"), 1);
    EXPECT_EQ_INT(link_wire_bytes("bf16"), -1);
    EXPECT_CONTAINS(offnas_last_error(), "bf16");
}

/* A default job with key set to value (the test stops if job_set refuses it). */
static struct job job_with(const char *key, const char *value)
{
    struct job job;
    job_defaults(&job);
    char set[64];
    snprintf(set, sizeof set, "%s=%s", key, value);
    CU_ASSERT_EQUAL_FATAL(job_set(&job, set), 0);
    return job;
}

/* One table of names serves job.c (the words network.preset and search.wire accept) and
 * link.c (the values they stand for). */
TEST(link_names_are_the_words_of_the_job_keys)
{
    for (int p = 0; p < LINK_PRESET_COUNT; p++) {
        struct job job = job_with("network.preset", LINK_PRESET_NAMES[p]);
        struct link link;
        CU_ASSERT_EQUAL_FATAL(link_from_job(&link, &job), 0);
        CU_ASSERT_STRING_EQUAL(link.name, LINK_PRESET_NAMES[p]);
        CU_ASSERT(link.bandwidth_mbps > 0 && link.rtt_ms > 0);
    }
    CU_ASSERT_PTR_NULL(LINK_PRESET_NAMES[LINK_PRESET_COUNT]);
    CU_ASSERT_STRING_EQUAL(LINK_PRESET_NAMES[LINK_CUSTOM], "custom");
    for (int w = 0; w < LINK_WIRE_COUNT; w++) {
        struct job job = job_with("search.wire", LINK_WIRE_NAMES[w]);
        CU_ASSERT_STRING_EQUAL(job.search_wire, LINK_WIRE_NAMES[w]);
        CU_ASSERT(link_wire_bytes(LINK_WIRE_NAMES[w]) > 0);
    }
    CU_ASSERT_PTR_NULL(LINK_WIRE_NAMES[LINK_WIRE_COUNT]);
    struct job job;
    job_defaults(&job);
    CU_ASSERT(job_set(&job, "network.preset=6g") != 0);
    EXPECT_CONTAINS(offnas_last_error(), "3g, lte, wifi, 5g, custom");
}

TEST(link_errors_list_the_names)
{
    struct job job;
    job_defaults(&job);
    snprintf(job.network_preset, sizeof job.network_preset, "6g"); /* past job_set's check */
    struct link link;
    CU_ASSERT_EQUAL(link_from_job(&link, &job), -1);
    EXPECT_CONTAINS(offnas_last_error(),
                    "network.preset: unknown preset '6g' (3g, lte, wifi, 5g, custom)");
    CU_ASSERT_EQUAL(link_wire_bytes("bf16"), -1);
    EXPECT_CONTAINS(offnas_last_error(), "search.wire: unknown wire format 'bf16' (fp32, fp16, int8)");
}

static const struct test_case TESTS[] = {
    CASE(link_presets_and_custom_values),
    CASE(transfer_time_formula),
    CASE(wire_bytes_per_value),
    CASE(link_names_are_the_words_of_the_job_keys),
    CASE(link_errors_list_the_names),
};
TEST_MAIN("link", TESTS)
