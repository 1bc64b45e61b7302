/* testing: test_main of testing.h. */
#include "testing.h"

const char *test_suite_name;

int test_main(const char *suite_name, const struct test_case *tests, size_t count, int argc,
              char **argv)
{
    test_suite_name = suite_name;
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    CU_pSuite suite = CU_add_suite(suite_name, NULL, NULL);
    size_t added = 0;
    for (size_t i = 0; i < count; i++) {
        if (argc > 1 && strcmp(argv[1], tests[i].name) != 0)
            continue;
        CU_add_test(suite, tests[i].name, tests[i].fn);
        added++;
    }
    if (added == 0) {
        fprintf(stderr, "no test named '%s' in suite %s\n", argc > 1 ? argv[1] : "", suite_name);
        CU_cleanup_registry();
        return 2;
    }
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    CU_cleanup_registry();
    return failed ? 1 : 0;
}
