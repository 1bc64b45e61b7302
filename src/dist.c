/* dist: the one-trainer implementation, gradient buckets, checksums and stop signals. */
#define _POSIX_C_SOURCE 200809L
#include "dist.h"

#include "common.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

const char *const DIST_DEVICE_NAMES[] = {"mobile", "edge"};
_Static_assert(OFFNAS_ARRAY_LEN(DIST_DEVICE_NAMES) == DIST_DEVICE_COUNT,
               "a name for every profiler device");

static void local_reduce_start(struct dist *d, float *buf, size_t n)
{
    (void)d, (void)buf, (void)n;
}
static void local_reduce_wait(struct dist *d) { (void)d; }
static void local_sum_doubles(struct dist *d, double *v, int n) { (void)d, (void)v, (void)n; }
static void local_max_longs(struct dist *d, long *v, int n) { (void)d, (void)v, (void)n; }
static void local_broadcast(struct dist *d, void *buf, size_t bytes)
{
    (void)d, (void)buf, (void)bytes;
}
static int local_has_profiler(struct dist *d, int device) { (void)d, (void)device; return 0; }
static int local_take_table(struct dist *d, int device, struct latency_table *t)
{
    (void)d, (void)device, (void)t;
    return offnas_error("no profiler rank in this job");
}
static int local_poll_table(struct dist *d, int device, struct latency_table *t)
{
    (void)d, (void)device, (void)t;
    return 0;
}
static void local_send_arch(struct dist *d, const struct dist_arch *a) { (void)d, (void)a; }
static void local_finish(struct dist *d) { (void)d; }

static struct dist local = {
    .rank = 0, .size = 1, .world_rank = 0, .world_size = 1,
    .reduce_start = local_reduce_start, .reduce_wait = local_reduce_wait,
    .sum_doubles = local_sum_doubles, .max_longs = local_max_longs,
    .broadcast = local_broadcast, .has_profiler = local_has_profiler,
    .take_table = local_take_table, .poll_table = local_poll_table,
    .send_arch = local_send_arch, .finish = local_finish,
    .bucket_floats = 65536,
};
static struct dist *current = &local;

struct dist *dist_local(void) { return &local; }
struct dist *dist_get(void) { return current; }
void dist_set(struct dist *d) { current = d ? d : &local; }

void dist_grads_setup(struct dist *d, size_t bucket_floats, size_t capacity)
{
    OFFNAS_ASSERT(bucket_floats >= 1);
    d->bucket_floats = bucket_floats;
    d->pack_used = d->bucket_start = d->seg_count = 0;
    if (d->size == 1 || capacity <= d->pack_capacity)
        return;
    free(d->pack);
    d->pack = offnas_malloc(capacity * sizeof(float));
    d->pack_capacity = capacity;
}

void dist_grads_release(struct dist *d)
{
    free(d->pack);
    free(d->segs);
    d->pack = NULL;
    d->segs = NULL;
    d->pack_capacity = d->pack_used = d->bucket_start = 0;
    d->seg_count = d->seg_capacity = 0;
}

/* Hands pack[bucket_start, pack_used) to reduce_start (nothing when empty). */
static void flush_bucket(struct dist *d)
{
    size_t n = d->pack_used - d->bucket_start;
    if (n) {
        d->reduce_start(d, d->pack + d->bucket_start, n);
        d->reduced_bytes += (long)(n * sizeof(float));
        d->reduced_messages++;
    }
    d->bucket_start = d->pack_used;
}

