/* Tests of dist without MPI: bucket assembly of dist_grad_ready, dist_grads_finish on a real
 * backward pass, checksums, dist_check_same and dist_average.
 *
 * A fake two-trainer dist (a copy of *dist_local() with size 2) replaces reduce_start by a
 * recorder that logs (offset into the watched buffer, count) and multiplies the values by 2:
 * the sum over two trainers that hold identical gradients. dist_grads_finish then scales by 1/2,
 * so a correct bucketing leaves every used gradient as it was, and every float handed over
 * twice (or never) shows up in the log and in the values. */
#define _POSIX_C_SOURCE 200809L
#include "testing.h"
#include "tiny.h"

#include "common.h"
#include "dist.h"
#include "job.h"
#include "net.h"
#include "op.h"
#include "rng.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- the fake two-trainer dist ------------------------------------------------------------ */

#define MAX_LOG 4096

struct rec {
    long offset; /* into rec_base (floats) */
    size_t count;
};

static const float *rec_base; /* buffer the offsets are measured from */
static size_t rec_base_len;   /* its length in floats */
static struct rec rec_log[MAX_LOG];
static int rec_n, rec_waits, rec_outside;
static uint64_t other_checksum; /* the second trainer's checksum, for fake_max_longs */
static int other_set;

static void fake_reduce_start(struct dist *d, float *buf, size_t n)
{
    (void)d;
    long off = (long)(buf - rec_base);
    if (off < 0 || (size_t)off + n > rec_base_len)
        rec_outside++;
    if (rec_n < MAX_LOG)
        rec_log[rec_n++] = (struct rec){off, n};
    for (size_t i = 0; i < n; i++)
        buf[i] *= 2.0f;
}

static void fake_reduce_wait(struct dist *d)
{
    (void)d;
    rec_waits++;
}

static void fake_sum_doubles(struct dist *d, double *v, int n)
{
    (void)d;
    for (int i = 0; i < n; i++)
        v[i] *= 2.0;
}

/* Maximum with the vector the other trainer would send (dist_check_same's encoding of its
 * checksum), or with itself (identical trainers) when no other checksum is set. */
static void fake_max_longs(struct dist *d, long *v, int n)
{
    (void)d;
    if (!other_set || n != 4)
        return;
    long o[4];
    dist_checksum_words(other_checksum, o);
    for (int i = 0; i < 4; i++)
        if (o[i] > v[i])
            v[i] = o[i];
}

static struct dist fake_dist(size_t bucket_floats, const float *base, size_t len)
{
    struct dist d = *dist_local();
    d.size = 2;
    d.world_size = 2;
    d.rank = 0;
    d.reduce_start = fake_reduce_start;
    d.reduce_wait = fake_reduce_wait;
    d.sum_doubles = fake_sum_doubles;
    d.max_longs = fake_max_longs;
    d.bucket_floats = bucket_floats;
    d.pending = NULL;
    d.pending_count = 0;
    d.reduced_bytes = 0;
    d.wait_seconds = 0;
    rec_base = base;
    rec_base_len = len;
    rec_n = rec_waits = rec_outside = 0;
    other_set = 0;
    return d;
}

/* A net with no layers and empty head and stem ranges: dist_grads_finish's scaling touches
 * nothing, so it only flushes the last bucket and waits. */
static struct net *empty_net(void)
{
    struct net *net = calloc(1, sizeof *net);
    OFFNAS_ASSERT(net);
    return net;
}

/* ---- bucket assembly ------------------------------------------------------------------- */

struct range {
    size_t offset, count;
    int buckets_after; /* rec_n expected right after this call */
};

/* Ranges handed to dist_grad_ready with bucket_floats = 5 on a 64-float buffer. Expected
 * buckets: [0,5) [5,8) [10,15) [15,20) [20,25) [25,27) [40,43) (the last one at finish). */
