/* search: the alternating weight / architecture optimisation (see search.h). */
#define _POSIX_C_SOURCE 200809L
#include "search.h"

#include "common.h"
#include "h5.h"
#include "op.h"
#include "optim.h"
#include "train.h"

#include <errno.h>
#include <math.h>
#include <string.h>

static int load_or_measure(struct latency_table *table, const char *path, const char *device,
                           const struct job *job, const struct net *net, const char *out_dir)
{
    if (path[0])
        return latency_load(table, path, net);
    offnas_log("search: no profile for the %s in the job: measuring this machine", device);
    struct net *probe = net_create(job, 1, net->side, net->in_channels, net->classes, 0,
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
    OFFNAS_TRY(load_or_measure(device, job->latency_device, "device", job, net, out_dir));
    OFFNAS_TRY(load_or_measure(edge, job->latency_edge, "edge", job, net, out_dir));
    cost->device = device;
    cost->edge = edge;
    cost->device_scale = job->latency_device_scale;
    cost->edge_scale = job->latency_edge_scale;
    OFFNAS_TRY(latency_link_from_job(&cost->link, job));
    cost->wire_bytes = latency_wire_bytes(job->search_wire);
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
    *loss = ce + job->search_lambda * (expected_ms - t_ref_ms) / t_ref_ms;
    return job->search_lambda / t_ref_ms;
}

/* ---- checkpoints ------------------------------------------------------------------------ */

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
             h5_attr_set_int(f, "version", 1);
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

int search_load_checkpoint(const char *path, struct net *net, struct arch *arch,
                           struct search_state *state)
{
    hid_t f = h5_open_read(path);
    if (f < 0)
        return -1;
    int64_t step = 0, epoch = 0, arch_steps = 0;
    double t_ref = 0;
    int rc = read_exact(f, path, "weights/params", net->params, net->param_count) ||
             read_exact(f, path, "weights/running_stats", net->stats, net->stat_count) ||
             (state->momentum &&
              read_exact(f, path, "weights/momentum", state->momentum, net->param_count)) ||
             read_exact(f, path, "arch/params", arch->params, arch->count) ||
             read_exact(f, path, "arch/adam_m", arch->adam_m, arch->count) ||
             read_exact(f, path, "arch/adam_v", arch->adam_v, arch->count) ||
             h5_attr_get_int(f, "step", &step) || h5_attr_get_int(f, "epoch", &epoch) ||
             h5_attr_get_int(f, "arch_steps", &arch_steps) ||
             h5_attr_get_double(f, "t_ref_ms", &t_ref);
    h5_close(f);
    if (rc)
        return -1;
    state->step = step;
    state->epoch = (int)epoch;
    state->arch_steps = arch_steps;
    state->t_ref_ms = t_ref;
    return 0;
}

/* ---- the search loop -------------------------------------------------------------------- */

static void log_header(FILE *log, int splits)
{
    fprintf(log, "epoch,steps,tau,train_loss,train_acc,val_loss,val_acc,arch_loss,expected_ms,"
                 "device_ms,transfer_ms,edge_ms,argmax_split,argmax_split_kept,device_table,"
                 "edge_table");
    for (int s = 0; s < splits; s++)
        fprintf(log, ",p_split_%d", s);
    fputc('\n', log);
}

int search_run(const struct job *job, const char *out_dir)
{
    op_set_threads(job->search_deterministic ? 1 : job->train_threads);
    OFFNAS_TRY(train_mkdirs(out_dir));
    struct train_data td;
    OFFNAS_TRY(train_data_load(&td, job));
    int side = job->data_resize, B = job->train_batch;
    int rc = -1;
    struct net *net = net_create(job, B, side, td.train.channels, td.train.classes, 0,
                                 (uint64_t)job->search_seed);
    struct latency_table *tables = offnas_calloc(2, sizeof *tables);
    struct arch arch = {0};
    struct arch_cost cost;
    float *mom = NULL;
    FILE *log = NULL;
    struct train_batch tb = {0}, vb = {0};
    if (!net || search_costs(&tables[0], &tables[1], &cost, job, net, out_dir))
        goto done;
    char path[JOB_PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/lut_device.h5", out_dir);
    if (latency_save(&tables[0], path))
        goto done;
    snprintf(path, sizeof path, "%s/lut_edge.h5", out_dir);
    if (latency_save(&tables[1], path))
        goto done;

    arch_init(&arch, net, 2.0f);
    mom = offnas_calloc(net->param_count, sizeof(float));
    struct search_state state = {0, 0, mom, 0, job->search_t_ref_ms};
    struct arch_latency init = arch_expected_latency(&arch, &cost, NULL, 0);
    if (state.t_ref_ms <= 0)
        state.t_ref_ms = init.total;
    int L = net->layer_count;
    offnas_log("search: %ld train / %ld val images, %d layers, supernet %zu parameters, link %s "
               "(%.2f Mbit/s, RTT %.0f ms), wire %s, E[T] at start %.3f ms (T_ref %.3f ms)",
               td.train.count, td.val.count, L, net->param_count, cost.link.name,
               cost.link.bandwidth_mbps, cost.link.rtt_ms, job->search_wire, init.total,
               state.t_ref_ms);

    snprintf(path, sizeof path, "%s/log.csv", out_dir);
    log = fopen(path, "w");
    if (!log) {
        offnas_error("%s: cannot write: %s", path, strerror(errno));
        goto done;
    }
    log_header(log, arch.split_count);

    train_batch_init(&tb, B, side, td.train.channels, td.train.count);
    train_batch_init(&vb, B, side, td.val.channels, td.val.count);
    struct rng rng;
    rng_seed(&rng, (uint64_t)job->search_seed, 0x736561726368ULL);
    long per_epoch = td.train.count / B, val_batches = td.val.count / B;
    if (per_epoch == 0 || val_batches == 0) {
        offnas_error("train.batch: %d is larger than the training (%ld) or validation (%ld) split",
                     B, td.train.count, td.val.count);
        goto done;
    }
    long total = per_epoch * job->search_epochs;
    if (job->train_steps > 0 && job->train_steps < total)
        total = job->train_steps;
    long arch_total = per_epoch * (job->search_epochs - job->search_warmup_epochs);
    double t0 = offnas_now(), last_log = t0;
    long val_pos = val_batches; /* reshuffle at first use */
    struct arch_sample sample;
    for (int epoch = 0; epoch < job->search_epochs && state.step < total; epoch++) {
        rng_shuffle(&rng, tb.order, tb.order_count);
        double tl = 0, vl = 0, al = 0;
        long th = 0, vh = 0, tn = 0, vn = 0;
        int searching = epoch >= job->search_warmup_epochs;
        float tau = (float)job->search_tau_start;
        for (long s = 0; s < per_epoch && state.step < total; s++, state.step++) {
            if (searching && arch_total > 1) {
                double progress = (double)state.arch_steps / (double)(arch_total - 1);
                tau = (float)(job->search_tau_start *
                              pow(job->search_tau_end / job->search_tau_start,
                                  progress > 1 ? 1 : progress));
            }
            /* weights: train batch, sampled architecture, SGD */
            arch_sample(&sample, &arch, tau, &rng);
            arch_apply(&sample, net);
            train_batch_fill(&tb, &td.train, s * B, B, job->train_flip, &rng);
            net_zero_grads(net);
            net->want_gate_grad = 0;
            net_forward(net, tb.x, B, 1);
            int correct = 0;
            float loss = op_softmax_xent_forward(net->probs, &correct, net->logits, tb.labels, B,
                                                 net->classes, 0.0f);
            op_softmax_xent_backward(net->probs, net->probs, tb.labels, B, net->classes, 0.0f);
            net_backward(net, net->probs, B);
            float lr = (float)optim_cosine_lr(job->train_lr, state.step, total, 0);
            train_sgd_step(net, mom, lr, (float)job->train_momentum,
                           (float)job->train_weight_decay);
            tl += loss;
            th += correct;
            tn += B;
            double t = offnas_now();
            if (t - last_log >= job->train_log_seconds) {
                /* a search step runs two batches (weights, then architecture) */
                long warm = per_epoch * job->search_warmup_epochs, done = state.step + 1;
                double units_done = done <= warm ? done : warm + 2.0 * (done - warm);
                double units_total = total <= warm ? total : warm + 2.0 * (total - warm);
                double rate = units_done * B / (t - t0);
                offnas_log("epoch %d/%d step %ld/%ld loss %.4f acc %.4f E[T] %.3f ms tau %.2f "
                           "%.0f img/s left %.0f s %s",
                           epoch + 1, job->search_epochs, done, total, tl / (tn / B),
                           (double)th / tn, arch_expected_latency(&arch, &cost, NULL, 0).total,
                           tau, rate, (units_total - units_done) * B / rate,
                           searching ? "(search)" : "(weights warm-up)");
                last_log = t;
            }
            if (!searching)
                continue;
            /* architecture: validation batch, sampled architecture, Adam on alpha beta gamma */
            if (val_pos >= val_batches) {
                rng_shuffle(&rng, vb.order, vb.order_count);
                val_pos = 0;
            }
            arch_sample(&sample, &arch, tau, &rng);
            arch_apply(&sample, net);
            train_batch_fill(&vb, &td.val, val_pos++ * B, B, 0, &rng);
            net_zero_grads(net);
            memset(arch.grads, 0, arch.count * sizeof(float));
            net->want_gate_grad = 1;
            net_forward(net, vb.x, B, 1);
            float vloss = op_softmax_xent_forward(net->probs, &correct, net->logits, vb.labels, B,
                                                  net->classes, 0.0f);
            op_softmax_xent_backward(net->probs, net->probs, vb.labels, B, net->classes, 0.0f);
            net_backward(net, net->probs, B);
            arch_task_gradients(&arch, &sample, net);
            struct arch_latency now = arch_expected_latency(&arch, &cost, NULL, 0);
            double task_scale, arch_loss;
            double dlat = search_latency_loss(job, vloss, now.total, state.t_ref_ms, &task_scale,
                                              &arch_loss);
            if (task_scale != 1.0)
                for (size_t i = 0; i < arch.count; i++)
                    arch.grads[i] *= (float)task_scale;
            arch_expected_latency(&arch, &cost, arch.grads, dlat);
            optim_adam_step(arch.params, arch.grads, arch.adam_m, arch.adam_v, arch.count,
                            (float)job->search_arch_lr, 0.9f, 0.999f, 1e-8f,
                            (float)job->search_arch_weight_decay, ++state.arch_steps);
            vl += vloss;
            vh += correct;
            vn += B;
            al += arch_loss;
        }
        if (tn == 0)
            break;
        struct arch_latency e = arch_expected_latency(&arch, &cost, NULL, 0);
        int ops[JOB_MAX_LAYERS], split, kept;
        float mask[1024];
        arch_derive(&arch, ops, &split, mask, &kept);
        double p[ARCH_MAX_SPLITS];
        arch_split_probs(&arch, p);
        fprintf(log, "%d,%ld,%.4f,%.5f,%.5f,%.5f,%.5f,%.5f,%.5f,%.5f,%.5f,%.5f,%d,%d,%d,%d",
                epoch + 1, state.step, tau, tl / (tn / B), (double)th / tn,
                vn ? vl / (vn / B) : 0.0, vn ? (double)vh / vn : 0.0, vn ? al / (vn / B) : 0.0,
                e.total, e.device, e.transfer, e.edge, split, kept, tables[0].version,
                tables[1].version);
        for (int s = 0; s < arch.split_count; s++)
            fprintf(log, ",%.5f", p[s]);
        fputc('\n', log);
        fflush(log);
        state.epoch = epoch + 1;
        snprintf(path, sizeof path, "%s/checkpoint.h5", out_dir);
        if (search_save_checkpoint(path, job, net, &arch, &state))
            goto done;
        offnas_log("search: epoch %d: E[T] %.3f ms (device %.3f, transfer %.3f, edge %.3f), split "
                   "%d with %d channels, train acc %.4f, val acc %.4f",
                   epoch + 1, e.total, e.device, e.transfer, e.edge, split, kept,
                   (double)th / tn, vn ? (double)vh / vn : 0.0);
    }
    rc = 0;
done:
    if (log)
        fclose(log);
    train_batch_free(&tb);
    train_batch_free(&vb);
    free(mom);
    arch_free(&arch);
    free(tables);
    net_free(net);
    train_data_free(&td);
    return rc;
}
