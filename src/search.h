/* search: the offloading-aware search in one process (the MPI layer in mpi/ drives the same
 * steps on many ranks). Weights train with SGD on the training split, alpha beta gamma with
 * Adam on the validation split, alternating, after a warm-up of weights only; the
 * architecture loss adds the expected end-to-end latency to the task loss.
 *
 * A run folder holds: checkpoint.h5 (supernet, optimizer states, arch parameters, step, job),
 * lut_device.h5 and lut_edge.h5 (the tables used), log.csv (per epoch), and after `offnas
 * derive`, arch.json. */
#ifndef OFFNAS_SEARCH_H
#define OFFNAS_SEARCH_H

#include "arch.h"
#include "job.h"
#include "latency.h"
#include "net.h"

/* Loads (or measures here, when the job names no file) the device and edge tables for net and
 * fills cost from the job (scales, link, wire format). Measured tables are saved into out_dir
 * when out_dir is non-NULL. Returns 0 or -1 with an error. */
int search_costs(struct latency_table *device, struct latency_table *edge, struct arch_cost *cost,
                 const struct job *job, const struct net *net, const char *out_dir);

/* Fills cost from already loaded tables and the job (scales, link, wire format). Returns 0 or
 * -1 with an error naming the network key. */
int search_cost_init(struct arch_cost *cost, const struct job *job,
                     const struct latency_table *device, const struct latency_table *edge);

/* How a search run ended. */
enum search_end { SEARCH_DONE = 0, SEARCH_FAILED = -1, SEARCH_STOPPED = 1, SEARCH_PAUSED = 2 };

/* Runs the search of job into out_dir on the trainers of dist_get(): from scratch, or with
 * resume from out_dir's newest readable checkpoint. until_epoch > 0 ends the run after that
 * epoch (of job's search.epochs, so the schedules are the whole run's). Returns SEARCH_DONE,
 * SEARCH_PAUSED (until_epoch reached first), SEARCH_STOPPED (a stop signal arrived; in both
 * cases a checkpoint was written and the run can resume) or SEARCH_FAILED with an error. */
int search_run(const struct job *job, const char *out_dir, int resume, int until_epoch);

/* Times `steps` search steps (weight step + architecture step each) of job, after `warmup`
 * untimed ones; fills the figures trainer 0 prints. Collective over the trainers. */
struct search_bench {
    double step_ms;            /* median over steps, wall clock */
    double weight_step_ms, arch_step_ms; /* its two halves, medians */
    /* a training step of the fixed network of the weight step's sampled ops on the same batch
     * (median), and the medians of the per-step ratios to it */
    double fixed_step_ms, search_over_fixed, weight_over_fixed;
    double images_per_second;  /* overall: global images of both batches per second */
    double wait_share;         /* share of step time spent waiting on allreduce */
    int trainers;
    long reduced_bytes_per_step;
    double reduced_messages_per_step; /* allreduce messages of the weight gradients */
};
int search_bench(const struct job *job, int warmup, int steps, struct search_bench *out);

/* Architecture loss factor pieces: for the additive form returns lambda / T_ref (dLoss/dE[T])
 * and sets *task_scale = 1; for the log form CE + lambda * ln(E / T_ref) returns lambda / E
 * and sets *task_scale = 1; for the multiplicative form CE * (log E / log T_ref)^w (times in
 * microseconds) returns dLoss/dE[T] and sets *task_scale = (log E / log T_ref)^w. *loss gets
 * the latency-aware loss value. */
double search_latency_loss(const struct job *job, double ce, double expected_ms, double t_ref_ms,
                           double *task_scale, double *loss);

/* Sums of an epoch's figures over the images and trainers (a mean is a sum over its images
 * count). Summed over the trainers and checkpointed as SEARCH_EPOCH_SUMS doubles in this
 * order. */
struct search_epoch_sums {
    double train_loss;   /* weight steps: task loss x images */
    double train_hits;
    double train_images;
    double val_loss;     /* architecture steps: task loss x images */
    double val_hits;
    double val_images;
    double arch_loss;    /* latency-aware architecture loss x images */
};
#define SEARCH_EPOCH_SUMS 7

/* Saves / loads the search state (HDF5, tmp + rename, previous kept as checkpoint.prev.h5). */
struct search_state {
    long step;       /* weight steps done (the RNG streams are counters of it) */
    int epoch;       /* epochs completed */
    float *momentum; /* SGD momentum, layout of net->params */
    long arch_steps;
    double t_ref_ms;
    struct search_epoch_sums epoch_sums; /* of the current epoch, over all trainers */
    int shards;      /* data shards of the run */
    int trainers;    /* trainer ranks that wrote it */
    /* the tables in use (NULL: not saved/loaded) */
    struct latency_table *tables;
    /* the link fitted by the profiler ranks' probes (bandwidth 0: the job's link) */
    double link_bandwidth_mbps, link_rtt_ms;
};
int search_save_checkpoint(const char *path, const struct job *job, const struct net *net,
                           const struct arch *arch, const struct search_state *state);
/* Reads the job text of a checkpoint (malloc'd string the caller frees), or NULL with an error. */
char *search_checkpoint_job(const char *path);
/* Loads weights, stats, momentum, arch parameters and Adam moments into net/arch (built for the
 * checkpoint's job) and the counters into state; the tables too when state->tables is set.
 * A file that cannot be read whole, or holds a value out of its range (a negative counter,
 * NaN or inf in a table, a weight or an architecture parameter, a 64-bit attribute beyond
 * int), is refused with an error naming it and the field; state is then unchanged. */
int search_load_checkpoint(const char *path, struct net *net, struct arch *arch,
                           struct search_state *state);
/* Whether the loaded counters fit the job: epochs done <= search.epochs and, when per_epoch
 * (weight steps per epoch of this run) > 0 and the checkpoint was written with this run's
 * shards (other shards give other epoch lengths), step <= the run's steps and epoch
 * consistent with step. Returns 0, or -1 with an error "PATH: FIELD: ...". */
int search_check_progress(const char *path, const struct search_state *state,
                          const struct job *job, long per_epoch, int shards);

#endif
