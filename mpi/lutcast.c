/* lutcast: lookup tables from the profiler ranks. Each device with a profiler has a
 * communicator {profiler, trainers}, profiler first: the profiler broadcasts its measured
 * table, then a corrected one for each architecture trainer 0 sends it (MPI_Ibcast; the
 * trainers keep one broadcast posted and take a table up at the same step on every trainer),
 * and at the end its last word. Every message is encoded explicitly (src/latency_wire.h):
 * a broadcast carries LATENCY_WIRE_MAX bytes, an architecture message its own length
 * (MPI_Get_count). A message the receiver refuses (another build, another search space,
 * damaged) ends the job with one line naming the sender and what is wrong. */
#define _POSIX_C_SOURCE 200809L
#include "mpi_internal.h"

#include "common.h"
#include "job.h"
#include "latency_measure.h"
#include "latency_wire.h"
#include "net.h"
#include "link.h"
#include "op.h"
#include "probe.h"
#include "sock.h"
#include "train.h"
#include "wire.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROFILE_WARMUP 5
#define PROFILE_REPEATS 20

/* Waits for r without spinning: MPI_Wait polls at full speed, and a profiler (or a trainer at
 * the end) that spins for seconds takes a core from the ranks that still compute when they
 * share a node, as they do on a test machine. 200 us between looks is noise next to a step. */
static void wait_quietly_status(MPI_Request *r, MPI_Status *st)
{
    int done = 0;
    for (;;) {
        MPI_CHECK(MPI_Test(r, &done, st));
        if (done)
            return;
        offnas_sleep_ms(0.2);
    }
}

static void wait_quietly(MPI_Request *r) { wait_quietly_status(r, MPI_STATUS_IGNORE); }

/* A refused message: its one line, then the end of every rank (the sender may be waiting in
 * a broadcast or a receive that would never complete). */
static void end_job_refused(void)
{
    fprintf(stderr, "offnas: %s\n", offnas_last_error());
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
}

/* The search space of the job as a profiler rank measures it: on the data the shipped jobs
 * use (one channel, ten classes); the trainers check the fingerprint against their own
 * network. NULL with an error when the job's network does not build. */
static struct net *profiled_space(const struct job *job)
{
    return net_create(&job->net, 1, job->data_resize, 1, 10, 0, (uint64_t)job->search_seed);
}

/* ---- tables from the profilers (trainer side) ------------------------------------------- */

static void post_table(struct dp_ctx *m, int dev)
{
    MPI_CHECK(MPI_Ibcast(m->table_msg[dev], LATENCY_WIRE_MAX, MPI_BYTE, 0, m->device[dev],
                         &m->table_req[dev]));
}

/* The world rank of rank 0 (the profiler) of comm. */
static int profiler_world_rank(MPI_Comm comm)
{
    MPI_Group group, world;
    int first = 0, rank = -1;
    MPI_CHECK(MPI_Comm_group(comm, &group));
    MPI_CHECK(MPI_Comm_group(MPI_COMM_WORLD, &world));
    MPI_CHECK(MPI_Group_translate_ranks(group, 1, &first, world, &rank));
    MPI_CHECK(MPI_Group_free(&group));
    MPI_CHECK(MPI_Group_free(&world));
    return rank;
}

void lutcast_listen(struct dp_ctx *c, const struct job *job)
{
    for (int dev = 0; dev < DEVICES; dev++) {
        if (c->device[dev] == MPI_COMM_NULL)
            continue;
        if (!c->uses_tables) {
            c->device[dev] = MPI_COMM_NULL; /* nothing to hear from an idle profiler */
            continue;
        }
        /* a job whose network does not build fails in the command before any table is
         * taken; the profiler answers with its last word, which needs no space */
        if (!c->space)
            c->space = profiled_space(job);
        c->profiler_rank[dev] = profiler_world_rank(c->device[dev]);
        c->table_msg[dev] = offnas_calloc(1, LATENCY_WIRE_MAX);
        c->arch_msg[dev] = offnas_calloc(1, LATENCY_WIRE_ARCH_MAX);
        post_table(c, dev);
    }
}

/* Decodes the table message that arrived for dev into t: 1 a table, 0 the profiler's last
 * word, -1 refused (with the error). */
static int read_table(struct dp_ctx *m, int dev, struct latency_table *t)
{
    char from[96];
    snprintf(from, sizeof from, "table message from profiler rank %d (%s)",
             m->profiler_rank[dev], DIST_DEVICE_NAMES[dev]);
    if (!m->space)
        return offnas_error("%s: the job's network does not build here", from);
    return latency_wire_decode_table(t, m->table_msg[dev], LATENCY_WIRE_MAX, m->space, from);
}