void dist_grad_ready(void *ctx, float *grads, size_t offset, size_t count)
{
    struct dist *d = ctx;
    if (d->size == 1 || count == 0)
        return;
    OFFNAS_ASSERT(d->pack_used + count <= d->pack_capacity); /* dist_grads_setup's capacity */
    float *from = grads + offset;
    struct dist_segment *last = d->seg_count ? &d->segs[d->seg_count - 1] : NULL;
    if (last && last->to + last->count == from) {
        last->count += count;
    } else {
        if (d->seg_count == d->seg_capacity) {
            d->seg_capacity = d->seg_capacity ? 2 * d->seg_capacity : 64;
            d->segs = offnas_realloc(d->segs, d->seg_capacity * sizeof *d->segs);
        }
        d->segs[d->seg_count++] = (struct dist_segment){from, count};
    }
    while (count) {
        size_t room = d->bucket_floats - (d->pack_used - d->bucket_start);
        size_t take = count < room ? count : room;
        memcpy(d->pack + d->pack_used, from, take * sizeof(float));
        d->pack_used += take;
        from += take;
        count -= take;
        if (d->pack_used - d->bucket_start == d->bucket_floats)
            flush_bucket(d);
    }
}

void dist_grads_finish(struct dist *d)
{
    if (d->size == 1)
        return;
    flush_bucket(d);
    double t = offnas_now();
    d->reduce_wait(d);
    d->wait_seconds += offnas_now() - t;
    float s = 1.0f / (float)d->size;
    const float *from = d->pack;
    for (size_t k = 0; k < d->seg_count; k++) {
        float *to = d->segs[k].to;
        for (size_t i = 0; i < d->segs[k].count; i++)
            to[i] = from[i] * s;
        from += d->segs[k].count;
    }
    d->pack_used = d->bucket_start = d->seg_count = 0;
}

void dist_average(struct dist *d, float *buf, size_t n)
{
    if (d->size == 1)
        return;
    d->reduce_start(d, buf, n);
    d->reduce_wait(d);
    float s = 1.0f / (float)d->size;
    for (size_t i = 0; i < n; i++)
        buf[i] *= s;
}

uint64_t dist_checksum(const float *buf, size_t n)
{
    return offnas_fnv1a64(buf, n * sizeof *buf, OFFNAS_FNV1A64_SEED);
}

void dist_checksum_words(uint64_t h, long v[4])
{
    v[0] = (long)(h >> 32);
    v[1] = (long)(h & 0xffffffffu);
    v[2] = -v[0];
    v[3] = -v[1];
}

int dist_check_same(struct dist *d, const float *buf, size_t n, long step)
{
    if (d->size == 1)
        return 0;
    /* equal on every trainer exactly when max and -min agree: compare the hash's two 32-bit
     * halves as non-negative longs */
    uint64_t h = dist_checksum(buf, n);
    /* test hook: OFFNAS_TEST_DIVERGE_RANK=r makes trainer r report a different checksum, so
     * the tests can see that a divergence stops the job */
    const char *diverge = getenv("OFFNAS_TEST_DIVERGE_RANK");
    if (diverge && atoi(diverge) == d->rank && step > 0)
        h ^= 1;
    long v[4];
    dist_checksum_words(h, v);
    d->max_longs(d, v, 4);
    if (v[0] != -v[2] || v[1] != -v[3])
        return offnas_error("step %ld: the trainers' parameters differ (checksum mismatch): "
                            "the replicas diverged",
                            step);
    return 0;
}

static volatile sig_atomic_t stop_signal;

static void on_stop(int sig) { stop_signal = sig; }

void dist_catch_stop_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

int dist_stop_signal(void) { return (int)stop_signal; }

int dist_should_stop(struct dist *d)
{
    long v = stop_signal != 0;
    d->max_longs(d, &v, 1);
    return v != 0;
}

int dist_uses_tables;
int (*dist_setup_hook)(const struct job *job, const char *profiler_device, int *status);

int dist_setup(const struct job *job, const char *profiler_device, int *status)
{
    *status = 0;
    if (dist_setup_hook)
        return dist_setup_hook(job, profiler_device, status);
    if (profiler_device)
        return offnas_error("profiler: a profiler is a rank of an MPI job (mpirun ... : -np 1 "
                            "offnas profiler ...); to measure this machine alone use offnas "
                            "profile");
    return 0;
}
