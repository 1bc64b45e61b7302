/* search: the alternating weight / architecture optimisation (see search.h). */
#define _POSIX_C_SOURCE 200809L
#include "search.h"

#include "check.h"
#include "common.h"
#include "dist.h"
#include "h5.h"
#include "latency_measure.h"
#include "link.h"
#include "op.h"
#include "optim.h"
#include "timing.h"
#include "train.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

/* A device's table comes from its profiler rank when the job has one, else from the job's
 * profile file, else (one process only) from measuring this machine. */
static int load_or_measure(struct latency_table *table, const char *path, int index,
                           const struct job *job, const struct net *net, const char *out_dir)
{
    const char *device = index ? "edge" : "device";
    struct dist *d = dist_get();
    if (d->has_profiler(d, index)) {
        OFFNAS_TRY(d->take_table(d, index, table));
        /* every trainer must compute the same loss: the table must arrive bit for bit */
        if (dist_check_same(d, (const float *)table, sizeof *table / sizeof(float), 0))
            return offnas_error("the %s table differs between trainers after its broadcast",
                                device);
        char space[LATENCY_SPACE_MAX];
        if (table->fingerprint != latency_fingerprint(net, space, sizeof space))
            return offnas_error("the %s table from its profiler rank is for another search "
                                "space (fingerprint %016llx)",
                                device, (unsigned long long)table->fingerprint);
        offnas_log("search: %s table version %d from its profiler rank (%s, %s)", device,
                   table->version, table->host, table->cpu);
        return 0;
    }
    if (path[0])
        return latency_load(table, path, net);
    if (d->world_size > 1)
        return offnas_error("latency.%s: no profile file and no profiler rank for the %s "
                            "(cluster.profilers = mobile:1, edge:1 or an MPMD profiler)",
                            device, index ? "edge server" : "mobile device");
    offnas_log("search: no profile for the %s in the job: measuring this machine", device);
    struct net *probe = net_create(&job->net, 1, net->side, net->in_channels, net->classes, 0,
                                   (uint64_t)job->search_seed);
    if (!probe)
        return -1;
    latency_table_init(table, probe, device);
    latency_measure(table, probe, 5, 20);
    net_free(probe);
    if (!out_dir)
        return 0;
    char file[JOB_PATH_MAX * 2];
    snprintf(file, sizeof file, "%s/measured_%s.h5", out_dir, device);
    return latency_save(table, file);
}

int search_costs(struct latency_table *device, struct latency_table *edge, struct arch_cost *cost,
                 const struct job *job, const struct net *net, const char *out_dir)
{
    OFFNAS_TRY(load_or_measure(device, job->latency_device, 0, job, net, out_dir));
    OFFNAS_TRY(load_or_measure(edge, job->latency_edge, 1, job, net, out_dir));
    return search_cost_init(cost, job, device, edge);
}

int search_cost_init(struct arch_cost *cost, const struct job *job,
                     const struct latency_table *device, const struct latency_table *edge)
{
    cost->device = device;
    cost->edge = edge;
    cost->device_scale = job->latency_device_scale;
    cost->edge_scale = job->latency_edge_scale;
    OFFNAS_TRY(link_from_job(&cost->link, job));
    cost->wire_bytes = link_wire_bytes(job->search_wire);
    return 0;
}

double search_latency_loss(const struct job *job, double ce, double expected_ms, double t_ref_ms,
                           double *task_scale, double *loss)
{
    if (!strcmp(job->search_loss, "multiplicative")) {
        /* CE * (log E / log T_ref)^w with times in microseconds, so both logs are positive */
        double le = log(1e3 * expected_ms), lr = log(1e3 * t_ref_ms);
        double ratio = le / lr, w = job->search_w;
        *task_scale = pow(ratio, w);
        *loss = ce * *task_scale;
        return ce * w * pow(ratio, w - 1.0) / (lr * expected_ms);
    }
    *task_scale = 1.0;
    if (!strcmp(job->search_loss, "log")) {
        /* CE + lambda * ln(E / T_ref): a fraction of the time saved is worth the same at 80 ms
         * as at 1 ms, where the additive form's weight stays at the initial supernet's T_ref */
        *loss = ce + job->search_lambda * log(expected_ms / t_ref_ms);
        return job->search_lambda / expected_ms;
    }
    *loss = ce + job->search_lambda * (expected_ms - t_ref_ms) / t_ref_ms;
    return job->search_lambda / t_ref_ms;
}

/* ---- checkpoints ------------------------------------------------------------------------ */

/* The epoch sums travel (allreduce, checkpoint) as SEARCH_EPOCH_SUMS doubles in field order. */
_Static_assert(sizeof(struct search_epoch_sums) == SEARCH_EPOCH_SUMS * sizeof(double),
               "struct search_epoch_sums must be SEARCH_EPOCH_SUMS doubles");

static void sums_pack(double v[SEARCH_EPOCH_SUMS], const struct search_epoch_sums *sums)
{
    memcpy(v, sums, sizeof *sums);
}

static void sums_unpack(struct search_epoch_sums *sums, const double v[SEARCH_EPOCH_SUMS])
{
    memcpy(sums, v, sizeof *sums);
}

int search_save_checkpoint(const char *path, const struct job *job, const struct net *net,
                           const struct arch *arch, const struct search_state *state)
{
    char tmp[H5_PATH_MAX];
    hid_t f = h5_create_tmp(path, tmp, sizeof tmp);
    if (f < 0)
        return -1;
    char *text = job_to_string(job);
    hsize_t np = net->param_count, ns = net->stat_count, na = arch->count;
    int rc = h5_write(f, "weights/params", H5_F32, 1, &np, net->params, 0) ||
             h5_write(f, "weights/running_stats", H5_F32, 1, &ns, net->stats, 0) ||
             h5_write(f, "weights/momentum", H5_F32, 1, &np, state->momentum, 0) ||
             h5_write(f, "arch/params", H5_F32, 1, &na, arch->params, 0) ||
             h5_write(f, "arch/adam_m", H5_F32, 1, &na, arch->adam_m, 0) ||
             h5_write(f, "arch/adam_v", H5_F32, 1, &na, arch->adam_v, 0) ||
             h5_attr_set_string(f, "job", text) || h5_attr_set_int(f, "step", state->step) ||
             h5_attr_set_int(f, "epoch", state->epoch) ||
             h5_attr_set_int(f, "arch_steps", state->arch_steps) ||
             h5_attr_set_double(f, "t_ref_ms", state->t_ref_ms) ||
             h5_attr_set_int(f, "shards", state->shards) ||
             h5_attr_set_int(f, "trainers", state->trainers) ||
             h5_attr_set_string(f, "rng", "counter-based: every draw is seeded from (seed, "
                                           "step, shard); the step is the whole state") ||
             h5_attr_set_int(f, "version", 2);
    double sums[SEARCH_EPOCH_SUMS];
    sums_pack(sums, &state->epoch_sums);
    hsize_t nsums = SEARCH_EPOCH_SUMS;
    rc = rc || h5_write(f, "epoch_sums", H5_F64, 1, &nsums, sums, 0);
    for (int i = 0; i < 2 && state->tables && !rc; i++) {
        hsize_t dims[2] = {LATENCY_MAX_SLOTS, NET_MAX_CANDIDATES};
        char name[32];
        snprintf(name, sizeof name, "tables/%s_median_ms", i ? "edge" : "device");
        rc = h5_write(f, name, H5_F64, 2, dims, &state->tables[i].median[0][0], 0);
        snprintf(name, sizeof name, "%s_table_version", i ? "edge" : "device");
        rc = rc || h5_attr_set_int(f, name, state->tables[i].version);
    }
    if (!rc && state->link_bandwidth_mbps > 0)
        rc = h5_attr_set_double(f, "link_bandwidth_mbps", state->link_bandwidth_mbps) ||
             h5_attr_set_double(f, "link_rtt_ms", state->link_rtt_ms);
    free(text);
    if (rc) {
        h5_abort(f, tmp);
        return -1;
    }
    /* keep the previous checkpoint: a crash between the two renames leaves both readable */
    char prev[JOB_PATH_MAX * 2 + 16];
    snprintf(prev, sizeof prev, "%.*s.prev.h5", (int)(strlen(path) > 3 ? strlen(path) - 3 : 0),
             path);
    if (rename(path, prev) && errno != ENOENT) {
        h5_abort(f, tmp);
        return offnas_error("%s: cannot keep the previous checkpoint: %s", path, strerror(errno));
    }
    return h5_commit(f, tmp, path);
}