TEST(dist_buckets_merge_adjacent_split_long_never_merge_gaps)
{
    enum { LEN = 64, BUCKET = 5 };
    float buf[LEN];
    for (int i = 0; i < LEN; i++)
        buf[i] = (float)(i + 1);
    struct dist d = fake_dist(BUCKET, buf, LEN);
    static const struct range calls[] = {
        {0, 3, 0},   /* pending [0,3) */
        {3, 4, 1},   /* adjacent: [0,5) full -> handed over, pending [5,7) */
        {7, 1, 1},   /* adjacent: pending [5,8) */
        {10, 2, 2},  /* gap at 8,9: [5,8) handed over, pending [10,12) */
        {12, 12, 4}, /* longer than a bucket: [10,15) [15,20) handed over, pending [20,24) */
        {30, 0, 4},  /* empty range: nothing happens (and 30 is not made pending) */
        {24, 1, 5},  /* adjacent: [20,25) full */
        {25, 2, 5},  /* pending [25,27) */
        {40, 3, 6},  /* gap: [25,27) handed over, pending [40,43) */
    };
    int used[LEN] = {0};
    for (size_t k = 0; k < OFFNAS_ARRAY_LEN(calls); k++) {
        dist_grad_ready(&d, buf, calls[k].offset, calls[k].count);
        if (rec_n != calls[k].buckets_after)
            fprintf(stderr, "after range %zu (%zu,%zu): %d buckets, expected %d\n", k,
                    calls[k].offset, calls[k].count, rec_n, calls[k].buckets_after);
        EXPECT_EQ_INT(rec_n, calls[k].buckets_after);
        for (size_t i = 0; i < calls[k].count; i++)
            used[calls[k].offset + i] = 1;
    }
    EXPECT_EQ_INT(rec_waits, 0); /* dist_grad_ready never waits */
    struct net *net = empty_net();
    dist_grads_finish(&d, net);
    free(net);
    EXPECT_EQ_INT(rec_waits, 1);
    EXPECT_EQ_INT(rec_outside, 0);
    CU_ASSERT_PTR_NULL(d.pending);
    EXPECT_EQ_INT(d.pending_count, 0);

    static const struct rec expect[] = {{0, 5},  {5, 3},  {10, 5}, {15, 5},
                                        {20, 5}, {25, 2}, {40, 3}};
    EXPECT_EQ_INT(rec_n, OFFNAS_ARRAY_LEN(expect));
    for (int k = 0; k < rec_n && k < (int)OFFNAS_ARRAY_LEN(expect); k++) {
        EXPECT_EQ_INT(rec_log[k].offset, expect[k].offset);
        EXPECT_EQ_INT(rec_log[k].count, expect[k].count);
    }

    /* the properties on their own: no bucket longer than bucket_floats or empty, increasing
     * order, every float of every range exactly once, nothing outside the ranges (so no gap
     * was merged into a bucket) */
    int times[LEN] = {0};
    long end = -1;
    size_t handed = 0;
    for (int k = 0; k < rec_n; k++) {
        CU_ASSERT(rec_log[k].count >= 1 && rec_log[k].count <= BUCKET);
        CU_ASSERT(rec_log[k].offset >= end);
        end = rec_log[k].offset + (long)rec_log[k].count;
        for (size_t i = 0; i < rec_log[k].count; i++)
            if (rec_log[k].offset >= 0 && rec_log[k].offset + (long)i < LEN)
                times[rec_log[k].offset + i]++;
        handed += rec_log[k].count;
    }
    int wrong = 0;
    for (int i = 0; i < LEN; i++) {
        wrong += times[i] != used[i];
        /* the fake sum doubled exactly the handed floats; the empty net scaled nothing */
        float want = used[i] ? 2.0f * (float)(i + 1) : (float)(i + 1);
        wrong += buf[i] != want;
    }
    EXPECT_EQ_INT(wrong, 0);
    EXPECT_EQ_INT(d.reduced_bytes, (long)(handed * sizeof(float)));
}

/* A bucket that ends exactly at a full bucket leaves nothing pending: finish hands over no
 * empty bucket; one trainer hands over nothing at all and never waits. */
TEST(dist_full_bucket_leaves_nothing_pending)
{
    float buf[16] = {0};
    struct dist d = fake_dist(4, buf, 16);
    dist_grad_ready(&d, buf, 0, 8);
    EXPECT_EQ_INT(rec_n, 2);
    CU_ASSERT_PTR_NULL(d.pending);
    struct net *net = empty_net();
    dist_grads_finish(&d, net);
    EXPECT_EQ_INT(rec_n, 2);
    EXPECT_EQ_INT(rec_waits, 1);

    /* one trainer (size 1, the recorder still wired in): no bucket, no wait, no state */
    struct dist one = fake_dist(4, buf, 16);
    one.size = one.world_size = 1;
    dist_grad_ready(&one, buf, 0, 8);
    dist_grads_finish(&one, net);
    CU_ASSERT_PTR_NULL(one.pending);
    EXPECT_EQ_INT(one.pending_count, 0);
    EXPECT_EQ_INT(one.reduced_bytes, 0);
    EXPECT_EQ_INT(rec_n, 0);
    EXPECT_EQ_INT(rec_waits, 0);
    /* and the local dist itself keeps no state */
    struct dist *local = dist_local();
    dist_grad_ready(local, buf, 0, 8);
    dist_grads_finish(local, net);
    CU_ASSERT_PTR_NULL(local->pending);
    EXPECT_EQ_INT(local->pending_count, 0);
    EXPECT_EQ_INT(local->reduced_bytes, 0);
    free(net);
}

