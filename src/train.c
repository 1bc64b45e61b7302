/* train: data for a job, SGD over the used ops, evaluation, and fixed-network training. */
#define _POSIX_C_SOURCE 200809L
#include "train.h"

#include "common.h"
#include "dist.h"
#include "h5.h"
#include "op.h"
#include "optim.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Fashion-MNIST pixel statistics (the peer's normalisation). */
#define DATA_MEAN 0.2860f
#define DATA_STD 0.3530f

int train_shard_count(const struct job *job, int trainers)
{
    return job->data_shards > 0 ? job->data_shards : trainers;
}

/* Cuts the rows listed in rows[0..n) (file order) into S shards, takes this trainer's
 * [first, first+owned) by reading the file rows they span (one hyperslab) and keeping those
 * whose is_val mark equals want. */
static int load_shards(struct dataset *ds, struct train_shards *sh, const struct job *job,
                       const long *rows, long n, const unsigned char *is_val, unsigned char want,
                       int per_shard, uint64_t seed)
{
    int S = sh->shards;
    long a = (long)((int64_t)sh->first * n / S), b = (long)((int64_t)(sh->first + sh->owned) * n / S);
    sh->per_shard = per_shard;
    sh->seed = seed;
    sh->perm_pass = -1;
    /* the smallest of all S shards (n/S rows, rounded down), not of this trainer's: every
     * trainer must run the same number of steps */
    sh->steps = per_shard > 0 ? (n / S) / per_shard : 0;
    for (int j = 0; j < sh->owned; j++) {
        int k = sh->first + j;
        long lo = (long)((int64_t)k * n / S), hi = (long)((int64_t)(k + 1) * n / S);
        sh->offset[j] = lo - a;
        sh->size[j] = hi - lo;
    }
    memset(ds, 0, sizeof *ds);
    if (b > a) {
        struct dataset span;
        OFFNAS_TRY(data_load(&span, job->data_path, "train", rows[a], rows[b - 1] - rows[a] + 1));
        data_select(ds, &span, is_val + rows[a], want);
        data_free(&span);
        OFFNAS_ASSERT(ds->count == b - a);
    }
    sh->perm = offnas_malloc((size_t)(b > a ? b - a : 1) * sizeof(long));
    return 0;
}

int train_data_load(struct train_data *td, const struct job *job, const struct dist *d)
{
    memset(td, 0, sizeof *td);
    int T = d ? d->size : 1, t = d ? d->rank : 0;
    int S = train_shard_count(job, T);
    if (S % T || S / T > NET_MAX_BN_GROUPS)
        return offnas_error("data.shards: %d shards cannot be shared by %d trainer ranks (need a "
                            "multiple of the trainers, at most %d per trainer)",
                            S, T, NET_MAX_BN_GROUPS);
    if (job->train_batch % S)
        return offnas_error("train.batch: the global batch %d does not divide into %d data "
                            "shards (one per trainer unless data.shards says otherwise)",
                            job->train_batch, S);
    long N;
    OFFNAS_TRY(data_rows(job->data_path, "train", &N));
    if (job->data_train_limit > 0 && job->data_train_limit < N)
        N = job->data_train_limit;
    if (job->data_val_size >= N)
        return offnas_error("data.val_size: %d validation images leave none of the %ld training "
                            "images of %s", job->data_val_size, N, job->data_path);
    unsigned char *is_val = data_validation_mask(N, job->data_val_size, (uint64_t)job->data_seed);
    if (!is_val)
        return -1;
    long *rows = offnas_malloc((size_t)N * sizeof(long));
    long nt = 0, nv = 0;
    for (long i = 0; i < N; i++)
        if (!is_val[i])
            rows[nt++] = i;
    for (long i = 0; i < N; i++)
        if (is_val[i])
            rows[nt + nv++] = i;
    struct train_shards base = {.shards = S, .first = t * (S / T), .owned = S / T};
    td->train_shards = td->val_shards = base;
    td->train_total = nt;
    td->val_total = nv;
    int per = job->train_batch / S;
    int rc = load_shards(&td->train, &td->train_shards, job, rows, nt, is_val, 0, per,
                         (uint64_t)job->data_seed * 2 + 1);
    if (!rc)
        rc = load_shards(&td->val, &td->val_shards, job, rows + nt, nv, is_val, 1, per,
                         (uint64_t)job->data_seed * 2 + 2);
    free(rows);
    free(is_val);
    long M = 0;
    if (!rc)
        rc = data_rows(job->data_path, "test", &M);
    if (!rc) {
        if (job->data_test_limit > 0 && job->data_test_limit < M)
            M = job->data_test_limit;
        td->test_total = M;
        long lo = (long)((int64_t)t * M / T), hi = (long)((int64_t)(t + 1) * M / T);
        if (hi > lo)
            rc = data_load(&td->test, job->data_path, "test", lo, hi - lo);
    }
    if (rc) {
        train_data_free(td);
        return -1;
    }
    return 0;
}