char *search_checkpoint_job(const char *path)
{
    hid_t f = h5_open_read(path);
    if (f < 0)
        return NULL;
    char *text = h5_attr_get_string(f, "job");
    h5_close(f);
    return text;
}

/* Reads the 1-D float data set name of f into dst, which must hold exactly count values. */
static int read_exact(hid_t f, const char *path, const char *name, float *dst, size_t count)
{
    hsize_t dims[1];
    if (h5_shape(f, name, H5_F32, 1, dims))
        return -1;
    if (dims[0] != count)
        return offnas_error("%s: /%s has %llu values, this job needs %zu (another search space?)",
                            path, name, (unsigned long long)dims[0], count);
    return h5_read_rows(f, name, H5_F32, 1, 0, count, dst);
}

/* The largest step count a checkpoint may hold: search.epochs (at most 1e9) times the steps of
 * an epoch is far below it, and it keeps 2 * step + 1 (the RNG streams) without overflow. */
#define CKPT_MAX_STEPS (INT64_C(1) << 52)
/* |alpha|, |beta|, |gamma| and their Adam moments: Adam moves a parameter by at most its
 * learning rate (<= 100) a step, so a value beyond this is damage, not a search. */
#define CKPT_MAX_ARCH 1e9
/* The newest checkpoint layout (attribute version); a later one is another program's. */
#define CKPT_VERSION 2

/* The counters and attributes of a checkpoint into state, each range-checked. */
static int load_counters(hid_t f, const char *path, struct search_state *state)
{
    int64_t step, epoch, arch_steps, version = 1;
    double t_ref;
    OFFNAS_TRY(h5_attr_get_int(f, "step", &step));
    OFFNAS_TRY(check_int64_long(path, "step", step, 0, CKPT_MAX_STEPS, &state->step));
    OFFNAS_TRY(h5_attr_get_int(f, "epoch", &epoch));
    OFFNAS_TRY(check_int64(path, "epoch", epoch, 0, 1000000000, &state->epoch));
    OFFNAS_TRY(h5_attr_get_int(f, "arch_steps", &arch_steps));
    /* at most one architecture step per weight step */
    OFFNAS_TRY(check_int64_long(path, "arch_steps", arch_steps, 0, state->step,
                                &state->arch_steps));
    OFFNAS_TRY(h5_attr_get_double(f, "t_ref_ms", &t_ref));
    /* the saved T_ref is the job's or the initial supernet's E[T], never 0 */
    if (!(t_ref > 0))
        return offnas_error("%s: t_ref_ms: %g is not a latency (> 0 ms)", path, t_ref);
    OFFNAS_TRY(check_double(path, "t_ref_ms", t_ref, 0, CHECK_MAX_LATENCY_MS));
    state->t_ref_ms = t_ref;
    int found = h5_attr_exists(f, "version");
    if (found < 0 || (found && h5_attr_get_int(f, "version", &version)))
        return -1;
    int v;
    OFFNAS_TRY(check_int64(path, "version", version, 1, CKPT_VERSION, &v));
    state->shards = 0;
    state->trainers = 1;
    if (v < 2)
        return 0;
    int64_t shards, trainers;
    OFFNAS_TRY(h5_attr_get_int(f, "shards", &shards));
    OFFNAS_TRY(check_int64(path, "shards", shards, 1, 1 << 20, &state->shards));
    OFFNAS_TRY(h5_attr_get_int(f, "trainers", &trainers));
    OFFNAS_TRY(check_int64(path, "trainers", trainers, 1, 1 << 20, &state->trainers));
    return 0;
}

