/* train: data for a job, SGD over the used ops, evaluation, and fixed-network training. */
#define _POSIX_C_SOURCE 200809L
#include "train.h"
#include "wire.h"

#include "check.h"
#include "common.h"
#include "dist.h"
#include "h5.h"
#include "mem.h"
#include "op.h"
#include "optim.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* The test images (when this trainer holds some) have the training images' shape: the net
 * is built for the latter. Returns 0, or -1 with an error naming path. */
static int same_images(const struct train_data *td, const char *path)
{
    const struct dataset *a = &td->train, *b = &td->test;
    if (a->count < 1 || b->count < 1)
        return 0;
    if (b->channels != a->channels || b->height != a->height || b->width != a->width)
        return offnas_error("%s: /test/images: %dx%dx%d images, the training split's are "
                            "%dx%dx%d",
                            path, b->channels, b->height, b->width, a->channels, a->height,
                            a->width);
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
    if (!rc)
        rc = same_images(td, job->data_path);
    if (rc) {
        train_data_free(td);
        return -1;
    }
    return 0;
}

/* Bytes of the images and labels td holds. */
static double data_bytes(const struct train_data *td)
{
    const struct dataset *sets[3] = {&td->train, &td->val, &td->test};
    double bytes = 0;
    for (int i = 0; i < 3; i++)
        bytes += (double)sets[i]->count *
                 ((double)sets[i]->channels * sets[i]->height * sets[i]->width + 1);
    return bytes;
}

