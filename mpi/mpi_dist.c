/* mpi_dist: roles, communicators, bucketed gradient allreduce, and the profiler ranks that
 * measure and broadcast lookup tables (see mpi_dist.h). */
#define _POSIX_C_SOURCE 200809L
#include "mpi_dist.h"

#include "common.h"
#include "dist.h"
#include "job.h"
#include "latency.h"
#include "latency_measure.h"
#include "net.h"
#include "op.h"
#include "train.h"

#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEVICES DIST_DEVICE_COUNT /* mobile (latency.device), edge (latency.edge) */
#define TAG_ARCH 11
#define TAG_STOP 12
#define MAX_REQUESTS 4096
#define PROFILE_WARMUP 5
#define PROFILE_REPEATS 20

struct mpi_impl {
    MPI_Comm trainers;
    MPI_Comm device[DEVICES]; /* {profiler, trainers}; MPI_COMM_NULL without a profiler */
    /* trainer side of each device: the posted broadcast of the next table */
    MPI_Request table_req[DEVICES];
    struct latency_table *table_buf[DEVICES];
    MPI_Request arch_req[DEVICES];
    struct dist_arch arch_buf[DEVICES];
    MPI_Request reqs[MAX_REQUESTS];
    int req_count;
    int finished;
};

static struct dist dist;
static struct mpi_impl impl;
static int world_rank, world_size;

static struct mpi_impl *I(struct dist *d) { return d->impl; }

/* Waits for r without spinning: MPI_Wait polls at full speed, and a profiler (or a trainer at
 * the end) that spins for seconds takes a core from the ranks that still compute when they
 * share a node, as they do on a test machine. 200 us between looks is noise next to a step. */
static void wait_quietly(MPI_Request *r)
{
    int done = 0;
    struct timespec pause = {0, 200000};
    for (;;) {
        MPI_Test(r, &done, MPI_STATUS_IGNORE);
        if (done)
            return;
        nanosleep(&pause, NULL);
    }
}

/* ---- trainer collectives ---------------------------------------------------------------- */

static void m_reduce_wait(struct dist *d)
{
    struct mpi_impl *m = I(d);
    MPI_Waitall(m->req_count, m->reqs, MPI_STATUSES_IGNORE);
    m->req_count = 0;
}

static void m_reduce_start(struct dist *d, float *buf, size_t n)
{
    struct mpi_impl *m = I(d);
    if (m->req_count == MAX_REQUESTS)
        m_reduce_wait(d);
    OFFNAS_ASSERT(n <= (size_t)INT32_MAX);
    MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, m->trainers,
                   &m->reqs[m->req_count++]);
    /* Open MPI advances non-blocking collectives inside MPI calls: a test here moves the
     * earlier buckets along while backward computes the next ones */
    int done;
    MPI_Testall(m->req_count, m->reqs, &done, MPI_STATUSES_IGNORE);
    if (done)
        m->req_count = 0;
}

static void m_sum_doubles(struct dist *d, double *v, int n)
{
    MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, I(d)->trainers);
}

static void m_max_longs(struct dist *d, long *v, int n)
{
    MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_LONG, MPI_MAX, I(d)->trainers);
}

static void m_broadcast(struct dist *d, void *buf, size_t bytes)
{
    char *p = buf;
    while (bytes) {
        int chunk = bytes > (1u << 30) ? 1 << 30 : (int)bytes;
        MPI_Bcast(p, chunk, MPI_BYTE, 0, I(d)->trainers);
        p += chunk;
        bytes -= (size_t)chunk;
    }
}

/* ---- tables from the profilers (trainer side) ------------------------------------------- */

static void post_table(struct mpi_impl *m, int dev)
{
    MPI_Ibcast(m->table_buf[dev], (int)sizeof(struct latency_table), MPI_BYTE, 0, m->device[dev],
               &m->table_req[dev]);
}

static int m_has_profiler(struct dist *d, int dev)
{
    return dev >= 0 && dev < DEVICES && I(d)->device[dev] != MPI_COMM_NULL;
}

static int m_take_table(struct dist *d, int dev, struct latency_table *t)
{
    struct mpi_impl *m = I(d);
    wait_quietly(&m->table_req[dev]);
    if (m->table_buf[dev]->version < 0)
        return offnas_error("the %s profiler rank ended before sending its table",
                            DIST_DEVICE_NAMES[dev]);
    memcpy(t, m->table_buf[dev], sizeof *t);
    post_table(m, dev);
    return 0;
}

