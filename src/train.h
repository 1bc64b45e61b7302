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

/* The splits of a job: train and val carved from the file's /train, test from /test. */
struct train_data {
    struct dataset train, val, test;
};

/* Loads the splits named by data.path, data.val_size, data.seed and the limits.
 * Returns 0 or -1 with an error naming the file. */
int train_data_load(struct train_data *td, const struct job *job);
void train_data_free(struct train_data *td);

/* Working buffers of a training loop, sized once: a float batch, its labels, indices. */
struct train_batch {
    int batch, side, channels;
    float *x;
    unsigned char *labels;
    unsigned char *flip;
    long *order; /* a permutation of the training set */
    long order_count;
};
void train_batch_init(struct train_batch *tb, int batch, int side, int channels, long count);
void train_batch_free(struct train_batch *tb);
/* Fills tb with images order[start, start+B) of ds (with random flips if flip). */
void train_batch_fill(struct train_batch *tb, const struct dataset *ds, long start, int B,
                      int flip, struct rng *rng);

/* One SGD step over the parameter ranges the current choices used (momentum buffer mom has
 * the layout of net->params). */
void train_sgd_step(struct net *net, float *mom, float lr, float momentum, float weight_decay);

/* Accuracy and mean loss of net (eval mode, current choices) on ds, in batches of
 * net->batch. */
void train_evaluate(struct net *net, const struct dataset *ds, int side, double *accuracy,
                    double *loss);

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
    float mask[1024];
};

/* Trains the fixed network of the job (net.ops), with the split's channel mask when split is
 * non-NULL, and writes out_dir/summary.json, log.csv, model.h5. Returns 0 or -1. */
int train_fixed(const struct job *job, const struct train_split *split, const char *out_dir,
                struct train_result *result);

/* Loads model.h5 written by train_save_model into net (built from the same job): parameters,
 * running statistics, and the split mask if one was saved. Returns 0 or -1 with an error. */
int train_load_model(struct net *net, const char *path);

/* Writes the weights, running statistics and job of net to path (HDF5, tmp + rename). */
int train_save_model(const struct net *net, const struct job *job, const char *path);

/* Writes root as indented JSON (full double precision) to path.tmp, then renames it over path,
 * so a reader never sees half a file. Returns 0 or -1 with an error naming path. */
int train_write_json(const json_t *root, const char *path);

/* Creates directory path (and parents). Returns 0 or -1 with an error. */
int train_mkdirs(const char *path);

#endif
