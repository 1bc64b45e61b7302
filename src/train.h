/* train: the pieces of a training loop shared by fixed-network training and the search:
 * data for a job, one SGD step over the ops a batch used, evaluation, and the fixed-network
 * training run that writes summary.json, log.csv and model.h5. */
#ifndef OFFNAS_TRAIN_H
#define OFFNAS_TRAIN_H

#include "data.h"
#include "job.h"
#include "net.h"
#include "rng.h"

#include <jansson.h>

struct dist;

/* Data parallelism: the training rows (and the validation rows) are cut into `shards`
 * contiguous shards of the file's order; every step takes per_shard images from each shard,
 * so the global batch is shards * per_shard images whatever the number of trainers, and
 * trainer t of T reads (hyperslab) and serves only shards [t*S/T, (t+1)*S/T). Each shard has
 * its own shuffle per pass, seeded from (data seed, pass, shard): a run draws the same
 * images on 1, 2 or 4 trainers, and the step counter is the whole state of the sampler. */
struct train_shards {
    int shards;       /* S, over all trainers */
    int first, owned; /* this trainer's shards [first, first + owned) */
    int per_shard;    /* images per shard per step */
    long steps;       /* steps per pass (the smallest shard / per_shard) */
    long offset[NET_MAX_BN_GROUPS], size[NET_MAX_BN_GROUPS]; /* owned shard j: local rows */
    long *perm;       /* owned shards' orders for pass perm_pass, at offset[j] */
    long perm_pass;
    uint64_t seed;
};

/* The splits of a job as one trainer holds them: train and val carved from the file's
 * /train (its shards of each), test from /test (a contiguous 1/T of it). */
struct train_data {
    struct dataset train, val, test;
    struct train_shards train_shards, val_shards;
    long train_total, val_total, test_total; /* over all trainers */
};

/* Loads this trainer's part of the splits named by data.path, data.val_size, data.seed,
 * data.shards and the limits, for a global batch of train.batch images (d NULL: one
 * trainer). Returns 0 or -1 with an error naming the file or key. */
int train_data_load(struct train_data *td, const struct job *job, const struct dist *d);
void train_data_free(struct train_data *td);

/* Whether a net of batch images (fixed or the supernet) with `batches` input batches and the
 * data td holds fits this machine's memory (mem.h). Call before net_create. Returns 0, or -1
 * with an error stating the estimate and the limit. */
int train_check_memory(const struct job *job, int batch, const struct train_data *td, int fixed,
                       int batches);

/* Shard count a job uses on T trainers (data.shards, or T when 0). */
int train_shard_count(const struct job *job, int trainers);

/* Working buffers of a training loop, sized once: a float batch, its labels, indices. */
struct train_batch {
    int batch, side, channels;
    float *x;
    unsigned char *labels;
    unsigned char *flip;
    long *order; /* a permutation of the training set */
    int round_u8; /* round the (resized) pixels to u8, as split 0 sends them (net.wire_format) */
    long order_count;
};
void train_batch_init(struct train_batch *tb, int batch, int side, int channels, long count);
void train_batch_free(struct train_batch *tb);
/* Fills tb with images order[start, start+B) of ds (with random flips if flip). */
void train_batch_fill(struct train_batch *tb, const struct dataset *ds, long start, int B,
                      int flip, struct rng *rng);
/* Fills tb with step `step` of pass `pass` of this trainer's shards of ds (owned * per_shard
 * images, shard by shard); with flip, mirror flags drawn from (seed, pass, step, shard). */
void train_shards_fill(struct train_shards *sh, struct train_batch *tb, const struct dataset *ds,
                       long pass, long step, int flip);

/* One SGD step over the parameter ranges the current choices used (momentum buffer mom has
 * the layout of net->params). */
void train_sgd_step(struct net *net, float *mom, float lr, float momentum, float weight_decay);

/* Forward (training mode) of the B images x, softmax cross-entropy against labels with label
 * smoothing, backward: the gradients ACCUMULATE into net->grads. Returns the mean loss;
 * *correct (may be NULL) gets the number of argmax hits. */
float train_forward_backward(struct net *net, const float *x, const unsigned char *labels, int B,
                             float label_smoothing, int *correct);

/* The settings of one training step. */
struct train_hparams {
    float lr, momentum, weight_decay, label_smoothing;
};

/* One training step on a batch: zeroes the gradients, train_forward_backward, finishes the
 * gradients over the trainers of d (dist_grads_finish; d NULL: one process), then
 * train_sgd_step. Returns the mean loss; *correct (may be NULL) gets the hits. */
float train_step(struct net *net, float *mom, const float *x, const unsigned char *labels, int B,
                 const struct train_hparams *hp, struct dist *d, int *correct);

/* Accuracy and mean loss of net (eval mode, current choices) on ds, in batches of
 * net->batch; with d, over the trainers' parts of the split together (collective). An empty
 * split measures nothing: both are NaN (summary.json writes null), never 0. */
void train_evaluate(struct net *net, const struct dataset *ds, int side, double *accuracy,
                    double *loss);
void train_evaluate_all(struct net *net, const struct dataset *ds, int side, struct dist *d,
                        double *accuracy, double *loss);

/* Outcome of a training run. */
struct train_result {
    double test_accuracy, val_accuracy, final_loss;
    double train_seconds, images_per_second, macs;
    size_t parameters;
    long steps;
};

/* The split of a derived network: the channel mask (0/1 per channel) applied to the output of
 * layer split-1 for split in 1..L; no mask for split 0 or L+1. */
struct train_split {
    int split;
    int kept;
    float mask[NET_MAX_CHANNELS];
};

/* Trains the fixed network of the job (net.ops), with the split's channel mask when split is
 * non-NULL, and writes out_dir/summary.json, log.csv, model.h5. Returns 0 or -1. */
int train_fixed(const struct job *job, const struct train_split *split, const char *out_dir,
                struct train_result *result);

/* Loads model.h5 written by train_save_model into net (built from the same job): parameters,
 * running statistics, and the split mask if one was saved. A missing data set, a wrong shape
 * or type, a NaN or inf weight, a negative running variance, a mask value other than 0 and 1
 * or an integer attribute out of its range is refused. Returns 0 or -1 with an error naming
 * path and the field; net->mask_layer is set only on success. */
int train_load_model(struct net *net, const char *path);

/* Writes the weights, running statistics and job of net to path (HDF5, tmp + rename). */
int train_save_model(const struct net *net, const struct job *job, const char *path);

/* Writes root as indented JSON (full double precision) to path.tmp, then renames it over path,
 * so a reader never sees half a file. Returns 0 or -1 with an error naming path. */
int train_write_json(const json_t *root, const char *path);

/* Creates directory path (and parents). Returns 0 or -1 with an error. */
int train_mkdirs(const char *path);

#endif
