/* lutcast: lookup tables from the profiler ranks. Each device with a profiler has a
 * communicator {profiler, trainers}, profiler first: the profiler broadcasts its measured
 * table, then a corrected one for each architecture trainer 0 sends it (MPI_Ibcast; the
 * trainers keep one broadcast posted and take a table up at the same step on every trainer).
 * Version -1 is the profiler's last word. */
#define _POSIX_C_SOURCE 200809L
#include "mpi_internal.h"

#include "common.h"
#include "job.h"
#include "latency_measure.h"
#include "net.h"
#include "op.h"
#include "train.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PROFILE_WARMUP 5
#define PROFILE_REPEATS 20

/* Waits for r without spinning: MPI_Wait polls at full speed, and a profiler (or a trainer at
 * the end) that spins for seconds takes a core from the ranks that still compute when they
 * share a node, as they do on a test machine. 200 us between looks is noise next to a step. */
static void wait_quietly_status(MPI_Request *r, MPI_Status *st)
{
    int done = 0;
    struct timespec pause = {0, 200000};
    for (;;) {
        MPI_CHECK(MPI_Test(r, &done, st));
        if (done)
            return;
        nanosleep(&pause, NULL);
    }
}

static void wait_quietly(MPI_Request *r) { wait_quietly_status(r, MPI_STATUS_IGNORE); }

/* ---- tables from the profilers (trainer side) ------------------------------------------- */

static void post_table(struct dp_ctx *m, int dev)
{
    MPI_CHECK(MPI_Ibcast(m->table_buf[dev], (int)sizeof(struct latency_table), MPI_BYTE, 0,
                         m->device[dev], &m->table_req[dev]));
}

void lutcast_listen(struct dp_ctx *c)
{
    for (int dev = 0; dev < DEVICES; dev++) {
        if (c->device[dev] == MPI_COMM_NULL)
            continue;
        c->table_buf[dev] = offnas_calloc(1, sizeof(struct latency_table));
        if (c->uses_tables)
            post_table(c, dev);
        else
            c->device[dev] = MPI_COMM_NULL; /* nothing to hear from an idle profiler */
    }
}

int lutcast_has_profiler(struct dist *d, int dev)
{
    return dev >= 0 && dev < DEVICES && dp_ctx_of(d)->device[dev] != MPI_COMM_NULL;
}

int lutcast_take_table(struct dist *d, int dev, struct latency_table *t)
{
    struct dp_ctx *m = dp_ctx_of(d);
    wait_quietly(&m->table_req[dev]);
    if (m->table_buf[dev]->version < 0)
        return offnas_error("the %s profiler rank ended before sending its table",
                            DIST_DEVICE_NAMES[dev]);
    memcpy(t, m->table_buf[dev], sizeof *t);
    post_table(m, dev);
    return 0;
}

int lutcast_poll_table(struct dist *d, int dev, struct latency_table *t)
{
    struct dp_ctx *m = dp_ctx_of(d);
    int arrived = 0;
    MPI_CHECK(MPI_Test(&m->table_req[dev], &arrived, MPI_STATUS_IGNORE));
    /* take it up only when every trainer holds it, so all use the same table from the same
     * step on: max over "not yet" is 0 exactly when all have it */
    long missing = !arrived;
    dp_max_longs(d, &missing, 1);
    if (missing)
        return 0; /* a completed request stays completed: the next poll sees it again */
    MPI_CHECK(MPI_Wait(&m->table_req[dev], MPI_STATUS_IGNORE));
    if (m->table_buf[dev]->version < 0)
        return 0;
    memcpy(t, m->table_buf[dev], sizeof *t);
    post_table(m, dev);
    return 1;
}

