/* Tests of dist without MPI: the packing and bucketing of dist_grad_ready, dist_grads_finish on
 * a real backward pass (fixed network, separate-weights and shared supernet), checksums,
 * dist_check_same and dist_average.
 *
 * A fake two-trainer dist (a copy of *dist_local() with size 2) replaces reduce_start by a
 * recorder that logs (offset into the watched buffer, count) and the values handed over, and
 * multiplies them by rec_factor: 2 is the sum over two trainers with identical gradients, 3 one
 * where the other trainer holds twice this one's. dist_grads_finish then scales by 1/2, so a
 * gradient handed over comes back x1.5 with rec_factor 3, and every float handed over twice (or
 * never) shows up in the log and in the values. */
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
static float rec_factor = 2.0f; /* the fake sum: buf x rec_factor */
static float rec_vals[MAX_LOG]; /* the values handed over, in order (the first MAX_LOG) */
static size_t rec_val_n;
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
    for (size_t i = 0; i < n; i++) {
        if (rec_val_n < MAX_LOG)
            rec_vals[rec_val_n++] = buf[i];
        buf[i] *= rec_factor;
    }
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

/* The fake two-trainer dist with room for capacity floats per step (dist_grads_setup); the
 * recorder measures offsets from base (len floats), or from the dist's send buffer when base
 * is NULL. Free with dist_grads_release. */
static struct dist fake_dist(size_t bucket_floats, size_t capacity, const float *base, size_t len)
{
    struct dist d = *dist_local();
    d.size = 2;
    d.world_size = 2;
    d.rank = 0;
    d.reduce_start = fake_reduce_start;
    d.reduce_wait = fake_reduce_wait;
    d.sum_doubles = fake_sum_doubles;
    d.max_longs = fake_max_longs;
    d.reduced_bytes = 0;
    d.reduced_messages = 0;
    d.wait_seconds = 0;
    d.pack = NULL;
    d.segs = NULL;
    d.pack_capacity = d.seg_capacity = 0;
    dist_grads_setup(&d, bucket_floats, capacity);
    rec_base = base ? base : d.pack;
    rec_base_len = base ? len : capacity;
    rec_n = rec_waits = rec_outside = 0;
    rec_val_n = 0;
    rec_factor = 2.0f;
    other_set = 0;
    return d;
}

/* ---- packing and buckets --------------------------------------------------------------- */

struct range {
    size_t offset, count;
    int buckets_after; /* rec_n expected right after this call */
};

/* Ranges handed to dist_grad_ready with bucket_floats = 5 on a 64-float buffer (values i + 1),
 * gaps between them and one longer than a bucket: 28 floats, packed back to back, go in 6
 * buckets, full but for the last, [0,5) [5,10) ... [25,28) of the send buffer, holding the
 * ranges' values in the order they came; finish puts back the sums scaled by 1/2 (x1.5 here)
 * where they came from and leaves every other float alone. */