/* The epoch sums and (when state->tables is set) both tables of a version 2 checkpoint. */
static int load_sums_and_tables(hid_t f, const char *path, struct search_state *state)
{
    hsize_t dims[2];
    OFFNAS_TRY(h5_shape(f, "epoch_sums", H5_F64, 1, dims));
    if (dims[0] != SEARCH_EPOCH_SUMS)
        return offnas_error("%s: /epoch_sums has %llu values, expected %d", path,
                            (unsigned long long)dims[0], SEARCH_EPOCH_SUMS);
    double sums[SEARCH_EPOCH_SUMS];
    OFFNAS_TRY(h5_read_rows(f, "epoch_sums", H5_F64, 1, 0, SEARCH_EPOCH_SUMS, sums));
    /* losses (the log form's architecture loss may be negative), hits and image counts */
    for (int i = 0; i < SEARCH_EPOCH_SUMS; i++)
        if (!isfinite(sums[i]))
            return offnas_error("%s: /epoch_sums[%d]: %g is not a finite number", path, i,
                                sums[i]);
    struct search_epoch_sums e;
    sums_unpack(&e, sums);
    if (e.train_images < 0 || e.train_hits < 0 || e.train_hits > e.train_images ||
        e.val_images < 0 || e.val_hits < 0 || e.val_hits > e.val_images || e.train_loss < 0 ||
        e.val_loss < 0)
        return offnas_error("%s: /epoch_sums: negative counts or more hits than images", path);
    state->epoch_sums = e;
    for (int i = 0; i < 2 && state->tables; i++) {
        char name[32];
        snprintf(name, sizeof name, "tables/%s_median_ms", i ? "edge" : "device");
        OFFNAS_TRY(h5_shape(f, name, H5_F64, 2, dims));
        if (dims[0] != LATENCY_MAX_SLOTS || dims[1] != NET_MAX_CANDIDATES)
            return offnas_error("%s: /%s is %llux%llu, expected %dx%d", path, name,
                                (unsigned long long)dims[0], (unsigned long long)dims[1],
                                LATENCY_MAX_SLOTS, NET_MAX_CANDIDATES);
        double *m = &state->tables[i].median[0][0];
        char field[40];
        snprintf(field, sizeof field, "/%s", name);
        OFFNAS_TRY(h5_read_rows(f, name, H5_F64, 2, 0, LATENCY_MAX_SLOTS, m));
        OFFNAS_TRY(check_doubles(path, field, m, (size_t)LATENCY_MAX_SLOTS * NET_MAX_CANDIDATES,
                                 0, CHECK_MAX_LATENCY_MS));
        int64_t v;
        snprintf(name, sizeof name, "%s_table_version", i ? "edge" : "device");
        OFFNAS_TRY(h5_attr_get_int(f, name, &v));
        OFFNAS_TRY(check_int64(path, name, v, 0, INT32_MAX, &state->tables[i].version));
    }
    state->link_bandwidth_mbps = state->link_rtt_ms = 0;
    if (state->tables && h5_attr_exists(f, "link_bandwidth_mbps") > 0) {
        double bw, rtt;
        OFFNAS_TRY(h5_attr_get_double(f, "link_bandwidth_mbps", &bw));
        OFFNAS_TRY(h5_attr_get_double(f, "link_rtt_ms", &rtt));
        if (!(isfinite(bw) && bw > 0 && bw < 1e9) || !(isfinite(rtt) && rtt >= 0 && rtt < 1e6))
            return offnas_error("%s: link_bandwidth_mbps %g, link_rtt_ms %g: not a link", path,
                                bw, rtt);
        state->link_bandwidth_mbps = bw;
        state->link_rtt_ms = rtt;
    }
    return 0;
}

/* The body of search_load_checkpoint with the file open. */
static int load_open(hid_t f, const char *path, struct net *net, struct arch *arch,
                     struct search_state *state)
{
    size_t np = net->param_count, na = arch->count;
    OFFNAS_TRY(read_exact(f, path, "weights/params", net->params, np));
    OFFNAS_TRY(read_exact(f, path, "weights/running_stats", net->stats, net->stat_count));
    OFFNAS_TRY(net_check_loaded(net, path, "/weights/params", "/weights/running_stats"));
    if (state->momentum)
        OFFNAS_TRY(read_exact(f, path, "weights/momentum", state->momentum, np) ||
                   check_finite_floats(path, "/weights/momentum", state->momentum, np));
    OFFNAS_TRY(read_exact(f, path, "arch/params", arch->params, na) ||
               check_floats(path, "/arch/params", arch->params, na, -CKPT_MAX_ARCH,
                            CKPT_MAX_ARCH));
    OFFNAS_TRY(read_exact(f, path, "arch/adam_m", arch->adam_m, na) ||
               check_floats(path, "/arch/adam_m", arch->adam_m, na, -CKPT_MAX_ARCH,
                            CKPT_MAX_ARCH));
    /* a mean of squared gradients */
    OFFNAS_TRY(read_exact(f, path, "arch/adam_v", arch->adam_v, na) ||
               check_floats(path, "/arch/adam_v", arch->adam_v, na, 0, FLT_MAX));
    OFFNAS_TRY(load_counters(f, path, state));
    if (state->shards > 0) /* version 2 */
        OFFNAS_TRY(load_sums_and_tables(f, path, state));
    return 0;
}

int search_load_checkpoint(const char *path, struct net *net, struct arch *arch,
                           struct search_state *state)
{
    hid_t f = h5_open_read(path);
    if (f < 0)
        return -1;
    /* into a copy: a refused file leaves the counters as they were */
    struct search_state loaded = *state;
    int rc = load_open(f, path, net, arch, &loaded);
    h5_close(f);
    if (!rc)
        *state = loaded;
    return rc;
}

int search_check_progress(const char *path, const struct search_state *state,
                          const struct job *job, long per_epoch, int shards)
{
    if (state->epoch > job->search_epochs)
        return offnas_error("%s: epoch: %d epochs done, but the job has search.epochs = %d",
                            path, state->epoch, job->search_epochs);
    /* other shards cut the epochs into other step counts: only the epochs compare */
    if (per_epoch <= 0 || state->shards != shards)
        return 0;
    long total = per_epoch * job->search_epochs;
    if (job->train_steps > 0 && job->train_steps < total)
        total = job->train_steps;
    if (state->step > total)
        return offnas_error("%s: step: %ld is beyond the run's %ld steps (%d epochs of %ld)",
                            path, state->step, total, job->search_epochs, per_epoch);
    /* completed epochs: step / per_epoch, or one more after a last short epoch */
    long lo = state->step / per_epoch, hi = (state->step + per_epoch - 1) / per_epoch;
    if (state->epoch < lo || state->epoch > hi)
        return offnas_error("%s: epoch: %d epochs done does not fit step %ld (%ld steps per "
                            "epoch)", path, state->epoch, state->step, per_epoch);
    return 0;
}

/* ---- the search loop -------------------------------------------------------------------- */

/* Everything one trainer holds during a search. */
struct search_ctx {
    const struct job *job;
    struct dist *d;
    struct train_data td;
    struct net *net;
    struct arch arch;
    struct latency_table *tables; /* [0] device, [1] edge */
    struct arch_cost cost;
    float *mom;
    struct train_batch tb, vb;
    struct search_state state;
    int B;                  /* images per step on this trainer */
    long per_epoch, total;  /* weight steps per epoch, in the run */
    long arch_total;        /* architecture steps in the run */
    int largest[NET_MAX_LAYERS]; /* each layer's candidate of the most multiply-adds */
};

/* The split the job pins (search.split = device: L + 1; search.pin_split = S), or -1: searched. */
static int pinned_split(const struct search_ctx *c)
{
    if (!strcmp(c->job->search_split, "device"))
        return c->arch.split_count - 1;
    return c->job->search_pin_split;
}

static void ctx_close(struct search_ctx *c)
{
    train_batch_free(&c->tb);
    train_batch_free(&c->vb);
    free(c->mom);
    arch_free(&c->arch);
    free(c->tables);
    if (c->d)
        dist_grads_release(c->d);
    net_free(c->net);
    train_data_free(&c->td);
}

/* Rank 0's state to every trainer: weights, statistics, momentum, alpha beta gamma with their
 * Adam moments, the counters and the tables' entries. */