void train_data_free(struct train_data *td)
{
    data_free(&td->train);
    data_free(&td->val);
    data_free(&td->test);
    free(td->train_shards.perm);
    free(td->val_shards.perm);
    memset(td, 0, sizeof *td);
}

void train_batch_init(struct train_batch *tb, int batch, int side, int channels, long count)
{
    tb->batch = batch;
    tb->side = side;
    tb->channels = channels;
    tb->x = offnas_malloc((size_t)batch * side * side * channels * sizeof(float));
    tb->labels = offnas_malloc((size_t)batch);
    tb->flip = offnas_calloc((size_t)batch, 1);
    tb->order_count = count;
    tb->order = offnas_malloc((size_t)(count > 0 ? count : 1) * sizeof(long));
    for (long i = 0; i < count; i++)
        tb->order[i] = i;
}

void train_batch_free(struct train_batch *tb)
{
    free(tb->x);
    free(tb->labels);
    free(tb->flip);
    free(tb->order);
    memset(tb, 0, sizeof *tb);
}

void train_batch_fill(struct train_batch *tb, const struct dataset *ds, long start, int B, int flip,
                      struct rng *rng)
{
    for (int i = 0; i < B; i++)
        tb->flip[i] = flip ? (unsigned char)(rng_next(rng) >> 63) : 0;
    data_batch(tb->x, tb->labels, ds, tb->order + start, B, tb->side, DATA_MEAN, DATA_STD,
               flip ? tb->flip : NULL);
}

void train_shards_fill(struct train_shards *sh, struct train_batch *tb, const struct dataset *ds,
                       long pass, long step, int flip)
{
    if (sh->perm_pass != pass) {
        for (int j = 0; j < sh->owned; j++) {
            long *p = sh->perm + sh->offset[j];
            for (long i = 0; i < sh->size[j]; i++)
                p[i] = sh->offset[j] + i;
            struct rng rng;
            rng_seed(&rng, sh->seed, (uint64_t)pass * 1000003u + (uint64_t)(sh->first + j));
            rng_shuffle(&rng, p, sh->size[j]);
        }
        sh->perm_pass = pass;
    }
    int b = sh->per_shard;
    OFFNAS_ASSERT(step < sh->steps && sh->owned * b <= tb->batch && tb->order_count >= tb->batch);
    for (int j = 0; j < sh->owned; j++) {
        memcpy(tb->order + (size_t)j * b, sh->perm + sh->offset[j] + step * b,
               (size_t)b * sizeof(long));
        struct rng rng;
        rng_seed(&rng, sh->seed ^ 0x666c6970ULL,
                 ((uint64_t)pass * 1000003u + (uint64_t)step) * 4099u + (uint64_t)(sh->first + j));
        for (int i = 0; i < b; i++)
            tb->flip[j * b + i] = flip ? (unsigned char)(rng_next(&rng) >> 63) : 0;
    }
    int B = sh->owned * b;
    data_batch(tb->x, tb->labels, ds, tb->order, B, tb->side, DATA_MEAN, DATA_STD,
               flip ? tb->flip : NULL);
}

struct sgd_args {
    struct net *net;
    float *mom;
    float lr, momentum, weight_decay;
};

static void sgd_range(size_t offset, size_t count, void *ctx)
{
    struct sgd_args *a = ctx;
    optim_sgd_step(a->net->params + offset, a->net->grads + offset, a->mom + offset, NULL, count,
                   a->lr, a->momentum, a->weight_decay);
}

void train_sgd_step(struct net *net, float *mom, float lr, float momentum, float weight_decay)
{
    struct sgd_args a = {net, mom, lr, momentum, weight_decay};
    net_for_each_used_range(net, sgd_range, &a);
}

