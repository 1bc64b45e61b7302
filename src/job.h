/* job: job files (INI) and their settings.
 *
 * A job file has sections [data] [net] [train] [search] [latency] [network] [cluster]; every
 * key has a default, so an empty file is a valid job. `--set section.key=value` overrides any
 * key after the file is read. Unknown sections or keys, malformed lines, bad values and
 * missing files are errors naming the file, the line (or the key) and what is wrong.
 *
 *     struct job job;
 *     job_defaults(&job);
 *     if (job_load(&job, "jobs/fixed.ini") || job_set(&job, "train.epochs=1") ||
 *         job_finalize(&job))
 *         fprintf(stderr, "offnas: %s\n", offnas_last_error());
 */
#ifndef OFFNAS_JOB_H
#define OFFNAS_JOB_H

#include "net.h"

#include <stdio.h>

#define JOB_PATH_MAX 512
#define JOB_TEXT_MAX 2048

struct job {
    /* [data] */
    char data_path[JOB_PATH_MAX]; /* HDF5 data set written by `offnas data import` */
    int data_val_size;            /* validation images carved from the training set */
    int data_resize;              /* input side; > native size upsamples bilinearly */
    int data_seed;                /* seed of the validation shuffle */
    int data_train_limit;         /* use only the first N training images (0: all) */
    int data_test_limit;          /* use only the first N test images (0: all) */
    int data_shards;              /* data-parallel shards (0: one per trainer rank) */

    /* [net]: the keys stem, stem_stride and head set net.stem_channels, net.stem_stride and
     * net.head_channels (below) directly */
    char net_layers[JOB_TEXT_MAX];         /* "16/1, 24/2, ..." channels/stride per layer */
    char net_ops[JOB_TEXT_MAX];            /* fixed network: one op per layer, "k3e1, k3e3, ..." */
    char net_candidates[JOB_TEXT_MAX];     /* search space: candidate ops of every layer */
    char net_supernet[16];                 /* "shared": one superkernel per layer; "separate" */

    /* [train] */
    int train_epochs;
    int train_batch;       /* global batch (split over trainer ranks) */
    double train_lr;       /* peak learning rate (cosine schedule to 0) */
    double train_momentum;
    double train_weight_decay;
    int train_warmup_steps; /* linear learning-rate warm-up */
    double train_label_smoothing;
    int train_flip;         /* random horizontal flip augmentation */
    int train_threads;      /* BLAS and op threads; 0: all cores */
    int train_seed;
    int train_steps;        /* stop after this many steps (0: run all epochs) */
    int train_deterministic;
    double train_log_seconds; /* progress line interval */
    char train_init[JOB_PATH_MAX]; /* model.h5 to start from ("": initialise from the seed) */

    /* [search] */
    int search_epochs;
    int search_warmup_epochs;  /* weights only before the architecture is trained */
    double search_lr;          /* peak SGD learning rate of the supernet weights (0: train.lr) */
    double search_warmup_largest; /* share of the warm-up over which layers train their
                                   * largest candidate, with a probability falling 1 -> 0 */
    double search_lambda;
    char search_loss[16];      /* "additive", "log" or "multiplicative" */
    char search_t_ref[16];     /* T_ref when t_ref_ms is 0: "initial" E[T] of the supernet, or
                                * "fastest": its fastest split's T(s) */
    double search_t_ref_ms;    /* reference latency (0: from search_t_ref) */
    double search_w;           /* exponent of the multiplicative loss */
    double search_arch_lr;     /* Adam learning rate of alpha, beta, gamma */
    double search_arch_weight_decay;
    double search_tau_start;   /* Gumbel-softmax temperature schedule */
    double search_tau_end;
    char search_wire[8];       /* "fp32", "fp16" or "int8" */
    int search_seed;
    int search_deterministic;
    char search_split[16];     /* "search": learn the split; "device": everything on the device */
    char search_op_gradient[8]; /* alpha's task gradient: "paired" (two paths, score function)
                                 * or "gate" (straight-through gate gradient) */

    /* [derive] */
    double derive_max_accuracy_drop; /* channels kept: accuracy within this of unmasked */
    int derive_bn_batches;           /* training batches to re-estimate batch norm per path */
    int derive_val_images;           /* validation images per measurement (0: all) */

    /* [baseline] */
    int baseline_finetune_epochs;    /* prune-split: fine-tuning with the pruned split */
    int baseline_pin_split;          /* prune-split: >= 0 this split, not the rule's (-1) */
    int baseline_pin_kept;           /* prune-split: channels kept there (with pin_split) */

    /* [latency] */
    char latency_device[JOB_PATH_MAX]; /* device profile (HDF5), "" : measure here */
    char latency_edge[JOB_PATH_MAX];   /* edge server profile (HDF5), "" : measure here */
    double latency_device_scale;       /* multiplies every device latency (a slower device) */
    double latency_edge_scale;

    /* [network] */
    char network_preset[16];       /* "3g", "lte", "wifi", "5g" or "custom" */
    double network_bandwidth_mbps; /* uplink, for "custom" */
    double network_rtt_ms;         /* round trip, for "custom" */

    /* [cluster] */
    char cluster_profilers[JOB_TEXT_MAX]; /* "mobile:1, edge:1": the last ranks profile */
    int cluster_checksum_every;           /* steps between parameter checksums */
    int cluster_checkpoint_every;         /* steps between checkpoints */
    int cluster_bucket_kb;                /* allreduce bucket size */
    char cluster_profile_dir[JOB_PATH_MAX]; /* where profiler ranks save their tables */
    char cluster_probe_listen[64]; /* where the edge profiler rank listens for probes */
    int cluster_fit_link;          /* take up the link the profilers fit from their probes */
    int search_pin_split;          /* -1: the split is searched; else pinned there (0 .. L+1) */

    /* The network the job describes, what net_create takes: the stem and head from their
     * keys, the layers, fixed ops and candidates derived by job_finalize() from the three
     * texts above. */
    struct net_desc net;

    char source[JOB_PATH_MAX]; /* file the job came from ("" : defaults only) */
};

/* Fills every key with its default (the default fixed network and search of DESIGN.md). */
void job_defaults(struct job *job);

/* Reads an INI file over the current values. Returns 0, or -1 with an error such as
 * "jobs/x.ini:7: unknown key 'epoch' in [train]" or "jobs/x.ini: cannot open: No such file". */
int job_load(struct job *job, const char *path);

/* Same, reading the file at path but naming it name in errors and in job->source (a
 * temporary copy of a text whose origin is name). */
int job_load_as(struct job *job, const char *path, const char *name);

/* Applies one "section.key=value" override. Returns 0, or -1 with an error naming the key. */
int job_set(struct job *job, const char *assignment);

/* Checks cross-key rules and derives the parsed layer and op lists. Call after the last
 * job_load/job_set. Returns 0, or -1 with an error naming the key. */
int job_finalize(struct job *job);

/* Builds a job from INI text (defaults, the text, job_finalize) by way of the file dir/name,
 * which is kept: it documents the run. Returns 0, or -1 with an error. */
int job_load_text(struct job *job, const char *text, const char *dir, const char *name);

/* Writes every key with its current value as an INI file (a job that reproduces this one). */
void job_write(const struct job *job, FILE *out);

/* The value of key "section.key" as the job file would spell it, into buf. Returns 0, or -1
 * with an error for an unknown key. */
int job_get(const struct job *job, const char *name, char *buf, size_t size);

/* Returns the job as INI text in a malloc'd string the caller frees. */
char *job_to_string(const struct job *job);

#endif
