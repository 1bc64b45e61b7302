/* Tests of probe: a partition measured over loopback TCP as the profiler ranks do it (an edge
 * thread and the device in this thread), the link fit, and the refusal of a partition whose
 * networks differ. */
#include "testing.h"
#include "tiny.h"

#include "common.h"
#include "probe.h"
#include "sock.h"
#include "wire.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

/* The least-squares line through exact points is the line (float64 to 1e-9); equal x refused. */
TEST(fit_line_recovers_a_line)
{
    const double x[4] = {256, 1229, 4916, 20000};
    double y[4], a, b;
    for (int i = 0; i < 4; i++)
        y[i] = 10.0 + 8.0 * x[i] / (18.88 * 1e3); /* wifi: rtt 10 ms, 18.88 Mbit/s */
    CU_ASSERT_EQUAL_FATAL(probe_fit_line(x, y, 4, &a, &b), 0);
    EXPECT_NEAR(a, 10.0, 1e-9);
    EXPECT_NEAR(8.0 / (b * 1e3), 18.88, 1e-6);
    const double same[3] = {5, 5, 5};
    EXPECT_EQ_INT(probe_fit_line(same, y, 3, &a, &b), -1);
    EXPECT_EQ_INT(probe_fit_line(x, y, 1, &a, &b), -1);
}

struct edge_args {
    int fd;
    struct net *net;
    struct probe_partition p;
    double edge_ms;
    int rc;
    char error[1024];
};

static void *edge_thread(void *arg)
{
    struct edge_args *e = arg;
    e->rc = probe_edge_serve(e->fd, e->net, &e->p, 10.0, &e->edge_ms);
    snprintf(e->error, sizeof e->error, "%s", e->rc ? offnas_last_error() : "");
    return NULL;
}

/* Runs partition p with an edge network of seed edge_seed (the device's is seed 7). */
static int run_probe(const struct probe_partition *p, uint64_t edge_seed, struct probe_result *r,
                     struct edge_args *e)
{
    struct job job = tiny_job(NULL);
    struct net *dev = net_create(&job.net, 1, job.data_resize, 1, 10, 0, 7);
    struct net *edge = net_create(&job.net, 1, job.data_resize, 1, 10, 0, edge_seed);
    CU_ASSERT_PTR_NOT_NULL_FATAL(dev);
    CU_ASSERT_PTR_NOT_NULL_FATAL(edge);
    struct sockaddr_in any, bound;
    CU_ASSERT_EQUAL_FATAL(sock_parse_addr("127.0.0.1:0", "test", 1, &any), 0);
    int fd = sock_listen(&any, 4, &bound);
    CU_ASSERT_FATAL(fd >= 0);
    *e = (struct edge_args){.fd = fd, .net = edge, .p = *p};
    pthread_t t;
    CU_ASSERT_EQUAL_FATAL(pthread_create(&t, NULL, edge_thread, e), 0);
    int rc = probe_device_run(&bound, dev, p, 12, r);
    pthread_join(t, NULL);
    close(fd);
    net_free(dev);
    net_free(edge);
    return rc;
}

/* An inner partition of the tiny space over loopback: every request answered, the edge's
 * compute time reported and its median known to the edge, the frame as the protocol sizes it
 * (16 header + 25 fixed + 2 per channel + the int8 values), and the parts add up. */
TEST(partition_measured_over_loopback)
{
    struct job job = tiny_job(NULL);
    struct net *space = net_create(&job.net, 1, job.data_resize, 1, 10, 0, 7);
    CU_ASSERT_PTR_NOT_NULL_FATAL(space);
    struct probe_partition p = {.layers = space->layer_count, .split = 2, .kept = 3,
                                .format = WIRE_INT8};
    int side = net_out_side(space, 2);
    net_free(space);
    struct probe_result r;
    struct edge_args e;
    CU_ASSERT_EQUAL_FATAL(run_probe(&p, 7, &r, &e), 0);
    EXPECT_EQ_INT(e.rc, 0);
    EXPECT_EQ_INT(r.samples, 12);
    CU_ASSERT(r.edge_ms > 0 && e.edge_ms > 0);
    CU_ASSERT(r.device_ms > 0);
    EXPECT_NEAR(r.frame_bytes, 16 + 25 + 2 * 3 + side * side * 3, 0);
    CU_ASSERT(r.total_ms >= r.device_ms);
}

/* Networks that differ (another seed: other weights) are refused at the hello by both sides,
 * the device's error naming the mismatch. */
TEST(partition_of_other_weights_is_refused)
{
    struct job job = tiny_job(NULL);
    struct net *space = net_create(&job.net, 1, job.data_resize, 1, 10, 0, 7);
    CU_ASSERT_PTR_NOT_NULL_FATAL(space);
    struct probe_partition p = {.layers = space->layer_count, .split = 1, .kept = 2,
                                .format = WIRE_FP16};
    net_free(space);
    struct probe_result r;
    struct edge_args e;
    EXPECT_EQ_INT(run_probe(&p, 8, &r, &e), -1);
    EXPECT_CONTAINS(offnas_last_error(), "mismatch");
    EXPECT_EQ_INT(e.rc, -1);
    EXPECT_CONTAINS(e.error, "mismatch");
}

static const struct test_case TESTS[] = {
    CASE(fit_line_recovers_a_line),
    CASE(partition_measured_over_loopback),
    CASE(partition_of_other_weights_is_refused),
};

TEST_MAIN("probe", TESTS)