/* ---- a real backward pass --------------------------------------------------------------- */

struct used_marks {
    unsigned char *used;
    int ranges;
};

static void mark_used(size_t offset, size_t count, void *ctx)
{
    struct used_marks *m = ctx;
    for (size_t i = 0; i < count; i++)
        m->used[offset + i]++;
    m->ranges++;
}

/* One forward/backward of the tiny net (fixed, or the supernet with choices that leave gaps
 * between the used ranges) with dist_grad_ready on the fake two-trainer dist and a small
 * bucket, then dist_grads_finish: every used range is handed over exactly once, in buckets of
 * at most bucket_floats in increasing buffer order, no unused float is handed over, and the
 * gradients equal those of the same pass without the hook (x2 by the fake sum, x1/2 by the
 * scaling) within 1e-6 relative; unused ranges stay zero. */
static void check_hooked_backward(int fixed, size_t bucket)
{
    op_set_threads(1);
    struct job job = tiny_job(NULL);
    int B = 4, side = 9, classes = 5;
    struct net *net = net_create(&job.net, B, side, 1, classes, fixed, 5);
    CU_ASSERT_PTR_NOT_NULL_FATAL(net);
    if (!fixed) {
        net->choice[0] = 1; /* k5e3 */
        net->choice[1] = 0; /* k3e1: a gap before it (cand 1, 2 of layer 1 unused) */
        net->choice[2] = 3; /* skip: no range */
    }
    net_set_residual_scales(net, 1.0f);
    struct rng rng = test_rng(3);
    float x[4 * 81];
    for (int i = 0; i < B * side * side; i++)
        x[i] = (float)rng_normal(&rng);
    unsigned char labels[4] = {0, 3, 1, 4};
    size_t P = net->param_count;

    /* reference: no hook */
    net_zero_grads(net);
    net_forward(net, x, B, 1);
    op_softmax_xent_forward(net->probs, NULL, net->logits, labels, B, classes, 0.0f);
    op_softmax_xent_backward(net->probs, net->probs, labels, B, classes, 0.0f);
    net_backward(net, net->probs, B);
    double *ref = malloc(P * sizeof(double));
    for (size_t i = 0; i < P; i++)
        ref[i] = net->grads[i];

    /* with the hook on the fake two-trainer dist */
    struct dist d = fake_dist(bucket, net->grads, P);
    net_zero_grads(net);
    net_forward(net, x, B, 1);
    op_softmax_xent_forward(net->probs, NULL, net->logits, labels, B, classes, 0.0f);
    op_softmax_xent_backward(net->probs, net->probs, labels, B, classes, 0.0f);
    net->grad_ready = dist_grad_ready;
    net->grad_ready_ctx = &d;
    net_backward(net, net->probs, B);
    EXPECT_EQ_INT(rec_waits, 0);
    dist_grads_finish(&d, net);
    net->grad_ready = NULL;
    EXPECT_EQ_INT(rec_waits, 1);
    EXPECT_EQ_INT(rec_outside, 0);
    CU_ASSERT_FATAL(rec_n < MAX_LOG);

    struct used_marks m = {calloc(P, 1), 0};
    net_for_each_used_range(net, mark_used, &m);
    CU_ASSERT(m.ranges >= 3);
    unsigned char *times = calloc(P, 1);
    long end = -1;
    size_t handed = 0, used_count = 0;
    int bad_bucket = 0;
    for (int k = 0; k < rec_n; k++) {
        bad_bucket += rec_log[k].count < 1 || rec_log[k].count > bucket;
        bad_bucket += rec_log[k].offset < end;
        end = rec_log[k].offset + (long)rec_log[k].count;
        for (size_t i = 0; i < rec_log[k].count; i++)
            if (rec_log[k].offset >= 0 && (size_t)rec_log[k].offset + i < P)
                times[rec_log[k].offset + i]++;
        handed += rec_log[k].count;
    }
    EXPECT_EQ_INT(bad_bucket, 0);
    size_t twice = 0, never = 0, stray = 0, off = 0, nonzero_unused = 0;
    double worst = 0.0;
    for (size_t i = 0; i < P; i++) {
        if (m.used[i] > 1)
            twice++; /* the used ranges themselves overlap */
        if (m.used[i]) {
            used_count++;
            twice += times[i] > 1;
            never += times[i] == 0;
            double tol = 1e-6 * fabs(ref[i]) + 1e-30;
            double diff = fabs((double)net->grads[i] - ref[i]);
            if (diff > tol) {
                if (off++ < 3)
                    fprintf(stderr, "grad[%zu] = %.9g, without the hook %.9g\n", i,
                            net->grads[i], ref[i]);
            }
            if (ref[i] != 0.0 && diff / fabs(ref[i]) > worst)
                worst = diff / fabs(ref[i]);
        } else {
            stray += times[i] != 0;
            nonzero_unused += net->grads[i] != 0.0f;
        }
    }
    if (twice || never || stray || off)
        fprintf(stderr, "%s, bucket %zu: %zu floats reduced twice, %zu never, %zu unused ones "
                "reduced, %zu off; worst relative difference %.3g\n",
                fixed ? "fixed" : "supernet", bucket, twice, never, stray, off, worst);
    EXPECT_EQ_INT(twice, 0);
    EXPECT_EQ_INT(never, 0);
    EXPECT_EQ_INT(stray, 0);
    EXPECT_EQ_INT(off, 0);
    EXPECT_EQ_INT(nonzero_unused, 0);
    EXPECT_EQ_INT(handed, used_count);
    EXPECT_EQ_INT(used_count, net_param_count_chosen(net));
    EXPECT_EQ_INT(d.reduced_bytes, (long)(used_count * sizeof(float)));
    /* the bucket size matters: at least ceil(used / bucket) buckets */
    CU_ASSERT((size_t)rec_n >= (used_count + bucket - 1) / bucket);
    free(m.used);
    free(times);
    free(ref);
    net_free(net);
}