void lutcast_send_arch(struct dist *d, const struct dist_arch *a)
{
    struct dp_ctx *m = dp_ctx_of(d);
    if (d->rank != 0)
        return;
    for (int dev = 0; dev < DEVICES; dev++) {
        if (m->device[dev] == MPI_COMM_NULL)
            continue;
        MPI_CHECK(MPI_Wait(&m->arch_req[dev], MPI_STATUS_IGNORE));
        m->arch_buf[dev] = *a;
        MPI_CHECK(MPI_Isend(&m->arch_buf[dev], (int)sizeof *a, MPI_BYTE, 0, TAG_ARCH,
                            m->device[dev], &m->arch_req[dev]));
    }
}

void lutcast_finish(struct dist *d)
{
    struct dp_ctx *m = dp_ctx_of(d);
    if (m->finished)
        return;
    m->finished = 1;
    for (int dev = 0; dev < DEVICES; dev++) {
        if (m->device[dev] == MPI_COMM_NULL)
            continue;
        if (d->rank == 0) {
            MPI_CHECK(MPI_Wait(&m->arch_req[dev], MPI_STATUS_IGNORE));
            MPI_CHECK(MPI_Send(NULL, 0, MPI_BYTE, 0, TAG_STOP, m->device[dev]));
        }
        /* drain the corrected tables still on their way until the profiler's last word */
        for (;;) {
            wait_quietly(&m->table_req[dev]);
            if (m->table_buf[dev]->version < 0)
                break;
            post_table(m, dev);
        }
    }
}

/* ---- the profiler rank ------------------------------------------------------------------ */

static void broadcast_table(MPI_Comm comm, struct latency_table *t)
{
    MPI_Request r;
    MPI_CHECK(MPI_Ibcast(t, (int)sizeof *t, MPI_BYTE, 0, comm, &r));
    wait_quietly(&r);
}

/* Measures every (slot, op) of net here into t and broadcasts it as version 1. */
static void measure_first_table(struct latency_table *t, struct net *net, const struct dp_ctx *c)
{
    const char *name = DIST_DEVICE_NAMES[c->role];
    latency_table_init(t, net, name);
    latency_stamp_here(t, 1);
    fprintf(stderr, "offnas: profiler rank %d (%s) on %s: measuring %d layers\n", c->world_rank,
            name, t->host, net->layer_count);
    int quiet = offnas_log_quiet;
    offnas_log_quiet = 1;
    latency_measure(t, net, PROFILE_WARMUP, PROFILE_REPEATS);
    offnas_log_quiet = quiet;
    t->version = 1;
    broadcast_table(c->device[c->role], t);
}

/* Saves the first table as cluster.profile_dir/DEVICE-HOST.h5; a failure is reported and the
 * search goes on (the trainers have the table already). */
static void save_first_table(const struct job *job, const struct latency_table *t,
                             const struct dp_ctx *c)
{
    const char *name = DIST_DEVICE_NAMES[c->role];
    char path[JOB_PATH_MAX * 2 + 200];
    snprintf(path, sizeof path, "%s/%s-%s.h5", job->cluster_profile_dir, name, t->host);
    if (train_mkdirs(job->cluster_profile_dir) || latency_save(t, path)) {
        fprintf(stderr, "offnas: profiler rank %d: %s (the search goes on)\n", c->world_rank,
                offnas_last_error());
    } else {
        fprintf(stderr, "offnas: profiler rank %d (%s): table version 1 sent and saved to %s\n",
                c->world_rank, name, path);
    }
}

/* The next message from trainer 0 into got; returns its tag (TAG_ARCH or TAG_STOP). */
static int receive_arch(MPI_Comm comm, struct dist_arch *got)
{
    MPI_Status st;
    MPI_Request r;
    MPI_CHECK(MPI_Irecv(got, (int)sizeof *got, MPI_BYTE, MPI_ANY_SOURCE, MPI_ANY_TAG, comm, &r));
    wait_quietly_status(&r, &st); /* idle between epochs without taking a core */
    return st.MPI_TAG;
}