int lutcast_has_profiler(struct dist *d, int dev)
{
    return dev >= 0 && dev < DEVICES && dp_ctx_of(d)->device[dev] != MPI_COMM_NULL;
}

int lutcast_take_table(struct dist *d, int dev, struct latency_table *t)
{
    struct dp_ctx *m = dp_ctx_of(d);
    wait_quietly(&m->table_req[dev]);
    /* every trainer holds the same bytes: all refuse them alike and end the command */
    int got = read_table(m, dev, t);
    if (got < 0)
        return -1;
    if (got == 0)
        return offnas_error("the %s profiler rank ended before sending its table",
                            DIST_DEVICE_NAMES[dev]);
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
    /* mid-search, with no way to hand an error up: every trainer refuses the same bytes */
    int got = read_table(m, dev, t);
    if (got < 0)
        end_job_refused();
    if (got == 0)
        return 0;
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
        uint64_t fingerprint = m->space ? latency_fingerprint(m->space, NULL, 0) : 0;
        size_t n = latency_wire_encode_arch(m->arch_msg[dev], LATENCY_WIRE_ARCH_MAX, a,
                                            fingerprint);
        MPI_CHECK(MPI_Isend(m->arch_msg[dev], (int)n, MPI_BYTE, 0, TAG_ARCH, m->device[dev],
                            &m->arch_req[dev]));
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
        struct latency_table *drained = offnas_malloc(sizeof *drained);
        for (;;) {
            wait_quietly(&m->table_req[dev]);
            int got = read_table(m, dev, drained);
            if (got < 0)
                end_job_refused();
            if (got == 0)
                break;
            post_table(m, dev);
        }
        free(drained);
    }
}

/* ---- the profiler rank ------------------------------------------------------------------ */

/* Test hook (tests/mpi/mpi.sh table_message_refused; never set outside tests):
 * OFFNAS_TEST_DAMAGE_TABLE makes this profiler spoil one table message after encoding it, so
 * the trainers' refusal can be seen: "1" flips a byte of the first table's values, "version"
 * marks the first table as format version 2 (a message from another build), "later" flips a
 * byte of the first corrected table (taken up mid-search). table_version: the table's, 0 for
 * the last word. */
static void damage_for_test(uint8_t *msg, size_t length, int table_version)
{
    const char *how = getenv("OFFNAS_TEST_DAMAGE_TABLE");
    if (!how || !*how || table_version == 0)
        return;
    int first = table_version == 1, later = table_version == 2;
    if ((!strcmp(how, "1") && first) || (!strcmp(how, "later") && later))
        msg[length - LATENCY_WIRE_CRC - 1] ^= 0x40; /* the last entry's repeats */
    else if (!strcmp(how, "version") && first)
        msg[4] = LATENCY_WIRE_VERSION + 1; /* the header's version, low byte */
}

/* Broadcasts a message of LATENCY_WIRE_MAX bytes over comm: table t encoded, or the
 * profiler's last word when t is NULL. */