static void ctx_broadcast(struct search_ctx *c)
{
    struct dist *d = c->d;
    if (d->size == 1)
        return;
    d->broadcast(d, c->net->params, c->net->param_count * sizeof(float));
    d->broadcast(d, c->net->stats, c->net->stat_count * sizeof(float));
    d->broadcast(d, c->mom, c->net->param_count * sizeof(float));
    d->broadcast(d, c->arch.params, c->arch.count * sizeof(float));
    d->broadcast(d, c->arch.adam_m, c->arch.count * sizeof(float));
    d->broadcast(d, c->arch.adam_v, c->arch.count * sizeof(float));
    long counters[3] = {c->state.step, c->state.epoch, c->state.arch_steps};
    d->broadcast(d, counters, sizeof counters);
    c->state.step = counters[0];
    c->state.epoch = (int)counters[1];
    c->state.arch_steps = counters[2];
    d->broadcast(d, &c->state.t_ref_ms, sizeof c->state.t_ref_ms);
    double link[2] = {c->state.link_bandwidth_mbps, c->state.link_rtt_ms};
    d->broadcast(d, link, sizeof link);
    c->state.link_bandwidth_mbps = link[0];
    c->state.link_rtt_ms = link[1];
    for (int i = 0; i < 2; i++) {
        d->broadcast(d, c->tables[i].median, sizeof c->tables[i].median);
        d->broadcast(d, &c->tables[i].version, sizeof c->tables[i].version);
    }
}

/* Loads the checkpoint at path into c and checks its counters against the job. */
static int ctx_load(struct search_ctx *c, const char *path)
{
    OFFNAS_TRY(search_load_checkpoint(path, c->net, &c->arch, &c->state));
    return search_check_progress(path, &c->state, c->job, c->td.train_shards.steps,
                                 c->td.train_shards.shards);
}

/* Trainer 0 loads the newest readable checkpoint of out_dir (the previous one when the newest
 * is damaged) and every trainer learns whether it worked. A refused file is named in the one
 * error line; the fallback is logged only when it worked. */
static int ctx_resume(struct search_ctx *c, const char *out_dir)
{
    long ok = 1;
    if (c->d->rank == 0) {
        char path[JOB_PATH_MAX * 2 + 16], prev[JOB_PATH_MAX * 2 + 16];
        snprintf(path, sizeof path, "%s/checkpoint.h5", out_dir);
        snprintf(prev, sizeof prev, "%s/checkpoint.prev.h5", out_dir);
        if (ctx_load(c, path)) {
            char why[1024];
            snprintf(why, sizeof why, "%s", offnas_last_error());
            if (access(prev, F_OK)) {
                offnas_error("%s", why);
                ok = 0;
            } else if (ctx_load(c, prev)) {
                offnas_error("%s: no readable checkpoint to resume from (%s; previous: %s)",
                             out_dir, why, offnas_last_error());
                ok = 0;
            } else {
                offnas_log("search: %s; resuming from the previous checkpoint %s", why, prev);
            }
        }
        if (ok && c->state.shards && c->state.shards != c->td.train_shards.shards)
            offnas_log("search: the checkpoint was written with %d data shards, this run uses "
                       "%d: the data order differs from the interrupted run",
                       c->state.shards, c->td.train_shards.shards);
    }
    c->d->broadcast(c->d, &ok, sizeof ok); /* rank 0's verdict */
    if (!ok && c->d->rank != 0)
        offnas_error("%s: trainer 0 found no readable checkpoint", out_dir);
    return ok ? 0 : -1;
}

static int ctx_open(struct search_ctx *c, const struct job *job, const char *out_dir, int resume)
{
    memset(c, 0, sizeof *c);
    c->job = job;
    c->d = dist_get();
    struct dist *d = c->d;
    op_set_threads(job->search_deterministic ? 1 : job->train_threads);
    if (out_dir && d->rank == 0)
        OFFNAS_TRY(train_mkdirs(out_dir));
    OFFNAS_TRY(train_data_load(&c->td, job, d));
    struct train_shards *sh = &c->td.train_shards;
    c->B = sh->owned * sh->per_shard;
    OFFNAS_TRY(train_check_memory(job, c->B, &c->td, 0, 2));
    c->net = net_create(&job->net, c->B, job->data_resize, c->td.train.channels,
                        c->td.train.classes, 0, (uint64_t)job->search_seed);
    c->tables = offnas_calloc(2, sizeof *c->tables);
    if (!c->net)
        return -1;
    c->net->bn_groups = sh->owned;
    c->net->grad_ready_ctx = d;
    dist_grads_setup(d, (size_t)job->cluster_bucket_kb * 1024 / sizeof(float),
                     c->net->param_count);
    OFFNAS_TRY(search_costs(&c->tables[0], &c->tables[1], &c->cost, job, c->net,
                            d->rank == 0 ? out_dir : NULL));
    arch_init(&c->arch, c->net, 2.0f);
    for (int l = 0; l < c->net->layer_count; l++)
        for (int i = 0; i < c->net->layers[l].candidate_count; i++)
            if (net_block_macs(c->net, l, i) > net_block_macs(c->net, l, c->largest[l]))
                c->largest[l] = i;
    if (pinned_split(c) >= 0)
        arch_fix_split(&c->arch, pinned_split(c));
    c->mom = offnas_calloc(c->net->param_count, sizeof(float));
    c->state.momentum = c->mom;
    c->state.t_ref_ms = job->search_t_ref_ms;
    c->state.shards = sh->shards;
    c->state.trainers = d->size;
    c->state.tables = c->tables;
    if (resume)
        OFFNAS_TRY(ctx_resume(c, out_dir));
    ctx_broadcast(c);
    if (c->state.link_bandwidth_mbps > 0) { /* a fitted link before the stop goes on */
        c->cost.link.bandwidth_mbps = c->state.link_bandwidth_mbps;
        c->cost.link.rtt_ms = c->state.link_rtt_ms;
    }
    if (c->state.t_ref_ms <= 0)
        c->state.t_ref_ms = !strcmp(job->search_t_ref, "fastest")
                                ? arch_fastest_split_latency(&c->arch, &c->cost, NULL)
                                : arch_expected_latency(&c->arch, &c->cost, NULL, 0).total;

    c->per_epoch = sh->steps;
    if (c->per_epoch == 0 || c->td.val_shards.steps == 0)
        return offnas_error("train.batch: the global batch %d is larger than the training (%ld) "
                            "or validation (%ld) split",
                            job->train_batch, c->td.train_total, c->td.val_total);
    c->total = c->per_epoch * job->search_epochs;
    if (job->train_steps > 0 && job->train_steps < c->total)
        c->total = job->train_steps;
    c->arch_total = c->per_epoch * (job->search_epochs - job->search_warmup_epochs);
    train_batch_init(&c->tb, c->B, job->data_resize, c->td.train.channels, c->B);
    train_batch_init(&c->vb, c->B, job->data_resize, c->td.val.channels, c->B);
    return 0;
}