static int m_poll_table(struct dist *d, int dev, struct latency_table *t)
{
    struct mpi_impl *m = I(d);
    int arrived = 0;
    MPI_Test(&m->table_req[dev], &arrived, MPI_STATUS_IGNORE);
    /* take it up only when every trainer holds it, so all use the same table from the same
     * step on: max over "not yet" is 0 exactly when all have it */
    long missing = !arrived;
    m_max_longs(d, &missing, 1);
    if (missing)
        return 0; /* a completed request stays completed: the next poll sees it again */
    MPI_Wait(&m->table_req[dev], MPI_STATUS_IGNORE);
    if (m->table_buf[dev]->version < 0)
        return 0;
    memcpy(t, m->table_buf[dev], sizeof *t);
    post_table(m, dev);
    return 1;
}

static void m_send_arch(struct dist *d, const struct dist_arch *a)
{
    struct mpi_impl *m = I(d);
    if (d->rank != 0)
        return;
    for (int dev = 0; dev < DEVICES; dev++) {
        if (m->device[dev] == MPI_COMM_NULL)
            continue;
        MPI_Wait(&m->arch_req[dev], MPI_STATUS_IGNORE);
        m->arch_buf[dev] = *a;
        MPI_Isend(&m->arch_buf[dev], (int)sizeof *a, MPI_BYTE, 0, TAG_ARCH, m->device[dev],
                  &m->arch_req[dev]);
    }
}

