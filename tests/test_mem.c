/* Tests of the memory estimate (mem.h): it follows what net_create really allocates, a normal
 * job fits, train.batch at its maximum is refused with the estimate and the limit, and the
 * limit follows RLIMIT_AS. */
#define _GNU_SOURCE
#include "testing.h"
#include "tiny.h"

#include "common.h"
#include "job.h"
#include "mem.h"
#include "net.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

/* Bytes malloc has handed out (small blocks and mmapped ones). */
static double allocated_bytes(void)
{
    struct mallinfo2 m = mallinfo2();
    return (double)m.uordblks + (double)m.hblkhd;
}

TEST(mem_estimate_follows_what_net_create_allocates)
{
    struct job job = test_job("train.batch=64");
    for (int fixed = 0; fixed <= 1; fixed++) {
        double before = allocated_bytes();
        struct net *net = net_create(&job.net, 64, job.data_resize, 1, 10, fixed, 1);
        CU_ASSERT_FATAL(net != NULL);
        double used = allocated_bytes() - before;
        (void)used; /* unused under ASan */
        double estimate = mem_net_bytes(&job.net, 64, job.data_resize, 1, 10, fixed);
        /* at least the parameters and their gradients */
        CU_ASSERT(estimate >= 2.0 * net->param_count * sizeof(float));
#ifndef __SANITIZE_ADDRESS__ /* ASan's allocator is not malloc's: mallinfo2 does not see it */
        if (estimate < 0.8 * used || estimate > 1.5 * used)
            fprintf(stderr, "fixed %d: estimate %.0f bytes, net_create allocated %.0f\n", fixed,
                    estimate, used);
        CU_ASSERT(estimate >= 0.8 * used && estimate <= 1.5 * used);
#endif
        net_free(net);
    }
}

TEST(mem_a_normal_job_fits_and_the_largest_batch_does_not)
{
    char why[64];
    double limit = mem_limit_bytes(why, sizeof why);
    CU_ASSERT(limit > 0);
    /* the default job (batch 64 of 28x28) with Fashion-MNIST loaded: far below any machine */
    struct job job = test_job(NULL);
    CU_ASSERT(mem_net_bytes(&job.net, 64, 28, 1, 10, 0) < 1e9);
    EXPECT_EQ_INT(mem_check_job(&job, 64, 1, 10, 0, 55e6, 2), 0);
    /* train.batch at its maximum: refused, naming the key, the estimate and the limit */
    job = test_job("train.batch=1048576");
    EXPECT_EQ_INT(mem_check_job(&job, job.train_batch, 1, 10, 0, 55e6, 2), -1);
    EXPECT_CONTAINS(offnas_last_error(), "train.batch: the job needs about ");
    EXPECT_CONTAINS(offnas_last_error(), "a batch of 1048576 images of 28x28x1");
    EXPECT_CONTAINS(offnas_last_error(), "this machine allows");
    /* one allocation beyond the limit */
    EXPECT_EQ_INT(mem_check("f.h5: /train/images", 2 * limit + 1), -1);
    EXPECT_CONTAINS(offnas_last_error(), "f.h5: /train/images: needs ");
    EXPECT_EQ_INT(mem_check("f.h5: /train/images", 1000), 0);
    char buf[32];
    CU_ASSERT_STRING_EQUAL(mem_format(buf, sizeof buf, 61.23e9), "61.2 GB");
    CU_ASSERT_STRING_EQUAL(mem_format(buf, sizeof buf, 512), "512 bytes");
}

/* Four ranks on the node share its memory: the physical (or cgroup) limit is a quarter of one
 * rank's, and the message says why. A value that is not a count is ignored. */
TEST(mem_limit_is_shared_by_the_ranks_of_a_node)
{
    static const char *const VARS[] = {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS",
                                       "SLURM_NTASKS_PER_NODE"};
    for (size_t i = 0; i < sizeof VARS / sizeof VARS[0]; i++)
        unsetenv(VARS[i]);
    char why1[64], why4[64];
    double one = mem_limit_bytes(why1, sizeof why1);
    EXPECT_EQ_INT(mem_local_ranks(), 1);
    CU_ASSERT_EQUAL_FATAL(setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "4", 1), 0);
    EXPECT_EQ_INT(mem_local_ranks(), 4);
    double four = mem_limit_bytes(why4, sizeof why4);
    if (strstr(why1, "physical memory") || strstr(why1, "cgroup")) {
        EXPECT_NEAR(four, one / 4, one * 1e-12);
        EXPECT_CONTAINS(why4, "/ 4 ranks");
    } else { /* an rlimit is per process: unchanged unless a shared limit falls below it */
        CU_ASSERT(four <= one);
    }
    CU_ASSERT_EQUAL_FATAL(setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "4x", 1), 0);
    EXPECT_EQ_INT(mem_local_ranks(), 1);
    CU_ASSERT_EQUAL_FATAL(setenv("SLURM_NTASKS_PER_NODE", "2", 1), 0);
    EXPECT_EQ_INT(mem_local_ranks(), 2); /* the first that is a count */
    unsetenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    unsetenv("SLURM_NTASKS_PER_NODE");
}

TEST(mem_limit_follows_rlimit_as)
{
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        struct rlimit rl = {1u << 30, 1u << 30}; /* 1 GiB of address space */
        if (setrlimit(RLIMIT_AS, &rl))
            _exit(3);
        char why[64];
        double limit = mem_limit_bytes(why, sizeof why);
        _exit(limit == (double)(1u << 30) && !strcmp(why, "RLIMIT_AS") ? 0 : 1);
    }
    int status = 0;
    CU_ASSERT_EQUAL_FATAL(waitpid(pid, &status, 0), pid);
    CU_ASSERT(WIFEXITED(status));
    EXPECT_EQ_INT(WEXITSTATUS(status), 0);
}

static const struct test_case TESTS[] = {
    CASE(mem_estimate_follows_what_net_create_allocates),
    CASE(mem_a_normal_job_fits_and_the_largest_batch_does_not),
    CASE(mem_limit_is_shared_by_the_ranks_of_a_node),
    CASE(mem_limit_follows_rlimit_as),
};

TEST_MAIN("mem", TESTS)