void train_evaluate(struct net *net, const struct dataset *ds, int side, double *accuracy,
                    double *loss)
{
    struct train_batch tb;
    train_batch_init(&tb, net->batch, side, ds->channels, ds->count);
    long hits = 0;
    double total = 0.0;
    for (long start = 0; start < ds->count; start += net->batch) {
        int B = (int)(ds->count - start < net->batch ? ds->count - start : net->batch);
        train_batch_fill(&tb, ds, start, B, 0, NULL);
        net_forward(net, tb.x, B, 0);
        int correct = 0;
        total += (double)op_softmax_xent_forward(net->probs, &correct, net->logits, tb.labels, B,
                                                 net->classes, 0.0f) * B;
        hits += correct;
    }
    train_batch_free(&tb);
    *accuracy = ds->count ? (double)hits / (double)ds->count : 0.0;
    if (loss)
        *loss = ds->count ? total / (double)ds->count : 0.0;
}

void train_evaluate_all(struct net *net, const struct dataset *ds, int side, struct dist *d,
                        double *accuracy, double *loss)
{
    double acc, l;
    train_evaluate(net, ds, side, &acc, &l);
    double v[3] = {acc * (double)ds->count, l * (double)ds->count, (double)ds->count};
    d->sum_doubles(d, v, 3);
    *accuracy = v[2] > 0 ? v[0] / v[2] : 0.0;
    if (loss)
        *loss = v[2] > 0 ? v[1] / v[2] : 0.0;
}

