/* Tests of common: the FNV-1a hash every fingerprint and checksum uses, and the comparison of
 * doubles every sort of timings uses. */
#include "testing.h"

#include "common.h"

#include <stdint.h>

TEST(fnv1a64_matches_the_published_test_vectors)
{
    /* the FNV reference values for "", "a" and "foobar" */
    CU_ASSERT(offnas_fnv1a64("", 0, OFFNAS_FNV1A64_SEED) == 0xcbf29ce484222325ULL);
    CU_ASSERT(offnas_fnv1a64("a", 1, OFFNAS_FNV1A64_SEED) == 0xaf63dc4c8601ec8cULL);
    CU_ASSERT(offnas_fnv1a64("foobar", 6, OFFNAS_FNV1A64_SEED) == 0x85944171f73967e8ULL);
}

TEST(fnv1a64_continues_from_its_seed)
{
    uint64_t foo = offnas_fnv1a64("foo", 3, OFFNAS_FNV1A64_SEED);
    CU_ASSERT(offnas_fnv1a64("bar", 3, foo) == offnas_fnv1a64("foobar", 6, OFFNAS_FNV1A64_SEED));
    CU_ASSERT(offnas_fnv1a64("bar", 3, foo) != offnas_fnv1a64("bar", 3, OFFNAS_FNV1A64_SEED));
}

TEST(compare_double_sorts_ascending)
{
    double v[] = {3.5, -1.0, 2.0, -1.0, 1e-300, 0.0};
    const double want[] = {-1.0, -1.0, 0.0, 1e-300, 2.0, 3.5};
    qsort(v, OFFNAS_ARRAY_LEN(v), sizeof *v, offnas_compare_double);
    for (size_t i = 0; i < OFFNAS_ARRAY_LEN(v); i++)
        EXPECT_NEAR(v[i], want[i], 0);
    double a = 2.0, b = 2.0, c = 3.0;
    EXPECT_EQ_INT(offnas_compare_double(&a, &b), 0);
    EXPECT_EQ_INT(offnas_compare_double(&a, &c), -1);
    EXPECT_EQ_INT(offnas_compare_double(&c, &a), 1);
}

static const struct test_case TESTS[] = {
    CASE(fnv1a64_matches_the_published_test_vectors),
    CASE(fnv1a64_continues_from_its_seed),
    CASE(compare_double_sorts_ascending),
};
TEST_MAIN("common", TESTS)