/* Temperature of the Gumbel samples: annealed geometrically over the architecture steps. */
static float ctx_tau(const struct search_ctx *c)
{
    const struct job *job = c->job;
    if (c->arch_total <= 1)
        return (float)job->search_tau_start;
    double progress = (double)c->state.arch_steps / (double)(c->arch_total - 1);
    return (float)(job->search_tau_start *
                   pow(job->search_tau_end / job->search_tau_start, progress > 1 ? 1 : progress));
}

static int ctx_searching(const struct search_ctx *c)
{
    return c->state.step / c->per_epoch >= c->job->search_warmup_epochs;
}

/* One weight step: training batch, an architecture sampled from (seed, 2*step), gradients
 * summed over the trainers in buckets during backward, SGD over the ops used. */
/* The share of layers that train their largest candidate at this step: from 1 at the start
 * of the warm-up falling linearly to 0 after search.warmup_largest of it (a short form of
 * Once-for-All's progressive shrinking: the superkernel first learns as one network, then
 * every slice is drawn uniformly). 0 once the architecture is searched. */
static double warmup_largest_share(const struct search_ctx *c)
{
    long warm = c->per_epoch * c->job->search_warmup_epochs;
    double span = c->job->search_warmup_largest * (double)warm;
    if (c->state.step >= warm || span <= 0)
        return 0.0;
    double share = 1.0 - (double)c->state.step / span;
    return share > 0 ? share : 0.0;
}

static void weight_step(struct search_ctx *c, float tau, struct search_epoch_sums *sums)
{
    const struct job *job = c->job;
    struct net *net = c->net;
    struct rng rng;
    rng_seed(&rng, (uint64_t)job->search_seed, 2 * (uint64_t)c->state.step);
    struct arch_sample sample;
    arch_sample(&sample, &c->arch, tau, &rng);
    double p_largest = warmup_largest_share(c);
    for (int l = 0; l < net->layer_count; l++)
        if (p_largest > 0 && rng_uniform(&rng) < p_largest)
            sample.ops[l] = c->largest[l];
    arch_apply(&sample, net);
    long step = c->state.step;
    train_shards_fill(&c->td.train_shards, &c->tb, &c->td.train, step / c->per_epoch,
                      step % c->per_epoch, job->train_flip);
    net->want_gate_grad = 0;
    net->grad_ready = dist_grad_ready;
    double lr = job->search_lr > 0 ? job->search_lr : job->train_lr;
    struct train_hparams hp = {(float)optim_cosine_lr(lr, step, c->total, 0),
                               (float)job->train_momentum, (float)job->train_weight_decay, 0.0f};
    int correct = 0;
    float loss = train_step(net, c->mom, c->tb.x, c->tb.labels, c->B, &hp, c->d, &correct);
    sums->train_loss += (double)loss * c->B;
    sums->train_hits += correct;
    sums->train_images += c->B;
}

/* The paired estimate of alpha's task gradient: a second path with the ops drawn again (split
 * and channel mask kept, so the two losses differ by the ops alone) on the same validation
 * batch, forward only. */
static void paired_op_step(struct search_ctx *c, const struct arch_sample *a, float la,
                           struct rng *rng)
{
    struct arch_sample b = *a, redraw;
    arch_sample(&redraw, &c->arch, a->tau, rng);
    memcpy(b.ops, redraw.ops, sizeof b.ops);
    memcpy(b.op_soft, redraw.op_soft, sizeof b.op_soft);
    arch_apply(&b, c->net);
    net_forward(c->net, c->vb.x, c->B, 1);
    int correct = 0;
    float lb = op_softmax_xent_forward(c->net->probs, &correct, c->net->logits, c->vb.labels,
                                       c->B, c->net->classes, 0.0f);
    arch_paired_op_gradients(&c->arch, a, la, &b, lb);
}

/* One architecture step: validation batch, a sample from (seed, 2*step+1), gradients of the
 * task loss in alpha beta gamma averaged over the trainers, then the latency term (the same
 * on every trainer), Adam. */
static void arch_step(struct search_ctx *c, float tau, struct search_epoch_sums *sums)
{
    const struct job *job = c->job;
    struct net *net = c->net;
    struct arch *arch = &c->arch;
    struct rng rng;
    rng_seed(&rng, (uint64_t)job->search_seed, 2 * (uint64_t)c->state.step + 1);
    struct arch_sample sample;
    arch_sample(&sample, arch, tau, &rng);
    arch_apply(&sample, net);
    long vsteps = c->td.val_shards.steps;
    train_shards_fill(&c->td.val_shards, &c->vb, &c->td.val, c->state.arch_steps / vsteps,
                      c->state.arch_steps % vsteps, 0);
    net_zero_grads(net);
    memset(arch->grads, 0, arch->count * sizeof(float));
    net->want_gate_grad = 1;
    net->grad_ready = NULL;
    net->skip_weight_grads = 1; /* the weight gradients of this batch are not used */
    int correct = 0;
    float vloss = train_forward_backward(net, c->vb.x, c->vb.labels, c->B, 0.0f, &correct);
    net->skip_weight_grads = 0;
    int paired = !strcmp(job->search_op_gradient, "paired");
    arch_task_gradients(arch, &sample, net, !paired);
    if (paired)
        paired_op_step(c, &sample, vloss, &rng);
    /* the mean validation loss over the trainers enters the multiplicative form */
    double mean[2] = {vloss, 1.0};
    c->d->sum_doubles(c->d, mean, 2);
    dist_average(c->d, arch->grads, arch->count);
    struct arch_latency now = arch_expected_latency(arch, &c->cost, NULL, 0);
    double task_scale, arch_loss;
    double dlat = search_latency_loss(job, mean[0] / mean[1], now.total, c->state.t_ref_ms,
                                      &task_scale, &arch_loss);
    if (task_scale != 1.0)
        for (size_t i = 0; i < arch->count; i++)
            arch->grads[i] *= (float)task_scale;
    arch_expected_latency(arch, &c->cost, arch->grads, dlat);
    if (pinned_split(c) >= 0)
        memset(arch->grads + arch->beta, 0, (size_t)arch->split_count * sizeof(float));
    optim_adam_step(arch->params, arch->grads, arch->adam_m, arch->adam_v, arch->count,
                    (float)job->search_arch_lr, 0.9f, 0.999f, 1e-8f,
                    (float)job->search_arch_weight_decay, ++c->state.arch_steps);
    if (pinned_split(c) >= 0) /* weight decay must not move it either */
        arch_fix_split(arch, pinned_split(c));
    sums->val_loss += (double)vloss * c->B;
    sums->val_hits += correct;
    sums->val_images += c->B;
    sums->arch_loss += arch_loss * c->B;
}

static void log_epoch(FILE *log, struct search_ctx *c, float tau, int epoch);