int train_mkdirs(const char *path)
{
    char buf[JOB_PATH_MAX * 2];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return offnas_error("%s: path too long", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(buf, 0755) && errno != EEXIST)
            return offnas_error("%s: cannot create directory: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) && errno != EEXIST)
        return offnas_error("%s: cannot create directory: %s", buf, strerror(errno));
    return 0;
}

int train_save_model(const struct net *net, const struct job *job, const char *path)
{
    char tmp[H5_PATH_MAX];
    hid_t f = h5_create_tmp(path, tmp, sizeof tmp);
    if (f < 0)
        return -1;
    char *text = job_to_string(job);
    char ops[NET_MAX_LAYERS * 8] = "", name[16];
    for (int l = 0; l < net->layer_count; l++) {
        strcat(ops, l ? "," : "");
        strcat(ops, op_spec_name(&net->layers[l].cand[net->choice[l]].spec, name));
    }
    hsize_t np = net->param_count, ns = net->stat_count;
    int rc = h5_write(f, "params", H5_F32, 1, &np, net->params, 0) ||
             h5_write(f, "running_stats", H5_F32, 1, &ns, net->stats, 0) ||
             h5_attr_set_string(f, "job", text) || h5_attr_set_string(f, "ops", ops) ||
             h5_attr_set_int(f, "input_side", net->side) ||
             h5_attr_set_int(f, "classes", net->classes) ||
             h5_attr_set_int(f, "parameters", (int64_t)net_param_count_chosen(net)) ||
             h5_attr_set_int(f, "mask_layer", net->mask_layer);
    if (!rc && net->mask_layer >= 0) {
        hsize_t nc = (hsize_t)net->layers[net->mask_layer].cout;
        rc = h5_write(f, "mask", H5_F32, 1, &nc, net->mask, 0);
    }
    free(text);
    if (rc) {
        h5_abort(f, tmp);
        return -1;
    }
    return h5_commit(f, tmp, path);
}

int train_load_model(struct net *net, const char *path)
{
    hid_t f = h5_open_read(path);
    if (f < 0)
        return -1;
    hsize_t dims[1];
    int64_t mask_layer = -1;
    int rc = h5_shape(f, "params", H5_F32, 1, dims);
    if (!rc && dims[0] != net->param_count)
        rc = offnas_error("%s: /params has %llu values, the job's network has %zu", path,
                          (unsigned long long)dims[0], net->param_count);
    if (!rc)
        rc = h5_read_rows(f, "params", H5_F32, 1, 0, net->param_count, net->params);
    if (!rc)
        rc = h5_shape(f, "running_stats", H5_F32, 1, dims);
    if (!rc && dims[0] != net->stat_count)
        rc = offnas_error("%s: /running_stats has %llu values, the job's network has %zu", path,
                          (unsigned long long)dims[0], net->stat_count);
    if (!rc)
        rc = h5_read_rows(f, "running_stats", H5_F32, 1, 0, net->stat_count, net->stats);
    if (!rc)
        rc = h5_attr_get_int(f, "mask_layer", &mask_layer);
    if (!rc && mask_layer >= net->layer_count)
        rc = offnas_error("%s: mask_layer %lld is not a layer of the network", path,
                          (long long)mask_layer);
    if (!rc && mask_layer >= 0) {
        rc = h5_shape(f, "mask", H5_F32, 1, dims);
        if (!rc && dims[0] != (hsize_t)net->layers[mask_layer].cout)
            rc = offnas_error("%s: /mask has %llu values, layer %lld has %d channels", path,
                              (unsigned long long)dims[0], (long long)mask_layer + 1,
                              net->layers[mask_layer].cout);
        if (!rc)
            rc = h5_read_rows(f, "mask", H5_F32, 1, 0, dims[0], net->mask);
    }
    h5_close(f);
    if (!rc)
        net->mask_layer = (int)mask_layer;
    return rc;
}

static void format_duration(char *buf, size_t size, double seconds)
{
    long s = (long)(seconds + 0.5);
    if (s >= 3600)
        snprintf(buf, size, "%ldh%02ldm", s / 3600, (s / 60) % 60);
    else
        snprintf(buf, size, "%ldm%02lds", s / 60, s % 60);
}

int train_write_json(const json_t *root, const char *path)
{
    char tmp[JOB_PATH_MAX * 2 + 32];
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    int rc = json_dump_file(root, tmp, JSON_INDENT(2) | JSON_REAL_PRECISION(15));
    if (rc || rename(tmp, path)) {
        remove(tmp);
        return offnas_error("%s: cannot write: %s", path, strerror(errno));
    }
    return 0;
}

static int write_summary(const char *path, const struct job *job, const struct train_result *r)
{
    json_t *root = json_object();
    json_object_set_new(root, "test_accuracy", json_real(r->test_accuracy));
    json_object_set_new(root, "val_accuracy", json_real(r->val_accuracy));
    json_object_set_new(root, "final_train_loss", json_real(r->final_loss));
    json_object_set_new(root, "train_seconds", json_real(r->train_seconds));
    json_object_set_new(root, "images_per_second", json_real(r->images_per_second));
    json_object_set_new(root, "parameters", json_integer((json_int_t)r->parameters));
    json_object_set_new(root, "macs", json_integer((json_int_t)r->macs));
    json_object_set_new(root, "steps", json_integer(r->steps));
    json_object_set_new(root, "epochs", json_integer(job->train_epochs));
    json_object_set_new(root, "batch", json_integer(job->train_batch));
    json_object_set_new(root, "threads", json_integer(op_get_threads()));
    json_object_set_new(root, "input_side", json_integer(job->data_resize));
    json_object_set_new(root, "ops", json_string(job->net_ops));
    json_object_set_new(root, "layers", json_string(job->net_layers));
    int rc = train_write_json(root, path);
    json_decref(root);
    return rc;
}

int train_fixed(const struct job *job, const struct train_split *split, const char *out_dir,
                struct train_result *result)
{
    memset(result, 0, sizeof *result);
    struct dist *d = dist_get();
    op_set_threads(job->train_deterministic ? 1 : job->train_threads);
    if (d->rank == 0)
        OFFNAS_TRY(train_mkdirs(out_dir));
    struct train_data td;
    OFFNAS_TRY(train_data_load(&td, job, d));
    struct train_shards *sh = &td.train_shards;
    int side = job->data_resize, B = sh->owned * sh->per_shard;
    struct net *net = net_create(&job->net, B, side, td.train.channels, td.train.classes, 1,
                                 (uint64_t)job->train_seed);
    if (!net) {
        train_data_free(&td);
        return -1;
    }
    net->bn_groups = sh->owned;
    net->grad_ready = dist_grad_ready;
    net->grad_ready_ctx = d;
    d->bucket_floats = (size_t)job->cluster_bucket_kb * 1024 / sizeof(float);
    if (split && split->split >= 1 && split->split <= net->layer_count) {
        net->mask_layer = split->split - 1;
        memcpy(net->mask, split->mask, (size_t)net->layers[split->split - 1].cout * sizeof(float));
    }
    char path[JOB_PATH_MAX * 2];
    FILE *log = NULL;
    if (d->rank == 0) {
        snprintf(path, sizeof path, "%s/log.csv", out_dir);
        log = fopen(path, "w");
        if (!log) {
            offnas_error("%s: cannot write: %s", path, strerror(errno));
            net_free(net);
            train_data_free(&td);
            return -1;
        }
        fprintf(log, "step,epoch,loss,accuracy,lr\n");
    }

    float *mom = offnas_calloc(net->param_count, sizeof(float));
    struct train_batch tb;
    train_batch_init(&tb, B, side, td.train.channels, B);
    long per_epoch = sh->steps;
    long total = per_epoch * job->train_epochs;
    if (job->train_steps > 0 && job->train_steps < total)
        total = job->train_steps;
    if (per_epoch == 0) {
        if (log)
            fclose(log);
        free(mom);
        train_batch_free(&tb);
        net_free(net);
        train_data_free(&td);
        return offnas_error("train.batch: %d is larger than the %ld training images", job->train_batch,
                            td.train_total);
    }
    offnas_log("train: %ld images (val %ld, test %ld), %d epochs of %ld steps, batch %d on %d "
               "trainer%s, %d threads, %zu parameters, %.2f M MACs/image",
               td.train_total, td.val_total, td.test_total, job->train_epochs, per_epoch,
               job->train_batch, d->size, d->size > 1 ? "s" : "", op_get_threads(),
               net_param_count_chosen(net), net_macs_chosen(net) / 1e6);

    double t0 = offnas_now(), last_log = t0, window_loss = 0;
    long window_hits = 0, window_images = 0, step = 0;
    float loss = 0;
    int rc = 0;
    for (int epoch = 0; epoch < job->train_epochs && step < total && !rc; epoch++) {
        for (long s = 0; s < per_epoch && step < total; s++, step++) {
            train_shards_fill(sh, &tb, &td.train, epoch, s, job->train_flip);
            float lr = (float)optim_cosine_lr(job->train_lr, step, total, job->train_warmup_steps);
            net_zero_grads(net);
            net_forward(net, tb.x, B, 1);
            int correct = 0;
            loss = op_softmax_xent_forward(net->probs, &correct, net->logits, tb.labels, B,
                                           net->classes, (float)job->train_label_smoothing);
            op_softmax_xent_backward(net->probs, net->probs, tb.labels, B, net->classes,
                                     (float)job->train_label_smoothing);
            net_backward(net, net->probs, B);
            dist_grads_finish(d, net);
            train_sgd_step(net, mom, lr, (float)job->train_momentum,
                           (float)job->train_weight_decay);
            if (job->cluster_checksum_every > 0 && (step + 1) % job->cluster_checksum_every == 0 &&
                dist_check_same(d, net->params, net->param_count, step + 1)) {
                rc = -1;
                break;
            }
            if (log)
                fprintf(log, "%ld,%d,%.6f,%.6f,%.6g\n", step + 1, epoch + 1, loss,
                        (double)correct / B, lr);
            window_loss += loss;
            window_hits += correct;
            window_images += B;
            double now = offnas_now();
            if (now - last_log >= job->train_log_seconds || step + 1 == total) {
                double rate = (double)(step + 1) * job->train_batch / (now - t0);
                char eta[32];
                format_duration(eta, sizeof eta, (double)(total - step - 1) * job->train_batch / rate);
                offnas_log("epoch %d/%d step %ld/%ld loss %.4f acc %.4f lr %.4f %.0f img/s left %s",
                           epoch + 1, job->train_epochs, step + 1, total,
                           window_loss / (double)(window_images / B),
                           (double)window_hits / (double)window_images, lr, rate, eta);
                last_log = now;
                window_loss = 0;
                window_hits = window_images = 0;
            }
        }
    }
    double t1 = offnas_now();
    if (log)
        fclose(log);
    if (!rc) {
        result->steps = step;
        result->final_loss = loss;
        result->train_seconds = t1 - t0;
        result->images_per_second = step > 0 ? (double)step * job->train_batch / (t1 - t0) : 0.0;
        result->parameters = net_param_count_chosen(net);
        result->macs = net_macs_chosen(net);
        dist_average(d, net->stats, net->stat_count);
        train_evaluate_all(net, &td.val, side, d, &result->val_accuracy, NULL);
        train_evaluate_all(net, &td.test, side, d, &result->test_accuracy, NULL);
        offnas_log("train: done in %.1f s: val accuracy %.4f, test accuracy %.4f",
                   result->train_seconds, result->val_accuracy, result->test_accuracy);
    }
    if (!rc && d->rank == 0) {
        snprintf(path, sizeof path, "%s/model.h5", out_dir);
        rc = train_save_model(net, job, path);
        snprintf(path, sizeof path, "%s/summary.json", out_dir);
        if (!rc)
            rc = write_summary(path, job, result);
    }
    free(mom);
    train_batch_free(&tb);
    net_free(net);
    train_data_free(&td);
    return rc;
}