TEST(dist_grads_finish_reduces_every_used_range_once_fixed)
{
    check_hooked_backward(1, 37);
    check_hooked_backward(1, 1000000); /* one bucket for everything */
}

TEST(dist_grads_finish_reduces_every_used_range_once_supernet)
{
    check_hooked_backward(0, 37);
    check_hooked_backward(0, 64);
}

/* ---- checksums -------------------------------------------------------------------------- */

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* FNV-1a 64 of the bytes: equal buffers agree, one flipped bit of one float (every bit of a
 * few floats, each flip to its own checksum) or two swapped floats change it, and the value matches FNV-1a computed
 * independently (Python) for three little-endian floats and for no bytes. */
TEST(dist_checksum_sees_one_bit)
{
    enum { N = 97 };
    float a[N], b[N];
    struct rng rng = test_rng(9);
    for (int i = 0; i < N; i++)
        a[i] = (float)rng_normal(&rng);
    memcpy(b, a, sizeof a);
    uint64_t h = dist_checksum(a, N);
    CU_ASSERT(dist_checksum(b, N) == h);
    static const int which[] = {0, 1, 48, N - 1};
    enum { FLIPS = OFFNAS_ARRAY_LEN(which) * 32 };
    uint64_t flipped[FLIPS];
    int same = 0, n = 0;
    for (size_t k = 0; k < OFFNAS_ARRAY_LEN(which); k++)
        for (int bit = 0; bit < 32; bit++) {
            uint32_t u;
            memcpy(&u, &b[which[k]], 4);
            u ^= 1u << bit;
            memcpy(&b[which[k]], &u, 4);
            flipped[n] = dist_checksum(b, N);
            same += flipped[n++] == h;
            u ^= 1u << bit;
            memcpy(&b[which[k]], &u, 4);
        }
    EXPECT_EQ_INT(same, 0);
    /* and no two of the flips agree: the checksum sees which bit of which float changed */
    qsort(flipped, FLIPS, sizeof flipped[0], compare_u64);
    int collisions = 0;
    for (int i = 1; i < FLIPS; i++)
        collisions += flipped[i] == flipped[i - 1];
    EXPECT_EQ_INT(collisions, 0);
    CU_ASSERT(dist_checksum(b, N) == h); /* restored */
    float t = b[3];
    b[3] = b[4];
    b[4] = t;
    CU_ASSERT(dist_checksum(b, N) != h);
    /* -0.0 and +0.0 are equal floats but different parameters bytes: the checksum is of bytes */
    float z0 = 0.0f, z1 = -0.0f;
    CU_ASSERT(dist_checksum(&z0, 1) != dist_checksum(&z1, 1));

    CU_ASSERT(dist_checksum(a, 0) == 0xcbf29ce484222325ULL);
    uint32_t probe = 1;
    unsigned char first;
    memcpy(&first, &probe, 1);
    if (first == 1) { /* little-endian: bytes of 1.0f, -2.5f, 0.1f */
        float v[3] = {1.0f, -2.5f, 0.1f};
        CU_ASSERT(dist_checksum(v, 3) == 0x3cf8e613b8128996ULL);
    }
}