TEST(dist_packs_ranges_back_to_back_in_full_buckets)
{
    enum { LEN = 64, BUCKET = 5 };
    float buf[LEN];
    for (int i = 0; i < LEN; i++)
        buf[i] = (float)(i + 1);
    struct dist d = fake_dist(BUCKET, LEN, NULL, 0);
    rec_factor = 3.0f;
    static const struct range calls[] = {
        {0, 3, 0},   /* packed 3 */
        {3, 4, 1},   /* 7: [0,5) handed over */
        {7, 1, 1},   /* 8 */
        {10, 2, 2},  /* gap at 8, 9 (no matter): 10, [5,10) handed over */
        {12, 12, 4}, /* longer than a bucket: 22, [10,15) [15,20) */
        {30, 0, 4},  /* empty range: nothing happens */
        {24, 1, 4},  /* 23 */
        {25, 2, 5},  /* 25: [20,25) */
        {40, 3, 5},  /* 28 */
    };
    int used[LEN] = {0};
    float want_vals[LEN];
    size_t want_n = 0;
    for (size_t k = 0; k < OFFNAS_ARRAY_LEN(calls); k++) {
        dist_grad_ready(&d, buf, calls[k].offset, calls[k].count);
        if (rec_n != calls[k].buckets_after)
            fprintf(stderr, "after range %zu (%zu,%zu): %d buckets, expected %d\n", k,
                    calls[k].offset, calls[k].count, rec_n, calls[k].buckets_after);
        EXPECT_EQ_INT(rec_n, calls[k].buckets_after);
        for (size_t i = 0; i < calls[k].count; i++) {
            used[calls[k].offset + i] = 1;
            want_vals[want_n++] = (float)(calls[k].offset + i + 1);
        }
    }
    EXPECT_EQ_INT(rec_waits, 0); /* dist_grad_ready never waits */
    /* adjacent ranges are one segment to put back: [0,8) [10,27) [40,43) */
    EXPECT_EQ_INT(d.seg_count, 3);
    dist_grads_finish(&d);
    EXPECT_EQ_INT(rec_waits, 1);
    EXPECT_EQ_INT(rec_outside, 0);
    EXPECT_EQ_INT(d.pack_used, 0);
    EXPECT_EQ_INT(d.seg_count, 0);

    static const struct rec expect[] = {{0, 5}, {5, 5}, {10, 5}, {15, 5}, {20, 5}, {25, 3}};
    EXPECT_EQ_INT(rec_n, OFFNAS_ARRAY_LEN(expect));
    for (int k = 0; k < rec_n && k < (int)OFFNAS_ARRAY_LEN(expect); k++) {
        EXPECT_EQ_INT(rec_log[k].offset, expect[k].offset);
        EXPECT_EQ_INT(rec_log[k].count, expect[k].count);
    }
    EXPECT_EQ_INT(rec_val_n, want_n);
    EXPECT_EQ_INT(memcmp(rec_vals, want_vals, want_n * sizeof(float)), 0);
    int wrong = 0;
    for (int i = 0; i < LEN; i++) {
        float want = used[i] ? 1.5f * (float)(i + 1) : (float)(i + 1);
        wrong += buf[i] != want;
    }
    EXPECT_EQ_INT(wrong, 0);
    EXPECT_EQ_INT(d.reduced_bytes, (long)(want_n * sizeof(float)));
    EXPECT_EQ_INT(d.reduced_messages, 6);

    /* the next step starts at the front of the send buffer again */
    dist_grad_ready(&d, buf, 50, 2);
    dist_grads_finish(&d);
    EXPECT_EQ_INT(rec_n, 7);
    EXPECT_EQ_INT(rec_log[6].offset, 0);
    EXPECT_EQ_INT(rec_log[6].count, 2);
    dist_grads_release(&d);
}

/* A step that ends exactly at a full bucket: finish hands over no empty bucket; one trainer
 * hands over nothing at all, never waits and keeps no send buffer. */