int train_check_memory(const struct job *job, int batch, const struct train_data *td, int fixed,
                       int batches)
{
    const struct dataset *ds = td->train.count ? &td->train : &td->test;
    return mem_check_job(job, batch, ds->channels ? ds->channels : 1,
                         ds->classes ? ds->classes : 10, fixed, data_bytes(td), batches);
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

/* What split 0 sends: the pixel values of the (resized) input rounded to u8, normalised. */
static void round_pixels(struct train_batch *tb, int B)
{
    size_t n = (size_t)B * tb->side * tb->side * tb->channels;
    for (size_t i = 0; i < n; i++) {
        float q = (tb->x[i] - DATA_OFFSET) / DATA_GAIN;
        wire_fake_quant(&q, 1, WIRE_U8);
        tb->x[i] = q * DATA_GAIN + DATA_OFFSET;
    }
}

void train_batch_fill(struct train_batch *tb, const struct dataset *ds, long start, int B, int flip,
                      struct rng *rng)
{
    for (int i = 0; i < B; i++)
        tb->flip[i] = flip ? (unsigned char)(rng_next(rng) >> 63) : 0;
    data_batch(tb->x, tb->labels, ds, tb->order + start, B, tb->side, DATA_MEAN, DATA_STD,
               flip ? tb->flip : NULL);
    if (tb->round_u8)
        round_pixels(tb, B);
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
    if (tb->round_u8)
        round_pixels(tb, B);
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

float train_forward_backward(struct net *net, const float *x, const unsigned char *labels, int B,
                             float label_smoothing, int *correct)
{
    net_forward(net, x, B, 1);
    float loss = op_softmax_xent_forward(net->probs, correct, net->logits, labels, B,
                                         net->classes, label_smoothing);
    op_softmax_xent_backward(net->probs, net->probs, labels, B, net->classes, label_smoothing);
    net_backward(net, net->probs, B);
    return loss;
}

float train_step(struct net *net, float *mom, const float *x, const unsigned char *labels, int B,
                 const struct train_hparams *hp, struct dist *d, int *correct)
{
    net_zero_grads(net);
    float loss = train_forward_backward(net, x, labels, B, hp->label_smoothing, correct);
    if (d)
        dist_grads_finish(d);
    train_sgd_step(net, mom, hp->lr, hp->momentum, hp->weight_decay);
    return loss;
}

void train_evaluate(struct net *net, const struct dataset *ds, int side, double *accuracy,
                    double *loss)
{
    struct train_batch tb;
    train_batch_init(&tb, net->batch, side, ds->channels, ds->count);
    tb.round_u8 = net->wire_format == WIRE_U8;
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
    *accuracy = ds->count ? (double)hits / (double)ds->count : NAN;
    if (loss)
        *loss = ds->count ? total / (double)ds->count : NAN;
}

void train_evaluate_all(struct net *net, const struct dataset *ds, int side, struct dist *d,
                        double *accuracy, double *loss)
{
    double acc, l;
    train_evaluate(net, ds, side, &acc, &l);
    /* a trainer with no images of the split adds nothing (its NaN would spoil the sum) */
    double n = (double)ds->count;
    double v[3] = {ds->count ? acc * n : 0.0, ds->count ? l * n : 0.0, n};
    d->sum_doubles(d, v, 3);
    *accuracy = v[2] > 0 ? v[0] / v[2] : NAN;
    if (loss)
        *loss = v[2] > 0 ? v[1] / v[2] : NAN;
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
             h5_attr_set_int(f, "in_channels", net->in_channels) ||
             h5_attr_set_int(f, "parameters", (int64_t)net_param_count_chosen(net)) ||
             h5_attr_set_int(f, "mask_layer", net->mask_layer);
    if (!rc && net->wire_format)
        rc = h5_attr_set_string(f, "wire", wire_format_name(net->wire_format));
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

/* Reads the 1-D float data set /name of f into dst, which must hold exactly count values. */
static int model_read(hid_t f, const char *path, const char *name, float *dst, size_t count)
{
    hsize_t dims[1];
    OFFNAS_TRY(h5_shape(f, name, H5_F32, 1, dims));
    if (dims[0] != count)
        return offnas_error("%s: /%s has %llu values, the job's network has %zu", path, name,
                            (unsigned long long)dims[0], count);
    return h5_read_rows(f, name, H5_F32, 1, 0, count, dst);
}

/* The integer attributes of a model file: classes must be the network's, input_side and
 * parameters plausible, mask_layer a layer or -1 (into *mask_layer). */
static int model_attributes(hid_t f, const char *path, const struct net *net, int *mask_layer)
{
    int64_t v;
    int value;
    if (h5_attr_exists(f, "classes") > 0) {
        OFFNAS_TRY(h5_attr_get_int(f, "classes", &v));
        OFFNAS_TRY(check_int64(path, "classes", v, net->classes, net->classes, &value));
    }
    if (h5_attr_exists(f, "input_side") > 0) {
        OFFNAS_TRY(h5_attr_get_int(f, "input_side", &v));
        OFFNAS_TRY(check_int64(path, "input_side", v, 1, 65535, &value));
    }
    if (h5_attr_exists(f, "parameters") > 0) {
        long count;
        OFFNAS_TRY(h5_attr_get_int(f, "parameters", &v));
        OFFNAS_TRY(check_int64_long(path, "parameters", v, 0, (int64_t)net->param_count,
                                    &count));
    }
    OFFNAS_TRY(h5_attr_get_int(f, "mask_layer", &v));
    return check_int64(path, "mask_layer", v, -1, net->layer_count - 1, mask_layer);
}

/* The optional attribute wire of a model file (what crosses its split, simulated in training)
 * into *format (0 when absent): u8 only without a mask, the others only with one. */
static int model_wire(hid_t f, const char *path, int mask_layer, int *format)
{
    *format = 0;
    if (h5_attr_exists(f, "wire") <= 0)
        return 0;
    char *text = h5_attr_get_string(f, "wire");
    if (!text)
        return -1;
    int v = wire_format_parse(text);
    int rc = 0;
    if (v < 0)
        rc = offnas_error("%s: attribute wire: '%.40s' is not u8, fp32, fp16 or int8", path, text);
    else if ((v == WIRE_U8) != (mask_layer < 0))
        rc = offnas_error("%s: attribute wire: %s with %s", path, text,
                          mask_layer < 0 ? "no channel mask (only u8 is sent without one)"
                                         : "a channel mask (u8 is the input's format)");
    free(text);
    *format = v;
    return rc;
}

/* The body of train_load_model with the file open. */
static int model_load_open(hid_t f, const char *path, struct net *net, int *mask_layer)
{
    OFFNAS_TRY(model_read(f, path, "params", net->params, net->param_count));
    OFFNAS_TRY(model_read(f, path, "running_stats", net->stats, net->stat_count));
    OFFNAS_TRY(net_check_loaded(net, path, "/params", "/running_stats"));
    OFFNAS_TRY(model_attributes(f, path, net, mask_layer));
    OFFNAS_TRY(model_wire(f, path, *mask_layer, &net->wire_format));
    if (*mask_layer < 0)
        return 0;
    hsize_t dims[1];
    OFFNAS_TRY(h5_shape(f, "mask", H5_F32, 1, dims));
    int cout = net->layers[*mask_layer].cout;
    if (dims[0] != (hsize_t)cout)
        return offnas_error("%s: /mask has %llu values, layer %d has %d channels", path,
                            (unsigned long long)dims[0], *mask_layer + 1, cout);
    OFFNAS_TRY(h5_read_rows(f, "mask", H5_F32, 1, 0, dims[0], net->mask));
    /* a channel is sent (1) or not (0) */
    for (int c = 0; c < cout; c++)
        if (net->mask[c] != 0.0f && net->mask[c] != 1.0f)
            return offnas_error("%s: /mask[%d]: %g is not 0 or 1", path, c, (double)net->mask[c]);
    return 0;
}

int train_load_model(struct net *net, const char *path)
{
    hid_t f = h5_open_read(path);
    if (f < 0)
        return -1;
    int mask_layer = -1;
    int rc = model_load_open(f, path, net, &mask_layer);
    h5_close(f);
    if (!rc)
        net->mask_layer = mask_layer;
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
    /* an empty split measured nothing: null, not 0 */
    json_object_set_new(root, "test_accuracy",
                        isnan(r->test_accuracy) ? json_null() : json_real(r->test_accuracy));
    json_object_set_new(root, "val_accuracy",
                        isnan(r->val_accuracy) ? json_null() : json_real(r->val_accuracy));
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

/* Everything one trainer holds while it trains a fixed network. */
struct fixed_run {
    const struct job *job;
    struct dist *d;
    struct train_data td;
    struct net *net;
    float *mom;             /* SGD momentum, layout of net->params */
    struct train_batch tb;
    FILE *log;              /* trainer 0: out_dir/log.csv */
    int B, side;            /* this trainer's images per step, input side */
    long per_epoch, total;  /* steps */
};

/* Frees what fixed_open set up, however far it got. */
static void fixed_close(struct fixed_run *r)
{
    if (r->log)
        fclose(r->log);
    free(r->mom);
    train_batch_free(&r->tb);
    if (r->d)
        dist_grads_release(r->d);
    net_free(r->net);
    train_data_free(&r->td);
}

/* Loads this trainer's data, builds the fixed network (with the split's mask when split is
 * non-NULL) and its optimizer state, and on trainer 0 starts out_dir/log.csv. Returns 0, or
 * -1 with an error (call fixed_close either way). */
static int fixed_open(struct fixed_run *r, const struct job *job, const struct train_split *split,
                      const char *out_dir)
{
    memset(r, 0, sizeof *r);
    r->job = job;
    struct dist *d = r->d = dist_get();
    op_set_threads(job->train_deterministic ? 1 : job->train_threads);
    if (d->rank == 0)
        OFFNAS_TRY(train_mkdirs(out_dir));
    OFFNAS_TRY(train_data_load(&r->td, job, d));
    /* the test accuracy is measured, never reported as 0 of nothing */
    if (r->td.test_total < 1)
        return offnas_error("%s: /test/labels: the test split is empty: no test accuracy to "
                            "measure", job->data_path);
    struct train_shards *sh = &r->td.train_shards;
    r->side = job->data_resize;
    r->B = sh->owned * sh->per_shard;
    OFFNAS_TRY(train_check_memory(job, r->B, &r->td, 1, 1));
    struct net *net = r->net = net_create(&job->net, r->B, r->side, r->td.train.channels,
                                          r->td.train.classes, 1, (uint64_t)job->train_seed);
    if (!net)
        return -1;
    if (job->train_init[0])
        OFFNAS_TRY(train_load_model(net, job->train_init));
    net->bn_groups = sh->owned;
    net->grad_ready = dist_grad_ready;
    net->grad_ready_ctx = d;
    dist_grads_setup(d, (size_t)job->cluster_bucket_kb * 1024 / sizeof(float), net->param_count);
    if (split && split->split >= 1 && split->split <= net->layer_count) {
        net->mask_layer = split->split - 1;
        memcpy(net->mask, split->mask, (size_t)net->layers[split->split - 1].cout * sizeof(float));
        net->wire_format = wire_format_parse(job->search_wire); /* job_finalize checked it */
    } else if (split && split->split == 0) {
        net->wire_format = WIRE_U8;
    }
    if (d->rank == 0) {
        char path[JOB_PATH_MAX * 2];
        snprintf(path, sizeof path, "%s/log.csv", out_dir);
        r->log = fopen(path, "w");
        if (!r->log)
            return offnas_error("%s: cannot write: %s", path, strerror(errno));
        fprintf(r->log, "step,epoch,loss,accuracy,lr\n");
    }
    r->mom = offnas_calloc(net->param_count, sizeof(float));
    train_batch_init(&r->tb, r->B, r->side, r->td.train.channels, r->B);
    r->tb.round_u8 = net->wire_format == WIRE_U8;
    r->per_epoch = sh->steps;
    r->total = r->per_epoch * job->train_epochs;
    if (job->train_steps > 0 && job->train_steps < r->total)
        r->total = job->train_steps;
    if (r->per_epoch == 0)
        return offnas_error("train.batch: %d is larger than the %ld training images",
                            job->train_batch, r->td.train_total);
    return 0;
}

/* Loss and hits since the last progress line. */
struct train_window {
    double t0, last_log, loss;
    long hits, images;
};

/* Every train.log_seconds (and at the last step): the progress line of step (0-based). */
static void log_progress(const struct fixed_run *r, struct train_window *w, int epoch, long step,
                         float lr)
{
    const struct job *job = r->job;
    double now = offnas_now();
    if (now - w->last_log < job->train_log_seconds && step + 1 != r->total)
        return;
    double rate = (double)(step + 1) * job->train_batch / (now - w->t0);
    char eta[32];
    format_duration(eta, sizeof eta, (double)(r->total - step - 1) * job->train_batch / rate);
    offnas_log("epoch %d/%d step %ld/%ld loss %.4f acc %.4f lr %.4f %.0f img/s left %s",
               epoch + 1, job->train_epochs, step + 1, r->total,
               w->loss / (double)(w->images / r->B), (double)w->hits / (double)w->images, lr,
               rate, eta);
    w->last_log = now;
    w->loss = 0;
    w->hits = w->images = 0;
}

/* The training steps, epoch by epoch; fills the step count, last loss and timing of result.
 * Returns 0, or -1 when the trainers' parameters differ. */
static int fixed_loop(struct fixed_run *r, struct train_result *result)
{
    const struct job *job = r->job;
    struct net *net = r->net;
    struct train_window w = {.t0 = offnas_now()};
    w.last_log = w.t0;
    long step = 0;
    float loss = 0;
    for (int epoch = 0; epoch < job->train_epochs && step < r->total; epoch++) {
        for (long s = 0; s < r->per_epoch && step < r->total; s++, step++) {
            train_shards_fill(&r->td.train_shards, &r->tb, &r->td.train, epoch, s,
                              job->train_flip);
            float lr = (float)optim_cosine_lr(job->train_lr, step, r->total,
                                              job->train_warmup_steps);
            struct train_hparams hp = {lr, (float)job->train_momentum,
                                       (float)job->train_weight_decay,
                                       (float)job->train_label_smoothing};
            int correct = 0;
            loss = train_step(net, r->mom, r->tb.x, r->tb.labels, r->B, &hp, r->d, &correct);
            if (job->cluster_checksum_every > 0 && (step + 1) % job->cluster_checksum_every == 0 &&
                dist_check_same(r->d, net->params, net->param_count, step + 1))
                return -1;
            if (r->log)
                fprintf(r->log, "%ld,%d,%.6f,%.6f,%.6g\n", step + 1, epoch + 1, loss,
                        (double)correct / r->B, lr);
            w.loss += loss;
            w.hits += correct;
            w.images += r->B;
            log_progress(r, &w, epoch, step, lr);
        }
    }
    double t1 = offnas_now();
    result->steps = step;
    result->final_loss = loss;
    result->train_seconds = t1 - w.t0;
    result->images_per_second = step > 0 ? (double)step * job->train_batch / (t1 - w.t0) : 0.0;
    return 0;
}

/* "0.8867", or "n/a (no images)" for the NaN of an empty split. */
static const char *fmt_fraction(char *buf, size_t size, double x)
{
    if (isnan(x))
        snprintf(buf, size, "n/a (no images)");
    else
        snprintf(buf, size, "%.4f", x);
    return buf;
}

/* After the steps: the trainers' running statistics averaged, val and test accuracy, and on
 * trainer 0 out_dir/model.h5 and summary.json. Returns 0 or -1 with an error. */
static int fixed_finish(struct fixed_run *r, const char *out_dir, struct train_result *result)
{
    struct net *net = r->net;
    result->parameters = net_param_count_chosen(net);
    result->macs = net_macs_chosen(net);
    dist_average(r->d, net->stats, net->stat_count);
    train_evaluate_all(net, &r->td.val, r->side, r->d, &result->val_accuracy, NULL);
    train_evaluate_all(net, &r->td.test, r->side, r->d, &result->test_accuracy, NULL);
    char val[16], test[16];
    offnas_log("train: done in %.1f s: val accuracy %s, test accuracy %s", result->train_seconds,
               fmt_fraction(val, sizeof val, result->val_accuracy),
               fmt_fraction(test, sizeof test, result->test_accuracy));
    if (r->d->rank != 0)
        return 0;
    char path[JOB_PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/model.h5", out_dir);
    OFFNAS_TRY(train_save_model(net, r->job, path));
    snprintf(path, sizeof path, "%s/summary.json", out_dir);
    return write_summary(path, r->job, result);
}

int train_fixed(const struct job *job, const struct train_split *split, const char *out_dir,
                struct train_result *result)
{
    memset(result, 0, sizeof *result);
    struct fixed_run r;
    int rc = fixed_open(&r, job, split, out_dir);
    if (!rc) {
        struct dist *d = r.d;
        offnas_log("train: %ld images (val %ld, test %ld), %d epochs of %ld steps, batch %d on "
                   "%d trainer%s, %d threads, %zu parameters, %.2f M MACs/image",
                   r.td.train_total, r.td.val_total, r.td.test_total, job->train_epochs,
                   r.per_epoch, job->train_batch, d->size, d->size > 1 ? "s" : "",
                   op_get_threads(), net_param_count_chosen(r.net), net_macs_chosen(r.net) / 1e6);
        rc = fixed_loop(&r, result);
    }
    if (r.log) {
        fclose(r.log);
        r.log = NULL;
    }
    if (!rc)
        rc = fixed_finish(&r, out_dir, result);
    fixed_close(&r);
    return rc;
}