/* Collective: averages the trainers' running statistics, sums the epoch figures into
 * state.epoch_sums, at an epoch's end writes its log line (to log on trainer 0) and starts the next
 * epoch's sums, and trainer 0 writes DIR/checkpoint.h5 (after the reset: a run resumed from an
 * epoch's end must not count that epoch's figures again). */
static int ctx_checkpoint(struct search_ctx *c, const char *out_dir,
                          struct search_epoch_sums *sums, int epoch_end, FILE *log,
                          float tau)
{
    dist_average(c->d, c->net->stats, c->net->stat_count);
    double all[SEARCH_EPOCH_SUMS], epoch[SEARCH_EPOCH_SUMS];
    sums_pack(all, sums);
    c->d->sum_doubles(c->d, all, SEARCH_EPOCH_SUMS);
    sums_pack(epoch, &c->state.epoch_sums);
    for (int i = 0; i < SEARCH_EPOCH_SUMS; i++)
        epoch[i] = epoch[i] + all[i];
    sums_unpack(&c->state.epoch_sums, epoch);
    memset(sums, 0, sizeof *sums);
    if (epoch_end) {
        log_epoch(log, c, tau, c->state.epoch);
        memset(&c->state.epoch_sums, 0, sizeof c->state.epoch_sums);
    }
    long failed = 0;
    if (c->d->rank == 0) {
        char path[JOB_PATH_MAX * 2];
        snprintf(path, sizeof path, "%s/checkpoint.h5", out_dir);
        failed = search_save_checkpoint(path, c->job, c->net, &c->arch, &c->state) != 0;
    }
    c->d->max_longs(c->d, &failed, 1);
    if (failed && c->d->rank != 0)
        offnas_error("trainer 0 could not write the checkpoint");
    return failed ? -1 : 0;
}

static void log_header(FILE *log, int splits)
{
    fprintf(log, "epoch,steps,tau,train_loss,train_acc,val_loss,val_acc,arch_loss,expected_ms,"
                 "device_ms,transfer_ms,edge_ms,argmax_split,argmax_split_kept,device_table,"
                 "edge_table");
    for (int s = 0; s < splits; s++)
        fprintf(log, ",p_split_%d", s);
    fputc('\n', log);
}

/* Opens DIR/log.csv: new with its header, or on resume the old one cut to the epochs the
 * checkpoint holds (a killed run may have logged epochs past its last checkpoint). */