static void broadcast_table(MPI_Comm comm, const struct latency_table *t)
{
    uint8_t *msg = offnas_calloc(1, LATENCY_WIRE_MAX);
    size_t n = t ? latency_wire_encode_table(msg, LATENCY_WIRE_MAX, t)
                 : latency_wire_encode_end(msg, LATENCY_WIRE_MAX);
    damage_for_test(msg, n, t ? t->version : 0);
    MPI_Request r;
    MPI_CHECK(MPI_Ibcast(msg, LATENCY_WIRE_MAX, MPI_BYTE, 0, comm, &r));
    wait_quietly(&r);
    free(msg);
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

/* The next message from trainer 0: an architecture for net's space decoded into got, or the
 * stop. Returns its tag (TAG_ARCH or TAG_STOP); a refused architecture message ends the job. */
static int receive_arch(MPI_Comm comm, const struct net *net, struct dist_arch *got)
{
    uint8_t msg[LATENCY_WIRE_ARCH_MAX];
    MPI_Status st;
    MPI_Request r;
    MPI_CHECK(MPI_Irecv(msg, (int)sizeof msg, MPI_BYTE, MPI_ANY_SOURCE, MPI_ANY_TAG, comm, &r));
    wait_quietly_status(&r, &st); /* idle between epochs without taking a core */
    if (st.MPI_TAG != TAG_ARCH)
        return st.MPI_TAG;
    int bytes = 0;
    MPI_CHECK(MPI_Get_count(&st, MPI_BYTE, &bytes));
    if (latency_wire_decode_arch(got, msg, (size_t)bytes, net,
                                 "architecture message from trainer 0"))
        end_job_refused();
    return TAG_ARCH;
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

/* ---- partitions measured over TCP (both profiler ranks present) ------------------------ */

/* The TCP path between the two profiler ranks: the edge rank listens (cluster.probe_listen)
 * and tells the mobile rank where, once, before the first architecture. */
struct probe_path {
    int active;
    int listen_fd;           /* edge */
    struct sockaddr_in edge; /* mobile */
    int format;              /* the job's wire format */
    struct link link;        /* the job's link: what the tables predict */
};

#define PROBE_ADDR_BYTES 64
#define PROBE_TIMEOUT_S 120.0

/* An address the other node can reach for a socket bound to bound (the host's first IPv4
 * address when bound to 0.0.0.0). */
static void reachable_text(const struct sockaddr_in *bound, char *buf, size_t size)
{
    struct sockaddr_in a = *bound;
    char host[256];
    struct addrinfo hints = {.ai_family = AF_INET}, *res = NULL;
    if (a.sin_addr.s_addr == htonl(INADDR_ANY) && !gethostname(host, sizeof host) &&
        !getaddrinfo(host, NULL, &hints, &res) && res)
        a.sin_addr = ((const struct sockaddr_in *)res->ai_addr)->sin_addr;
    if (res)
        freeaddrinfo(res);
    sock_addr_text(&a, buf, size);
}

static void probe_setup(const struct job *job, const struct dp_ctx *c, struct probe_path *pp)
{
    memset(pp, 0, sizeof *pp);
    pp->listen_fd = -1;
    if (c->profiler_world[0] < 0 || c->profiler_world[1] < 0)
        return; /* one profiler: it corrects its table end to end */
    char text[PROBE_ADDR_BYTES] = "";
    const char *name = DIST_DEVICE_NAMES[c->role];
    int fmt = wire_format_parse(job->search_wire);
    if (link_from_job(&pp->link, job) || fmt < 0) {
        fprintf(stderr, "offnas: profiler rank %d (%s): %s: no partition probes\n",
                c->world_rank, name, offnas_last_error());
        fmt = -1;
    }
    pp->format = fmt;
    if (c->role == 1) { /* edge */
        struct sockaddr_in want, bound;
        if (fmt > 0 && !sock_parse_addr(job->cluster_probe_listen, "cluster.probe_listen", 1, &want) &&
            (pp->listen_fd = sock_listen(&want, 4, &bound)) >= 0)
            reachable_text(&bound, text, sizeof text);
        else if (fmt > 0)
            fprintf(stderr, "offnas: profiler rank %d (edge): %s: no partition probes\n",
                    c->world_rank, offnas_last_error());
        MPI_CHECK(MPI_Send(text, PROBE_ADDR_BYTES, MPI_CHAR, c->profiler_world[0], TAG_PROBE_ADDR,
                           MPI_COMM_WORLD));
        pp->active = text[0] != 0;
    } else {
        MPI_Request r;
        MPI_CHECK(MPI_Irecv(text, PROBE_ADDR_BYTES, MPI_CHAR, c->profiler_world[1], TAG_PROBE_ADDR,
                            MPI_COMM_WORLD, &r));
        wait_quietly(&r);
        text[PROBE_ADDR_BYTES - 1] = 0;
        pp->active = fmt > 0 && text[0] && !sock_parse_addr(text, "probe address", 0, &pp->edge);
    }
    if (pp->active)
        fprintf(stderr, "offnas: profiler rank %d (%s): partitions are measured over TCP, edge "
                        "at %s\n", c->world_rank, name, text);
}

/* The table's milliseconds of slots [from, to] of architecture a (slot 0 the stem, L + 1 the
 * head). */
static double slots_ms(const struct latency_table *t, const struct dist_arch *a, int from, int to)
{
    double ms = 0;
    for (int j = from; j <= to; j++)
        ms += t->median[j][j == 0 || j == a->layers + 1 ? 0 : a->ops[j - 1]];
    return ms;
}

/* Measures partition a over TCP with the other profiler and scales this rank's table (its
 * half: the device slots 0..split, or the edge slots split+1..L+1) to the measurement; the
 * mobile rank's table carries the probe to the trainers. Returns 0, or -1 (reported: the
 * caller corrects end to end instead). */
static int probe_partition(struct latency_table *t, const struct latency_table *base,
                           struct net *net, const struct dist_arch *a, const struct probe_path *pp,
                           const struct dp_ctx *c)
{
    struct probe_partition p = {.layers = a->layers, .split = a->split, .kept = a->kept,
                                .format = pp->format};
    memcpy(p.ops, a->ops, sizeof(int) * (size_t)a->layers);
    const int L = a->layers, edge = c->role == 1;
    double predicted_base = edge ? slots_ms(base, a, a->split + 1, L + 1)
                                 : slots_ms(base, a, 0, a->split);
    double before[3] = {slots_ms(t, a, 0, a->split), 0, 0};
    double measured;
    struct probe_result r;
    if (edge) {
        if (probe_edge_serve(pp->listen_fd, net, &p, PROBE_TIMEOUT_S, &measured))
            return -1;
    } else {
        if (probe_device_run(&pp->edge, net, &p, PROFILE_REPEATS, &r))
            return -1;
        measured = r.device_ms;
    }
    double ratio = predicted_base > 0 && measured > 0 ? measured / predicted_base : 1.0;
    scale_table(t, base, ratio, t->version + 1);
    if (!edge) {
        int side = net_out_side(net, a->split);
        double bytes = (double)side * side * a->kept * wire_format_bytes(pp->format);
        before[1] = link_transfer_ms(&pp->link, bytes);
        /* the edge's part as the trainers' tables had it: not known here, the edge rank's
         * correction follows on its own; the probe reports what the edge measured */
        t->probe = (struct latency_probe){
            .present = 1, .split = a->split, .kept = a->kept,
            .measured = {r.device_ms, r.transfer_ms, r.edge_ms},
            .predicted = {before[0], before[1], 0},
            .link_fitted = r.link_fitted, .bandwidth_mbps = r.bandwidth_mbps, .rtt_ms = r.rtt_ms};
    }
    /* one write: the other profiler rank shares this stderr */
    char line[512];
    int n = snprintf(line, sizeof line, "offnas: profiler rank %d (%s): partition split %d, %d "
                     "channels, over TCP: %s %.3f ms measured, %.3f in the table: version %d "
                     "scaled by %.3f", c->world_rank, DIST_DEVICE_NAMES[c->role], a->split,
                     a->kept, edge ? "edge half" : "device half", measured, predicted_base,
                     t->version, ratio);
    if (!edge && n < (int)sizeof line)
        n += snprintf(line + n, sizeof line - (size_t)n, "; transfer %.3f ms (predicted %.3f); %s",
                      r.transfer_ms, before[1], r.link_fitted ? "link fitted" : "link not fitted");
    if (!edge && r.link_fitted && n < (int)sizeof line)
        snprintf(line + n, sizeof line - (size_t)n, " %.2f Mbit/s, rtt %.3f ms", r.bandwidth_mbps,
                 r.rtt_ms);
    fprintf(stderr, "%s\n", line);
    return 0;
}

/* Until trainer 0 says stop: measures each architecture it sends (over TCP with the other
 * profiler when both are present and the split is inner; else end to end) and broadcasts the
 * table scaled to that measurement. Returns the last architecture received (layers 0: none). */
static struct dist_arch serve_corrections(struct latency_table *t, struct net *net,
                                          const struct dp_ctx *c, const struct probe_path *pp)
{
    MPI_Comm comm = c->device[c->role];
    float *x = offnas_calloc((size_t)net->side * net->side * net->in_channels, sizeof(float));
    const struct latency_table base = *t;
    struct dist_arch a = {.layers = 0};
    for (;;) {
        struct dist_arch got;
        if (receive_arch(comm, net, &got) != TAG_ARCH)
            break;
        a = got;
        if (pp->active && a.split >= 1 && a.split <= a.layers && a.kept > 0) {
            if (!probe_partition(t, &base, net, &a, pp, c)) {
                broadcast_table(comm, t);
                t->probe.present = 0;
                continue;
            }
            fprintf(stderr, "offnas: profiler rank %d (%s): the partition probe failed: %s; "
                            "measuring end to end\n",
                    c->world_rank, DIST_DEVICE_NAMES[c->role], offnas_last_error());
        }
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
    struct net *net = profiled_space(job);
    if (!net) {
        /* the trainers fail on the same job; answer their broadcast so nobody waits */
        if (serve)
            broadcast_table(comm, NULL);
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
    struct probe_path pp;
    probe_setup(job, c, &pp);
    struct dist_arch a = serve_corrections(t, net, c, &pp);
    if (pp.listen_fd >= 0)
        close(pp.listen_fd);
    report_architecture(net, &a, c);
    broadcast_table(comm, NULL); /* the last word: the trainers stop listening */
    net_free(net);
    free(t);
    return 0;
}