/* dist_check_same: the local dist (one trainer) returns 0; a fake second trainer with the same
 * parameters agrees (0); one with one bit different is caught (-1, error naming the step). */
TEST(dist_check_same_local_and_two_trainers)
{
    unsetenv("OFFNAS_TEST_DIVERGE_RANK");
    float a[33];
    for (int i = 0; i < 33; i++)
        a[i] = (float)i * 0.37f - 3.0f;
    EXPECT_EQ_INT(dist_check_same(dist_local(), a, 33, 5), 0);

    struct dist d = fake_dist(16, a, 33);
    other_checksum = dist_checksum(a, 33);
    other_set = 1;
    EXPECT_EQ_INT(dist_check_same(&d, a, 33, 5), 0);

    float b[33];
    memcpy(b, a, sizeof a);
    uint32_t u;
    memcpy(&u, &b[20], 4);
    u ^= 1u << 7;
    memcpy(&b[20], &u, 4);
    other_checksum = dist_checksum(b, 33);
    CU_ASSERT(other_checksum != dist_checksum(a, 33));
    int rc = dist_check_same(&d, a, 33, 7);
    EXPECT_EQ_INT(rc, -1);
    if (rc)
        EXPECT_CONTAINS(offnas_last_error(), "step 7");
    other_set = 0;
}

/* ---- dist_average ----------------------------------------------------------------------- */

/* On the fake two-trainer dist (sum = x2) the mean leaves every value as it was, bit for bit
 * (x2 and x1/2 are exact), with one reduction of the whole buffer and one wait; with one
 * trainer nothing is reduced. */
TEST(dist_average_of_identical_trainers_is_identity)
{
    enum { N = 50 };
    float v[N], orig[N];
    struct rng rng = test_rng(4);
    for (int i = 0; i < N; i++)
        v[i] = (float)(rng_normal(&rng) * pow(10.0, (double)(i % 9) - 4.0));
    v[0] = 0.0f;
    v[1] = -1e-30f;
    v[2] = 3.0e30f;
    memcpy(orig, v, sizeof v);
    struct dist d = fake_dist(8, v, N);
    dist_average(&d, v, N);
    EXPECT_EQ_INT(rec_n, 1);
    if (rec_n == 1) {
        EXPECT_EQ_INT(rec_log[0].offset, 0);
        EXPECT_EQ_INT(rec_log[0].count, N);
    }
    EXPECT_EQ_INT(rec_waits, 1);
    EXPECT_EQ_INT(memcmp(v, orig, sizeof v), 0);

    /* one trainer (size 1, the recorder still wired in): nothing reduced, nothing scaled */
    struct dist one = fake_dist(8, v, N);
    one.size = one.world_size = 1;
    dist_average(&one, v, N);
    EXPECT_EQ_INT(rec_n, 0);
    EXPECT_EQ_INT(rec_waits, 0);
    EXPECT_EQ_INT(memcmp(v, orig, sizeof v), 0);
}

static const struct test_case TESTS[] = {
    CASE(dist_buckets_merge_adjacent_split_long_never_merge_gaps),
    CASE(dist_full_bucket_leaves_nothing_pending),
    CASE(dist_grads_finish_reduces_every_used_range_once_fixed),
    CASE(dist_grads_finish_reduces_every_used_range_once_supernet),
    CASE(dist_checksum_sees_one_bit),
    CASE(dist_check_same_local_and_two_trainers),
    CASE(dist_average_of_identical_trainers_is_identity),
};
TEST_MAIN("dist", TESTS)