static FILE *open_log(const char *out_dir, int splits, int resume, int epochs_done)
{
    char path[JOB_PATH_MAX * 2], tmp[JOB_PATH_MAX * 2 + 8];
    snprintf(path, sizeof path, "%s/log.csv", out_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *out = fopen(tmp, "w");
    if (!out) {
        offnas_error("%s: cannot write: %s", tmp, strerror(errno));
        return NULL;
    }
    FILE *old = resume ? fopen(path, "r") : NULL;
    char line[8192];
    if (old && fgets(line, sizeof line, old)) {
        fputs(line, out);
        while (fgets(line, sizeof line, old))
            if (atoi(line) >= 1 && atoi(line) <= epochs_done)
                fputs(line, out);
    } else {
        log_header(out, splits);
    }
    if (old)
        fclose(old);
    if (fflush(out) || rename(tmp, path)) {
        offnas_error("%s: cannot write: %s", path, strerror(errno));
        fclose(out);
        remove(tmp);
        return NULL;
    }
    return out;
}

static void log_epoch(FILE *log, struct search_ctx *c, float tau, int epoch)
{
    const struct search_epoch_sums *e = &c->state.epoch_sums;
    struct arch_latency t = arch_expected_latency(&c->arch, &c->cost, NULL, 0);
    int ops[NET_MAX_LAYERS], split, kept;
    float mask[NET_MAX_CHANNELS];
    arch_derive(&c->arch, ops, &split, mask, &kept);
    double p[ARCH_MAX_SPLITS];
    arch_split_probs(&c->arch, p);
    /* per-image means; no architecture steps (warm-up) log 0 */
    int val = e->val_images > 0;
    double tb = e->train_images > 0 ? e->train_images : 1, vb = val ? e->val_images : 1;
    double train_acc = e->train_images > 0 ? e->train_hits / e->train_images : 0.0;
    double val_acc = val ? e->val_hits / e->val_images : 0.0;
    if (log) {
        fprintf(log, "%d,%ld,%.4f,%.5f,%.5f,%.5f,%.5f,%.5f,%.5f,%.5f,%.5f,%.5f,%d,%d,%d,%d",
                epoch, c->state.step, tau, e->train_loss / tb, train_acc,
                val ? e->val_loss / vb : 0.0, val_acc, val ? e->arch_loss / vb : 0.0, t.total,
                t.device, t.transfer, t.edge, split, kept, c->tables[0].version,
                c->tables[1].version);
        for (int s = 0; s < c->arch.split_count; s++)
            fprintf(log, ",%.5f", p[s]);
        fputc('\n', log);
        fflush(log);
    }
    offnas_log("search: epoch %d: E[T] %.3f ms (device %.3f, transfer %.3f, edge %.3f), split %d "
               "with %d channels, train acc %.4f, val acc %.4f",
               epoch, t.total, t.device, t.transfer, t.edge, split, kept, train_acc, val_acc);
    /* the profilers measure what the trainers prefer now */
    struct dist_arch a = {.layers = c->net->layer_count, .split = split,
                          .kept = split >= 1 && split <= c->net->layer_count ? kept : 0};
    memcpy(a.ops, ops, sizeof(int) * (size_t)c->net->layer_count);
    c->d->send_arch(c->d, &a);
}

/* Takes up corrected tables from the profilers once every trainer holds them. */
static void poll_tables(struct search_ctx *c)
{
    for (int dev = 0; dev < 2; dev++) {
        if (!c->d->has_profiler(c->d, dev))
            continue;
        if (!c->d->poll_table(c->d, dev, &c->tables[dev]))
            continue;
        offnas_log("search: step %ld: %s table version %d from its profiler rank",
                   c->state.step, dev ? "edge" : "device", c->tables[dev].version);
        const struct latency_probe *p = &c->tables[dev].probe;
        if (!p->present)
            continue;
        offnas_log("search: step %ld: partition split %d with %d channels measured over TCP: "
                   "device %.3f, transfer %.3f, edge %.3f ms; predicted %.3f, %.3f, %.3f ms",
                   c->state.step, p->split, p->kept, p->measured[0], p->measured[1],
                   p->measured[2], p->predicted[0], p->predicted[1], p->predicted[2]);
        if (p->link_fitted && c->job->cluster_fit_link) {
            offnas_log("search: step %ld: link fitted from the transfers: %.3f Mbit/s, rtt %.3f "
                       "ms (was %.3f Mbit/s, %.3f ms)", c->state.step, p->bandwidth_mbps,
                       p->rtt_ms, c->cost.link.bandwidth_mbps, c->cost.link.rtt_ms);
            c->cost.link.bandwidth_mbps = c->state.link_bandwidth_mbps = p->bandwidth_mbps;
            c->cost.link.rtt_ms = c->state.link_rtt_ms = p->rtt_ms;
        }
    }
}

#define POLL_EVERY 10 /* steps between looks for corrected tables */

/* Trainer 0 saves the tables in use (DIR/lut_device.h5, lut_edge.h5) and opens DIR/log.csv
 * into *log. Returns 0 or -1 with an error. */
static int open_outputs(struct search_ctx *c, const char *out_dir, int resume, FILE **log)
{
    if (c->d->rank != 0)
        return 0;
    char path[JOB_PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/lut_device.h5", out_dir);
    OFFNAS_TRY(latency_save(&c->tables[0], path));
    snprintf(path, sizeof path, "%s/lut_edge.h5", out_dir);
    OFFNAS_TRY(latency_save(&c->tables[1], path));
    *log = open_log(out_dir, c->arch.split_count, resume, c->state.epoch);
    return *log ? 0 : -1;
}

static void log_start(const struct search_ctx *c, int resume)
{
    const struct job *job = c->job;
    const struct dist *d = c->d;
    struct arch_latency init = arch_expected_latency(&c->arch, &c->cost, NULL, 0);
    offnas_log("search: %ld train / %ld val images on %d trainer%s (%d shards, %d images per "
               "trainer per step), %d layers, supernet %zu parameters, link %s (%.2f Mbit/s, RTT "
               "%.0f ms), wire %s, E[T] %.3f ms (T_ref %.3f ms)%s",
               c->td.train_total, c->td.val_total, d->size, d->size > 1 ? "s" : "",
               c->td.train_shards.shards, c->B, c->net->layer_count, c->net->param_count,
               c->cost.link.name, c->cost.link.bandwidth_mbps, c->cost.link.rtt_ms,
               job->search_wire, init.total, c->state.t_ref_ms, resume ? ", resumed" : "");
    if (resume)
        offnas_log("search: resuming at step %ld of %ld (epoch %d)", c->state.step, c->total,
                   c->state.epoch + 1);
}

/* When this run started, for the progress line. */
struct search_progress {
    double t0, last_log;
    long start_step, end_step; /* end_step: the last step of this run (--until-epoch) */
};

/* Every train.log_seconds: the progress line after a step of epoch (0-based), with the mean
 * training loss of sums (the steps since the last checkpoint). */
static void log_progress(const struct search_ctx *c, struct search_progress *p, int epoch,
                         float tau, int searching, const struct search_epoch_sums *sums)
{
    const struct job *job = c->job;
    double t = offnas_now();
    if (t - p->last_log < job->train_log_seconds)
        return;
    /* a search step runs two batches (weights, then architecture) */
    long step = c->state.step, warm = c->per_epoch * job->search_warmup_epochs;
    double done_units = 0, left_units = 0;
    for (long s = p->start_step; s < p->end_step; s++)
        *(s < step ? &done_units : &left_units) += s < warm ? 1.0 : 2.0;
    double rate = done_units * job->train_batch / (t - p->t0);
    /* loss and accuracy of the training batches since the last checkpoint */
    offnas_log("epoch %d/%d step %ld/%ld loss %.4f acc %.3f E[T] %.3f ms tau %.2f %.0f img/s "
               "left %.0f s %s",
               epoch + 1, job->search_epochs, step, c->total,
               sums->train_images > 0 ? sums->train_loss / sums->train_images : 0.0,
               sums->train_images > 0 ? sums->train_hits / sums->train_images : 0.0,
               arch_expected_latency(&c->arch, &c->cost, NULL, 0).total, tau, rate,
               left_units * job->train_batch / rate, searching ? "(search)" : "(weights warm-up)");
    p->last_log = t;
}

/* One search step: the weight step, then the architecture step when searching; every
 * cluster.checksum_every steps a check that the trainers hold the same parameters (-1 when
 * they do not), every POLL_EVERY steps a look for corrected tables. */
static int search_step(struct search_ctx *c, float tau, int searching,
                       struct search_epoch_sums *sums)
{
    const struct job *job = c->job;
    weight_step(c, tau, sums);
    if (searching)
        arch_step(c, tau, sums);
    long step = ++c->state.step;
    if (job->cluster_checksum_every > 0 && step % job->cluster_checksum_every == 0 &&
        (dist_check_same(c->d, c->net->params, c->net->param_count, step) ||
         dist_check_same(c->d, c->arch.params, c->arch.count, step)))
        return -1;
    if (step % POLL_EVERY == 0)
        poll_tables(c);
    return 0;
}

/* After a step of epoch (0-based): at the epoch's end, on a stop signal, or every
 * cluster.checkpoint_every steps a checkpoint, and at the epoch's end its log line.
 * Collective. Returns 0 or -1 with an error. */
static int checkpoint_if_due(struct search_ctx *c, const char *out_dir, FILE *log,
                             struct search_epoch_sums *sums, float tau, int epoch, int stop)
{
    long step = c->state.step, every = c->job->cluster_checkpoint_every;
    int epoch_end = step % c->per_epoch == 0 || step == c->total;
    if (!epoch_end && !stop && !(every > 0 && step % every == 0))
        return 0;
    if (epoch_end)
        c->state.epoch = epoch + 1;
    return ctx_checkpoint(c, out_dir, sums, epoch_end, log, tau);
}

/* Every trainer states what it derived: equal on all of them, or the checksums would have
 * stopped the run. */
static void print_derived(const struct search_ctx *c)
{
    int ops[NET_MAX_LAYERS], split, kept;
    float mask[NET_MAX_CHANNELS];
    arch_derive(&c->arch, ops, &split, mask, &kept);
    char text[JOB_TEXT_MAX] = "", name[16];
    for (int l = 0; l < c->net->layer_count; l++) {
        strcat(text, l ? "," : "");
        strcat(text, op_spec_name(&c->net->layers[l].cand[ops[l]].spec, name));
    }
    printf("architecture (trainer %d of %d): ops %s split %d kept %d\n", c->d->rank, c->d->size,
           text, split, kept);
    fflush(stdout);
}

int search_run(const struct job *job, const char *out_dir, int resume, int until_epoch)
{
    struct search_ctx c;
    FILE *log = NULL;
    int rc = SEARCH_FAILED;
    /* before the data loads: a stop signal that comes while it does (a short time limit, a
     * preemption at start) still ends in a checkpoint after the first step, not in death */
    dist_catch_stop_signals();
    if (ctx_open(&c, job, out_dir, resume))
        goto done;
    if (open_outputs(&c, out_dir, resume, &log))
        goto done;
    log_start(&c, resume);
    long end_step = until_epoch > 0 && c.per_epoch * until_epoch < c.total
                        ? c.per_epoch * until_epoch : c.total;
    struct search_progress progress = {offnas_now(), 0, c.state.step, end_step};
    progress.last_log = progress.t0;
    struct search_epoch_sums sums = {0};
    while (c.state.step < c.total) {
        int epoch = (int)(c.state.step / c.per_epoch);
        int searching = ctx_searching(&c);
        float tau = searching ? ctx_tau(&c) : (float)job->search_tau_start;
        if (search_step(&c, tau, searching, &sums))
            goto done;
        int stop = dist_should_stop(c.d);
        if (checkpoint_if_due(&c, out_dir, log, &sums, tau, epoch, stop))
            goto done;
        if (stop) {
            offnas_log("search: signal %d: stopped at step %ld with a checkpoint in %s; continue "
                       "with: offnas search --resume --out %s",
                       dist_stop_signal(), c.state.step, out_dir, out_dir);
            rc = SEARCH_STOPPED;
            goto done;
        }
        log_progress(&c, &progress, epoch, tau, searching, &sums);
        if (end_step < c.total && c.state.step == end_step) {
            offnas_log("search: stopped after epoch %d of %d as asked, with a checkpoint in %s; "
                       "continue with: offnas search --resume --out %s",
                       until_epoch, job->search_epochs, out_dir, out_dir);
            rc = SEARCH_PAUSED;
            goto done;
        }
    }
    print_derived(&c);
    rc = SEARCH_DONE;
done:
    /* after a failure on several ranks the caller ends them all (MPI_Abort): no collective */
    if (rc != SEARCH_FAILED || c.d->size == 1)
        c.d->finish(c.d);
    if (log)
        fclose(log);
    ctx_close(&c);
    return rc;
}

/* The fixed network of the ops net->choice holds (a sampled path), with its momentum. */
struct bench_fixed {
    struct net *net;
    float *mom;
    int ops[NET_MAX_LAYERS];
};

static void bench_fixed_free(struct bench_fixed *f)
{
    net_free(f->net);
    free(f->mom);
    f->net = NULL;
    f->mom = NULL;
}

/* Milliseconds of one training step of the fixed network of the supernet's current path on
 * the weight step's batch (one process: no allreduce), after one untimed step; the network is
 * built again only when the path changed. */
static double bench_fixed_step(struct search_ctx *c, struct bench_fixed *f)
{
    const struct net *sn = c->net;
    if (!f->net || memcmp(f->ops, sn->choice, (size_t)sn->layer_count * sizeof(int))) {
        bench_fixed_free(f);
        struct net_desc desc = c->job->net;
        for (int l = 0; l < sn->layer_count; l++) {
            desc.fixed_ops[l] = sn->layers[l].cand[sn->choice[l]].spec;
            f->ops[l] = sn->choice[l];
        }
        f->net = net_create(&desc, c->B, c->job->data_resize, c->td.train.channels,
                            c->td.train.classes, 1, (uint64_t)c->job->search_seed);
        OFFNAS_ASSERT(f->net); /* the supernet of the same shapes was built */
        f->net->bn_groups = sn->bn_groups;
        f->mom = offnas_calloc(f->net->param_count, sizeof(float));
    }
    struct train_hparams hp = {0.01f, (float)c->job->train_momentum, 0.0f, 0.0f};
    train_step(f->net, f->mom, c->tb.x, c->tb.labels, c->B, &hp, NULL, NULL);
    double t = offnas_now();
    train_step(f->net, f->mom, c->tb.x, c->tb.labels, c->B, &hp, NULL, NULL);
    return 1e3 * (offnas_now() - t);
}

int search_bench(const struct job *job, int warmup, int steps, struct search_bench *out)
{
    memset(out, 0, sizeof *out);
    struct search_ctx c;
    if (ctx_open(&c, job, NULL, 0)) {
        ctx_close(&c);
        return -1;
    }
    struct dist *d = c.d;
    enum { STEP, WEIGHT, ARCH, FIXED, SEARCH_OVER_FIXED, WEIGHT_OVER_FIXED, SERIES };
    double *ms = offnas_calloc((size_t)steps * SERIES, sizeof(double));
    struct bench_fixed fixed = {0};
    struct search_epoch_sums sums = {0};
    double wait = 0, timed_ms = 0;
    long bytes0 = 0, messages0 = 0;
    for (int i = 0; i < warmup + steps; i++) {
        if (i == warmup) {
            wait = d->wait_seconds;
            bytes0 = d->reduced_bytes;
            messages0 = d->reduced_messages;
        }
        double t0 = offnas_now();
        weight_step(&c, 1.0f, &sums);
        double t1 = offnas_now();
        int path[NET_MAX_LAYERS];
        memcpy(path, c.net->choice, sizeof path);
        arch_step(&c, 1.0f, &sums);
        double t2 = offnas_now();
        c.state.step = (c.state.step + 1) % c.per_epoch;
        if (i < warmup)
            continue;
        double *row = ms + (size_t)(i - warmup) * SERIES;
        row[STEP] = 1e3 * (t2 - t0);
        row[WEIGHT] = 1e3 * (t1 - t0);
        row[ARCH] = 1e3 * (t2 - t1);
        timed_ms += row[STEP];
        memcpy(c.net->choice, path, sizeof path); /* the weight step's path, as a fixed net */
        row[FIXED] = bench_fixed_step(&c, &fixed);
        row[SEARCH_OVER_FIXED] = row[STEP] / row[FIXED];
        row[WEIGHT_OVER_FIXED] = row[WEIGHT] / row[FIXED];
    }
    /* medians over the steps, then means over the trainers */
    double v[SERIES + 1], *col = offnas_calloc((size_t)steps, sizeof(double));
    for (int k = 0; k < SERIES; k++) {
        for (int i = 0; i < steps; i++)
            col[i] = ms[(size_t)i * SERIES + k];
        v[k] = timing_of_samples(col, steps).median;
    }
    free(col);
    v[SERIES] = (d->wait_seconds - wait) * 1e3 / timed_ms;
    d->sum_doubles(d, v, SERIES + 1);
    for (int k = 0; k <= SERIES; k++)
        v[k] /= d->size;
    out->trainers = d->size;
    out->step_ms = v[STEP];
    out->weight_step_ms = v[WEIGHT];
    out->arch_step_ms = v[ARCH];
    out->fixed_step_ms = v[FIXED];
    out->search_over_fixed = v[SEARCH_OVER_FIXED];
    out->weight_over_fixed = v[WEIGHT_OVER_FIXED];
    out->wait_share = v[SERIES];
    out->images_per_second = 2.0 * job->train_batch / (out->step_ms / 1e3);
    out->reduced_bytes_per_step = (d->reduced_bytes - bytes0) / (steps > 0 ? steps : 1);
    out->reduced_messages_per_step = (double)(d->reduced_messages - messages0) / (steps > 0 ? steps : 1);
    bench_fixed_free(&fixed);
    free(ms);
    d->finish(d);
    ctx_close(&c);
    return 0;
}