TEST(dist_full_bucket_leaves_nothing_pending)
{
    float buf[16] = {0};
    struct dist d = fake_dist(4, 16, NULL, 0);
    dist_grad_ready(&d, buf, 0, 8);
    EXPECT_EQ_INT(rec_n, 2);
    EXPECT_EQ_INT(d.bucket_start, d.pack_used);
    dist_grads_finish(&d);
    EXPECT_EQ_INT(rec_n, 2);
    EXPECT_EQ_INT(rec_waits, 1);
    dist_grads_release(&d);

    /* one trainer: setup keeps no buffer; no bucket, no wait, no state */
    struct dist one = *dist_local();
    one.reduce_start = fake_reduce_start;
    one.reduce_wait = fake_reduce_wait;
    dist_grads_setup(&one, 4, 16);
    CU_ASSERT_PTR_NULL(one.pack);
    rec_n = rec_waits = 0;
    dist_grad_ready(&one, buf, 0, 8);
    dist_grads_finish(&one);
    EXPECT_EQ_INT(one.seg_count, 0);
    EXPECT_EQ_INT(one.reduced_bytes, 0);
    EXPECT_EQ_INT(rec_n, 0);
    EXPECT_EQ_INT(rec_waits, 0);
    /* and the local dist itself keeps no state */
    struct dist *local = dist_local();
    dist_grad_ready(local, buf, 0, 8);
    dist_grads_finish(local);
    CU_ASSERT_PTR_NULL(local->pack);
    EXPECT_EQ_INT(local->seg_count, 0);
    EXPECT_EQ_INT(local->reduced_bytes, 0);
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

enum hooked { HOOKED_FIXED, HOOKED_SEPARATE, HOOKED_SHARED };
static const char *const HOOKED_NAMES[] = {"fixed", "separate supernet", "shared supernet"};

/* The tiny net of mode with choices that leave gaps between the used ranges (supernets). */
static struct net *hooked_net(enum hooked mode, int B, int side, int classes)
{
    struct job job = tiny_job(mode == HOOKED_SHARED ? "net.supernet=shared" : NULL);
    struct net *net = net_create(&job.net, B, side, 1, classes, mode == HOOKED_FIXED, 5);
    OFFNAS_ASSERT(net);
    if (mode != HOOKED_FIXED) {
        net->choice[0] = 1; /* k5e3 */
        net->choice[1] = 0; /* k3e1: a gap before it (cand 1, 2 of layer 1 unused), and on the
                             * shared net a slice of layer 1's k5e3 superkernel */
        net->choice[2] = 3; /* skip: no range */
    }
    net_set_residual_scales(net, 1.0f);
    return net;
}

static void forward_backward(struct net *net, const float *x, const unsigned char *labels, int B,
                             int classes)
{
    net_zero_grads(net);
    net_forward(net, x, B, 1);
    op_softmax_xent_forward(net->probs, NULL, net->logits, labels, B, classes, 0.0f);
    op_softmax_xent_backward(net->probs, net->probs, labels, B, classes, 0.0f);
    net_backward(net, net->probs, B);
}

/* One forward/backward of the tiny net of mode with dist_grad_ready on the fake two-trainer
 * dist (the other trainer's gradient twice this one's) and a small bucket, then
 * dist_grads_finish: what was packed lies inside the used ranges, no float twice, and holds
 * every float whose gradient is not zero; as many floats as the sampled network has parameters
 * (for the shared supernet: those of the separate-weights net with the same choices, so only
 * the sampled slices of the superkernels); buckets full but for the last; and after finish
 * every gradient is 1.5 x the same pass without the hook within 1e-6 relative, the rest zero. */
static void check_hooked_backward(enum hooked mode, size_t bucket)
{
    op_set_threads(1);
    int B = 4, side = 9, classes = 5;
    struct net *net = hooked_net(mode, B, side, classes);
    struct rng rng = test_rng(3);
    float x[4 * 81];
    for (int i = 0; i < B * side * side; i++)
        x[i] = (float)rng_normal(&rng);
    unsigned char labels[4] = {0, 3, 1, 4};
    size_t P = net->param_count;

    forward_backward(net, x, labels, B, classes); /* reference: no hook */
    double *ref = malloc(P * sizeof(double));
    for (size_t i = 0; i < P; i++)
        ref[i] = net->grads[i];

    struct dist d = fake_dist(bucket, P, NULL, 0);
    rec_factor = 3.0f;
    net->grad_ready = dist_grad_ready;
    net->grad_ready_ctx = &d;
    forward_backward(net, x, labels, B, classes);
    net->grad_ready = NULL;
    EXPECT_EQ_INT(rec_waits, 0);
    /* where the packed floats came from, before finish puts them back */
    unsigned char *times = calloc(P, 1);
    size_t handed = 0;
    int outside = 0;
    for (size_t k = 0; k < d.seg_count; k++) {
        long at = (long)(d.segs[k].to - net->grads);
        for (size_t i = 0; i < d.segs[k].count; i++)
            if (at >= 0 && (size_t)at + i < P)
                times[at + i]++;
            else
                outside++;
        handed += d.segs[k].count;
    }
    EXPECT_EQ_INT(outside, 0);
    dist_grads_finish(&d);
    EXPECT_EQ_INT(rec_waits, 1);
    EXPECT_EQ_INT(rec_outside, 0);
    CU_ASSERT_FATAL(rec_n < MAX_LOG);

    struct used_marks m = {calloc(P, 1), 0};
    net_for_each_used_range(net, mark_used, &m);
    CU_ASSERT(m.ranges >= 3);
    size_t total = 0;
    int bad_bucket = 0;
    for (int k = 0; k < rec_n; k++) {
        bad_bucket += rec_log[k].offset != (long)total; /* back to back from the front */
        bad_bucket += k < rec_n - 1 ? rec_log[k].count != bucket : rec_log[k].count > bucket;
        total += rec_log[k].count;
    }
    EXPECT_EQ_INT(bad_bucket, 0);
    EXPECT_EQ_INT(total, handed);
    EXPECT_EQ_INT(rec_n, (int)((handed + bucket - 1) / bucket));
    size_t twice = 0, missed = 0, stray = 0, off = 0, nonzero_unused = 0;
    double worst = 0.0;
    for (size_t i = 0; i < P; i++) {
        twice += m.used[i] > 1 || times[i] > 1;
        stray += times[i] && !m.used[i];
        missed += ref[i] != 0.0 && !times[i];
        nonzero_unused += !m.used[i] && net->grads[i] != 0.0f;
        double want = 1.5 * ref[i], diff = fabs((double)net->grads[i] - want);
        if (diff > 1e-6 * fabs(want)) {
            if (off++ < 3)
                fprintf(stderr, "grad[%zu] = %.9g, 1.5 x without the hook %.9g\n", i,
                        net->grads[i], want);
        }
        if (want != 0.0 && diff / fabs(want) > worst)
            worst = diff / fabs(want);
    }
    if (twice || missed || stray || off)
        fprintf(stderr, "%s, bucket %zu: %zu floats packed twice, %zu non-zero ones missed, "
                "%zu unused ones packed, %zu off; worst relative difference %.3g\n",
                HOOKED_NAMES[mode], bucket, twice, missed, stray, off, worst);
    EXPECT_EQ_INT(twice, 0);
    EXPECT_EQ_INT(missed, 0);
    EXPECT_EQ_INT(stray, 0);
    EXPECT_EQ_INT(off, 0);
    EXPECT_EQ_INT(nonzero_unused, 0);
    size_t sampled = net_param_count_chosen(net);
    if (mode == HOOKED_SHARED) { /* the sampled network's own parameters: its slices */
        struct net *separate = hooked_net(HOOKED_SEPARATE, B, side, classes);
        sampled = net_param_count_chosen(separate);
        CU_ASSERT(sampled < net_param_count_chosen(net));
        net_free(separate);
    }
    EXPECT_EQ_INT(handed, sampled);
    EXPECT_EQ_INT(d.reduced_bytes, (long)(handed * sizeof(float)));
    dist_grads_release(&d);
    free(m.used);
    free(times);
    free(ref);
    net_free(net);
}

TEST(dist_grads_finish_reduces_every_used_range_once_fixed)
{
    check_hooked_backward(HOOKED_FIXED, 37);
    check_hooked_backward(HOOKED_FIXED, 1000000); /* one bucket for everything */
}

TEST(dist_grads_finish_reduces_every_used_range_once_supernet)
{
    check_hooked_backward(HOOKED_SEPARATE, 37);
    check_hooked_backward(HOOKED_SEPARATE, 64);
}

TEST(dist_grads_finish_sends_only_the_sampled_slices_shared)
{
    check_hooked_backward(HOOKED_SHARED, 37);
    check_hooked_backward(HOOKED_SHARED, 1000000);
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

    struct dist d = fake_dist(16, 0, a, 33);
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
    struct dist d = fake_dist(8, 0, v, N);
    dist_average(&d, v, N);
    EXPECT_EQ_INT(rec_n, 1);
    if (rec_n == 1) {
        EXPECT_EQ_INT(rec_log[0].offset, 0);
        EXPECT_EQ_INT(rec_log[0].count, N);
    }
    EXPECT_EQ_INT(rec_waits, 1);
    EXPECT_EQ_INT(memcmp(v, orig, sizeof v), 0);

    /* one trainer (size 1, the recorder still wired in): nothing reduced, nothing scaled */
    struct dist one = fake_dist(8, 0, v, N);
    one.size = one.world_size = 1;
    dist_average(&one, v, N);
    EXPECT_EQ_INT(rec_n, 0);
    EXPECT_EQ_INT(rec_waits, 0);
    EXPECT_EQ_INT(memcmp(v, orig, sizeof v), 0);
}

static const struct test_case TESTS[] = {
    CASE(dist_packs_ranges_back_to_back_in_full_buckets),
    CASE(dist_full_bucket_leaves_nothing_pending),
    CASE(dist_grads_finish_reduces_every_used_range_once_fixed),
    CASE(dist_grads_finish_reduces_every_used_range_once_supernet),
    CASE(dist_grads_finish_sends_only_the_sampled_slices_shared),
    CASE(dist_checksum_sees_one_bit),
    CASE(dist_check_same_local_and_two_trainers),
    CASE(dist_average_of_identical_trainers_is_identity),
};
TEST_MAIN("dist", TESTS)
