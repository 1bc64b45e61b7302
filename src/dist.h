/* dist: what the training loops need from the ranks they share a job with, without MPI.
 *
 * The search and the fixed-network training call these hooks; one process uses the local
 * implementation (one trainer, every call a no-op), and mpi/ fills the same table with Open
 * MPI calls. That keeps src/ free of MPI and the loops identical on 1 and on 1000 ranks.
 *
 * A step on T trainers:
 *     dist_grads_setup(d, bucket_floats, net->param_count);         // set once
 *     net->grad_ready = dist_grad_ready; net->grad_ready_ctx = d;
 *     net_backward(net, ...);  // each finished range is packed; a full bucket starts its allreduce
 *     dist_grads_finish(d);    // waits for the buckets, unpacks the sums scaled by 1/T
 * so the summed gradient is the mean over the global batch, as one trainer would compute it.
 * The ranges of one step (a supernet step's sampled slices are many and far apart) are packed
 * back to back into one send buffer, so a step sends ceil(floats / bucket_floats) messages
 * however scattered its ranges are.
 */
#ifndef OFFNAS_DIST_H
#define OFFNAS_DIST_H

#include <stddef.h>
#include <stdint.h>

struct latency_table;

/* The devices a profiler rank can serve, the device argument of the table hooks below. */
enum dist_device { DIST_MOBILE, DIST_EDGE, DIST_DEVICE_COUNT };
/* Their names in cluster.profilers and `offnas profiler --device`, indexed by dist_device. */
extern const char *const DIST_DEVICE_NAMES[];

/* Architecture the trainers currently prefer, sent to the profilers each epoch. */
struct dist_arch {
    int ops[64];   /* candidate index per layer */
    int layers;
    int split;     /* 0 .. L+1 */
    int kept;      /* channels sent at an inner split (0 at 0 and L+1) */
};

struct dist {
    int rank, size;  /* this trainer and the number of trainers */
    int world_rank, world_size;
    int profilers;   /* profiler ranks in the job */
    /* Sums n floats of buf over the trainers, in place. Non-blocking: the sum is there after
     * reduce_wait. Calls must come in the same order on every trainer. */
    void (*reduce_start)(struct dist *d, float *buf, size_t n);
    void (*reduce_wait)(struct dist *d);
    /* Blocking sum of n doubles over the trainers (statistics, small). */
    void (*sum_doubles)(struct dist *d, double *v, int n);
    /* Blocking maximum of n longs (flags, counters). */
    void (*max_longs)(struct dist *d, long *v, int n);
    /* Copies bytes of buf from trainer 0 to every trainer. */
    void (*broadcast)(struct dist *d, void *buf, size_t bytes);
    /* Latency tables from profiler ranks. has_profiler says whether a profiler rank serves
     * the device (DIST_MOBILE or DIST_EDGE). take_table blocks for the first table of a device;
     * poll_table returns 1 and fills t when every trainer holds a newer table (a collective
     * call: all trainers call it at the same step and agree), else 0. */
    int (*has_profiler)(struct dist *d, int device);
    int (*take_table)(struct dist *d, int device, struct latency_table *t);
    int (*poll_table)(struct dist *d, int device, struct latency_table *t);
    /* Trainer 0 sends the preferred architecture to the profilers (others: no-op). */
    void (*send_arch)(struct dist *d, const struct dist_arch *a);
    /* Tells the profilers the search is over (trainer 0; collective over the trainers). */
    void (*finish)(struct dist *d);
    double wait_seconds; /* time spent in reduce_wait */
    long reduced_bytes;  /* bytes handed to reduce_start */
    long reduced_messages; /* reduce_start calls: allreduce messages started */
    size_t bucket_floats;
    /* the step's send buffer (see dist_grad_ready): pack[0, pack_used) holds the ranges handed
     * in so far, pack[bucket_start, pack_used) the bucket not yet handed to reduce_start;
     * segs[] says where each packed run came from, for dist_grads_finish to put the sums back */
    float *pack;
    size_t pack_capacity, pack_used, bucket_start;
    struct dist_segment {
        float *to;
        size_t count;
    } *segs;
    size_t seg_count, seg_capacity;
    void *impl;
};

/* The one-trainer implementation (every collective is the identity). */
struct dist *dist_local(void);

/* The process-wide instance the commands use: dist_local() unless main installed another. */
struct dist *dist_get(void);
void dist_set(struct dist *d);

/* Sets the bucket size (floats per allreduce message) and, on more than one trainer, makes
 * room for a step's gradients: at most capacity floats (a net's param_count) between two
 * dist_grads_finish. Call before the first step; dist_grads_release frees the room. */
void dist_grads_setup(struct dist *d, size_t bucket_floats, size_t capacity);
void dist_grads_release(struct dist *d);
/* Bucketed gradient allreduce during backward: net_backward calls this with each finished
 * gradient range (no float twice in a step). The range is copied behind the previous ones in
 * the send buffer; each time the buffer holds bucket_floats values more, those are handed to
 * reduce_start at once, so buckets are full but for the last and come in the order the ranges
 * came, on every trainer alike. */
void dist_grad_ready(void *ctx, float *grads, size_t offset, size_t count);
/* Hands the last bucket over, waits for all, and writes every range's sum back scaled by
 * 1/size. */
void dist_grads_finish(struct dist *d);

/* Mean of n floats over the trainers (blocking), e.g. BN running statistics before saving. */
void dist_average(struct dist *d, float *buf, size_t n);

/* FNV-1a of the bytes of n floats: the parameter checksum trainers compare. */
uint64_t dist_checksum(const float *buf, size_t n);
/* The four longs dist_check_same reduces with a maximum: the checksum's two 32-bit halves and
 * their negatives (so max and -min of each half agree exactly when every trainer agrees). */
void dist_checksum_words(uint64_t h, long v[4]);
/* Compares checksums over the trainers: returns 0 when all agree, -1 with an error naming
 * the step otherwise. */
int dist_check_same(struct dist *d, const float *buf, size_t n, long step);

/* SIGTERM / SIGUSR1: the loops poll this flag and write a checkpoint before stopping. */
void dist_catch_stop_signals(void);
int dist_stop_signal(void); /* the signal seen (0: none) */
/* Agreement over the trainers: 1 when any trainer saw a stop signal. */
int dist_should_stop(struct dist *d);

/* Roles under an MPI launcher. main installs dist_setup_hook when the program runs under
 * mpirun or srun; a command calls dist_setup once it has its job. Every rank of the world
 * must call it (it splits the world into trainers and profilers): a trainer gets 0 and goes on
 * with dist_get() set; a profiler rank serves its device until the trainers finish, then gets
 * 1 and exits with *status; an error gives -1. profiler_device is the MPMD profiler's
 * --device (NULL for the trainer commands; the job's cluster.profilers may still make this
 * rank a profiler). Without a launcher: 0, or an error for a profiler. */
struct job;
extern int dist_uses_tables; /* set by the commands that take tables from profilers */
extern int (*dist_setup_hook)(const struct job *job, const char *profiler_device, int *status);
int dist_setup(const struct job *job, const char *profiler_device, int *status);

/* Exit status of a search stopped by a signal after its checkpoint (Slurm requeue). */
#define DIST_EXIT_STOPPED 3

#endif