static void m_finish(struct dist *d)
{
    struct mpi_impl *m = I(d);
    if (m->finished)
        return;
    m->finished = 1;
    for (int dev = 0; dev < DEVICES; dev++) {
        if (m->device[dev] == MPI_COMM_NULL)
            continue;
        if (d->rank == 0) {
            MPI_Wait(&m->arch_req[dev], MPI_STATUS_IGNORE);
            MPI_Send(NULL, 0, MPI_BYTE, 0, TAG_STOP, m->device[dev]);
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
    MPI_Ibcast(t, (int)sizeof *t, MPI_BYTE, 0, comm, &r);
    wait_quietly(&r);
}

/* Measures the job's search space on this machine, broadcasts and saves the table, then
 * serves corrected tables for the architectures trainer 0 sends until it says stop. */
static int run_profiler(const struct job *job, int dev, MPI_Comm comm, int serve)
{
    const char *name = DIST_DEVICE_NAMES[dev];
    struct latency_table *t = offnas_calloc(1, sizeof *t);
    /* the search space of the job on the data the shipped jobs use (one channel, ten
     * classes); the trainers check the fingerprint against their own network */
    struct net *net = net_create(&job->net, 1, job->data_resize, 1, 10, 0, (uint64_t)job->search_seed);
    int rc = 0;
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
    latency_table_init(t, net, name);
    latency_stamp_here(t, 1);
    fprintf(stderr, "offnas: profiler rank %d (%s) on %s: measuring %d layers\n", world_rank,
            name, t->host, net->layer_count);
    int quiet = offnas_log_quiet;
    offnas_log_quiet = 1;
    latency_measure(t, net, PROFILE_WARMUP, PROFILE_REPEATS);
    offnas_log_quiet = quiet;
    t->version = 1;
    broadcast_table(comm, t);

    char path[JOB_PATH_MAX * 2 + 200];
    snprintf(path, sizeof path, "%s/%s-%s.h5", job->cluster_profile_dir, name, t->host);
    if (train_mkdirs(job->cluster_profile_dir) || latency_save(t, path)) {
        fprintf(stderr, "offnas: profiler rank %d: %s (the search goes on)\n", world_rank,
                offnas_last_error());
    } else {
        fprintf(stderr, "offnas: profiler rank %d (%s): table version 1 sent and saved to %s\n",
                world_rank, name, path);
    }

    float *x = offnas_calloc((size_t)net->side * net->side * net->in_channels, sizeof(float));
    const struct latency_table base = *t;
    struct dist_arch a = {.layers = 0};
    for (;;) {
        MPI_Status st;
        struct dist_arch got;
        MPI_Request r;
        MPI_Irecv(&got, (int)sizeof got, MPI_BYTE, MPI_ANY_SOURCE, MPI_ANY_TAG, comm, &r);
        int done = 0;
        struct timespec pause = {0, 200000};
        while (MPI_Test(&r, &done, &st), !done)
            nanosleep(&pause, NULL); /* idle between epochs without taking a core */
        if (st.MPI_TAG != TAG_ARCH)
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
        *t = base;
        for (int s = 0; s < t->slot_count; s++)
            for (int o = 0; o < t->op_count[s]; o++) {
                t->median[s][o] *= ratio;
                t->p10[s][o] *= ratio;
                t->p90[s][o] *= ratio;
            }
        t->version = version;
        broadcast_table(comm, t);
        fprintf(stderr, "offnas: profiler rank %d (%s): preferred network %.3f ms measured, "
                        "%.3f ms in the table: version %d scaled by %.3f\n",
                world_rank, name, measured, predicted, version, ratio);
    }
    if (a.layers == net->layer_count) {
        char text[JOB_TEXT_MAX] = "", op[16];
        for (int l = 0; l < a.layers; l++) {
            strcat(text, l ? "," : "");
            strcat(text, op_spec_name(&net->layers[l].cand[a.ops[l]].spec, op));
        }
        printf("architecture (profiler rank %d, %s): ops %s split %d\n", world_rank, name, text,
               a.split);
        fflush(stdout);
    }
    t->version = -1; /* the last word: the trainers stop listening */
    broadcast_table(comm, t);
    free(x);
    net_free(net);
    free(t);
    return rc;
}

/* ---- roles ------------------------------------------------------------------------------ */

/* Parses cluster.profilers ("mobile:1, edge:1") into counts per device. */
static int parse_profilers(const char *text, int counts[DEVICES])
{
    counts[0] = counts[1] = 0;
    char buf[JOB_TEXT_MAX];
    snprintf(buf, sizeof buf, "%s", text);
    char *save = NULL;
    for (char *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        while (*item == ' ' || *item == '\t')
            item++;
        if (!*item)
            continue;
        char *colon = strchr(item, ':');
        char *end = NULL;
        long n = colon ? strtol(colon + 1, &end, 10) : -1;
        if (colon)
            *colon = 0;
        while (end && (*end == ' ' || *end == '\t'))
            end++;
        int dev = -1;
        for (int i = 0; i < DEVICES; i++) {
            size_t len = strlen(DIST_DEVICE_NAMES[i]);
            if (!strncmp(item, DIST_DEVICE_NAMES[i], len) && (item[len] == 0 || item[len] == ' '))
                dev = i;
        }
        if (dev < 0 || !end || *end || n < 0 || n > 1)
            return offnas_error("cluster.profilers: '%s' is not mobile:N or edge:N with N 0 or 1 "
                                "(one profiler rank per device)",
                                text);
        counts[dev] = (int)n;
    }
    return 0;
}

static int setup(const struct job *job, const char *profiler_device, int *status)
{
    *status = 0;
    /* what every rank knows alone: an explicit (MPMD) profiler device, and whether its
     * command uses tables */
    int mine[2] = {-1, profiler_device ? 0 : dist_uses_tables};
    if (profiler_device)
        mine[0] = strcmp(profiler_device, DIST_DEVICE_NAMES[DIST_EDGE]) ? DIST_MOBILE : DIST_EDGE;
    int *all = offnas_malloc((size_t)world_size * 2 * sizeof(int));
    MPI_Allgather(mine, 2, MPI_INT, all, 2, MPI_INT, MPI_COMM_WORLD);
    int explicit_profilers = 0, uses_tables = 0;
    for (int r = 0; r < world_size; r++) {
        explicit_profilers += all[2 * r] >= 0;
        /* a trainer command that searches says so in its second word */
        uses_tables |= all[2 * r + 1];
    }
    int counts[DEVICES];
    int rc = parse_profilers(job->cluster_profilers, counts);
    /* a command without tables (train) makes every rank a trainer: the search's job file
     * keeps its profilers line for the search */
    if (!uses_tables)
        counts[0] = counts[1] = 0;
    int *role = offnas_malloc((size_t)world_size * sizeof(int)); /* -1 trainer, else device */
    for (int r = 0; r < world_size; r++)
        role[r] = explicit_profilers ? all[2 * r] : -1;
    if (!rc && !explicit_profilers) {
        int p = counts[0] + counts[1];
        if (p >= world_size)
            rc = offnas_error("cluster.profilers: %d profiler ranks leave no trainer among %d "
                              "ranks",
                              p, world_size);
        for (int i = 0, r = world_size - p; !rc && i < DEVICES; i++)
            for (int k = 0; k < counts[i]; k++)
                role[r++] = i;
    }
    int seen[DEVICES] = {0}, trainers = 0;
    for (int r = 0; r < world_size; r++) {
        if (role[r] < 0)
            trainers++;
        else
            seen[role[r]]++;
    }
    if (!rc && (seen[0] > 1 || seen[1] > 1))
        rc = offnas_error("profiler: %d mobile and %d edge profiler ranks: one per device is "
                          "supported",
                          seen[0], seen[1]);
    if (!rc && trainers == 0)
        rc = offnas_error("no trainer rank in this MPI job (every rank is a profiler)");
    free(all);
    /* every rank reaches the same verdict from the same inputs; a rank that did not (a
     * different job file) is caught here */
    int bad = rc != 0, any_bad = 0;
    MPI_Allreduce(&bad, &any_bad, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (any_bad) {
        free(role);
        return bad ? -1 : offnas_error("another rank rejected the job (see its message)");
    }

    int me = role[world_rank];
    MPI_Comm_split(MPI_COMM_WORLD, me < 0 ? 0 : 1, world_rank, &impl.trainers);
    int trainer_rank = 0;
    for (int r = 0; r < world_rank; r++)
        trainer_rank += role[r] < 0;
    for (int dev = 0; dev < DEVICES; dev++) {
        impl.device[dev] = MPI_COMM_NULL;
        impl.table_req[dev] = impl.arch_req[dev] = MPI_REQUEST_NULL;
        if (!seen[dev])
            continue;
        int member = me < 0 || me == dev;
        MPI_Comm_split(MPI_COMM_WORLD, member ? 0 : MPI_UNDEFINED,
                       me == dev ? 0 : 1 + trainer_rank, &impl.device[dev]);
    }
    free(role);

    if (me >= 0) {
        offnas_log_quiet = 1;
        MPI_Comm comm = impl.device[me];
        rc = run_profiler(job, me, comm, uses_tables);
        *status = rc ? 1 : 0;
        return 1;
    }

    MPI_Comm_rank(impl.trainers, &dist.rank);
    MPI_Comm_size(impl.trainers, &dist.size);
    dist.world_rank = world_rank;
    dist.world_size = world_size;
    dist.profilers = seen[0] + seen[1];
    dist.impl = &impl;
    dist.reduce_start = m_reduce_start;
    dist.reduce_wait = m_reduce_wait;
    dist.sum_doubles = m_sum_doubles;
    dist.max_longs = m_max_longs;
    dist.broadcast = m_broadcast;
    dist.has_profiler = m_has_profiler;
    dist.take_table = m_take_table;
    dist.poll_table = m_poll_table;
    dist.send_arch = m_send_arch;
    dist.finish = m_finish;
    dist.bucket_floats = (size_t)job->cluster_bucket_kb * 1024 / sizeof(float);
    for (int dev = 0; dev < DEVICES; dev++) {
        if (impl.device[dev] == MPI_COMM_NULL)
            continue;
        impl.table_buf[dev] = offnas_calloc(1, sizeof(struct latency_table));
        if (uses_tables)
            post_table(&impl, dev);
        else
            impl.device[dev] = MPI_COMM_NULL; /* nothing to hear from an idle profiler */
    }
    if (dist.rank != 0)
        offnas_log_quiet = 1;
    dist_set(&dist);
    if (dist.rank == 0 && world_size > 1)
        offnas_log("mpi: %d trainer rank%s, %d profiler rank%s (mobile %d, edge %d) of %d",
                   dist.size, dist.size > 1 ? "s" : "", dist.profilers,
                   dist.profilers == 1 ? "" : "s", seen[0], seen[1], world_size);
    return 0;
}

/* ---- start and end ---------------------------------------------------------------------- */

int mpi_dist_launched(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

int mpi_dist_start(int *argc, char ***argv)
{
    int provided;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return offnas_error("MPI_Init failed");
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    dist_setup_hook = setup;
    return 0;
}

void mpi_dist_end(int status)
{
    if (status != 0 && status != DIST_EXIT_STOPPED && world_size > 1) {
        fflush(stdout);
        fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, status);
    }
    MPI_Finalize();
}
