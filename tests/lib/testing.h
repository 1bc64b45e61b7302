/* testing: the tiny harness around CUnit that every tests/test_<module>.c uses (tests/lib).
 *
 * A test file defines its tests with TEST(name) and lists them in a TESTS table:
 *
 *     TEST(job_parses_good_file) { CU_ASSERT_EQUAL(...); }
 *     static const struct test_case TESTS[] = { CASE(job_parses_good_file), ... };
 *     TEST_MAIN("job", TESTS)
 *
 * CMake reads the TEST(name) lines and registers each as its own ctest (`job.job_parses_good_file`),
 * which runs `test_job job_parses_good_file`; without an argument the binary runs all its tests.
 * EXPECT_NEAR prints both values on failure.
 */
#ifndef OFFNAS_TESTING_H
#define OFFNAS_TESTING_H

#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

struct test_case {
    const char *name;
    void (*fn)(void);
};

#define TEST(name) static void name(void)
#define CASE(name) { #name, name }

/* Asserts |a - b| <= tol and prints both values and the tolerance when it does not hold. */
#define EXPECT_NEAR(a, b, tol)                                                                  \
    do {                                                                                        \
        double ea_ = (double)(a), eb_ = (double)(b), et_ = (double)(tol);                      \
        int ok_ = fabs(ea_ - eb_) <= et_;                                                       \
        if (!ok_)                                                                               \
            fprintf(stderr, "%s:%d: %s = %.9g, %s = %.9g, |diff| %.3g > tol %.3g\n", __FILE__,  \
                    __LINE__, #a, ea_, #b, eb_, fabs(ea_ - eb_), et_);                          \
        CU_ASSERT(ok_);                                                                         \
    } while (0)

/* Asserts a == b for integers, printing both on failure. */
#define EXPECT_EQ_INT(a, b)                                                                     \
    do {                                                                                        \
        long long ea_ = (long long)(a), eb_ = (long long)(b);                                   \
        if (ea_ != eb_)                                                                         \
            fprintf(stderr, "%s:%d: %s = %lld, %s = %lld\n", __FILE__, __LINE__, #a, ea_, #b,   \
                    eb_);                                                                       \
        CU_ASSERT_EQUAL(ea_, eb_);                                                              \
    } while (0)

/* Asserts that the string s contains the substring part, printing s on failure. */
#define EXPECT_CONTAINS(s, part)                                                                \
    do {                                                                                        \
        const char *es_ = (s);                                                                  \
        int ok_ = es_ && strstr(es_, (part)) != NULL;                                           \
        if (!ok_)                                                                               \
            fprintf(stderr, "%s:%d: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__,     \
                    es_ ? es_ : "(null)", (part));                                              \
        CU_ASSERT(ok_);                                                                         \
    } while (0)

/* Registers the tests of the table (only the one named argv[1] when given) in one CUnit suite
 * and runs them; returns the exit status: 0 when all passed, 1 when any failed, 2 for an
 * unknown test name. The suite name also names the temporary folder of fixture.h. */
int test_main(const char *suite_name, const struct test_case *tests, size_t count, int argc,
              char **argv);

/* The suite being run (NULL before test_main). */
extern const char *test_suite_name;

#define TEST_MAIN(suite_name, table)                                                            \
    int main(int argc, char **argv)                                                             \
    {                                                                                           \
        return test_main(suite_name, table, sizeof(table) / sizeof((table)[0]), argc, argv);    \
    }

#endif