/* t = base with every per-op figure times ratio, as version. */
static void scale_table(struct latency_table *t, const struct latency_table *base, double ratio,
                        int version)
{
    *t = *base;
    for (int s = 0; s < t->slot_count; s++)
        for (int o = 0; o < t->op_count[s]; o++) {
            t->median[s][o] *= ratio;
            t->p10[s][o] *= ratio;
            t->p90[s][o] *= ratio;
        }
    t->version = version;
}

/* Until trainer 0 says stop: measures each architecture it sends end to end and broadcasts the
 * table scaled to that measurement. Returns the last architecture received (layers 0: none). */
static struct dist_arch serve_corrections(struct latency_table *t, struct net *net,
                                          const struct dp_ctx *c)
{
    MPI_Comm comm = c->device[c->role];
    float *x = offnas_calloc((size_t)net->side * net->side * net->in_channels, sizeof(float));
    const struct latency_table base = *t;
    struct dist_arch a = {.layers = 0};
    for (;;) {
        struct dist_arch got;
        if (receive_arch(comm, &got) != TAG_ARCH)
            break;
        a = got;
        if (a.layers != net->layer_count)
            continue;
        for (int l = 0; l < a.layers; l++)
            net->choice[l] = a.ops[l];
        double measured = latency_forward_timing(net, x, PROFILE_WARMUP, PROFILE_REPEATS).median;
        double predicted = latency_network_ms(&base, a.layers, a.ops);
        double ratio = predicted > 0 ? measured / predicted : 1.0;
        /* the per-op figures keep their proportions; their scale follows the end-to-end
         * measurement of the network the trainers prefer now */
        int version = t->version + 1;
        scale_table(t, &base, ratio, version);
        broadcast_table(comm, t);
        fprintf(stderr, "offnas: profiler rank %d (%s): preferred network %.3f ms measured, "
                        "%.3f ms in the table: version %d scaled by %.3f\n",
                c->world_rank, DIST_DEVICE_NAMES[c->role], measured, predicted, version, ratio);
    }
    free(x);
    return a;
}

/* Prints the architecture trainer 0 sent last, as every rank reports it. */
static void report_architecture(const struct net *net, const struct dist_arch *a,
                                const struct dp_ctx *c)
{
    if (a->layers != net->layer_count)
        return;
    char text[JOB_TEXT_MAX] = "", op[16];
    for (int l = 0; l < a->layers; l++) {
        strcat(text, l ? "," : "");
        strcat(text, op_spec_name(&net->layers[l].cand[a->ops[l]].spec, op));
    }
    printf("architecture (profiler rank %d, %s): ops %s split %d\n", c->world_rank,
           DIST_DEVICE_NAMES[c->role], text, a->split);
    fflush(stdout);
}

int lutcast_run_profiler(const struct job *job, const struct dp_ctx *c, int serve)
{
    MPI_Comm comm = c->device[c->role];
    struct latency_table *t = offnas_calloc(1, sizeof *t);
    /* the search space of the job on the data the shipped jobs use (one channel, ten
     * classes); the trainers check the fingerprint against their own network */
    struct net *net = net_create(&job->net, 1, job->data_resize, 1, 10, 0, (uint64_t)job->search_seed);
    if (!net) {
        /* the trainers fail on the same job; answer their broadcast so nobody waits */
        t->version = -1;
        if (serve)
            broadcast_table(comm, t);
        free(t);
        return -1;
    }
    if (!serve) {
        net_free(net);
        free(t);
        return 0;
    }
    /* Slurm's warning signal reaches every task: a profiler keeps serving until the trainers,
     * which checkpoint on it, say stop */
    dist_catch_stop_signals();
    op_set_threads(1);
    measure_first_table(t, net, c);
    save_first_table(job, t, c);
    struct dist_arch a = serve_corrections(t, net, c);
    report_architecture(net, &a, c);
    t->version = -1; /* the last word: the trainers stop listening */
    broadcast_table(comm, t);
    net_free(net);
    free(t);
    return 0;
}
