/* derive: fixes the choices of a search for the network that is derived (DESIGN.md, "Deriving
 * the result"). The ops are alpha's argmax; the split and the channels are then re-decided FOR
 * THOSE OPS, not under the op distribution the search ended with: at every split the channels
 * are ranked by gamma, the smallest channel count whose validation accuracy on the supernet
 * (derived ops, that mask, batch norm re-estimated) stays within max_accuracy_drop of the
 * unmasked accuracy is kept, and the split with the lowest predicted latency wins.
 * The paper's plain rule (argmax of beta, channels with q > 0.5) is computed beside it.
 *
 *     struct derive_result r;
 *     derive_for_ops(&r, super, &arch, &cost, &data, &options);   // r.chosen, r.argmax
 */
#ifndef OFFNAS_DERIVE_H
#define OFFNAS_DERIVE_H

#include "arch.h"
#include "data.h"
#include "net.h"

/* One (split, channels) decision and what the tables predict for it. */
struct derive_choice {
    int split;                       /* 0..L+1 */
    int kept, total;                 /* channels sent of the split's feature map (0 at 0, L+1) */
    unsigned char keep[NET_MAX_CHANNELS]; /* 1 = channel sent */
    double accuracy;                 /* supernet validation accuracy with it; NAN: not measured */
    struct arch_latency latency;     /* predicted for the derived ops */
    double bytes;                    /* bytes sent per image */
};

/* What derive found at one split: the smallest admitted channel count (kept 0: none within the
 * tolerance, or the split was not worth measuring because even one channel is slower than the
 * best so far), its accuracy and latency. */
struct derive_split {
    int evaluated;        /* accuracy measurements made at this split */
    int kept, total;
    double accuracy;      /* NAN when not measured */
    double latency_ms;    /* predicted total with kept channels (with 1 channel when kept 0) */
    int pruned;           /* 1: skipped, its one-channel latency was not below the best */
};

struct derive_result {
    int ops[NET_MAX_LAYERS];
    double unmasked_accuracy;        /* supernet, derived ops, no mask */
    struct derive_choice chosen;     /* the accuracy-tolerant rule above */
    struct derive_choice argmax;     /* argmax beta, q > 0.5 (the paper's rule) */
    struct derive_split splits[ARCH_MAX_SPLITS];
    int measurements;                /* accuracy evaluations in all */
};

struct derive_options {
    double max_accuracy_drop;  /* e.g. 0.005 */
    int bn_batches;            /* training batches (of net->batch) to re-estimate batch norm */
    long val_images;           /* validation images per accuracy (<= 0: all) */
};

/* The data derive measures on: training images for batch-norm statistics, validation images
 * for accuracy, both at input side `side`. */
struct derive_data {
    const struct dataset *train, *val;
    int side;
};

/* Runs the rule on the supernet net (built for arch's space, weights loaded; batch >= 1),
 * writing into r. Leaves net's choices and mask set to r->chosen (its batch-norm running
 * statistics are those of the last measurement; both callers discard the net). Returns 0, or
 * -1 with an error (empty data). */
int derive_for_ops(struct derive_result *r, struct net *net, const struct arch *arch,
                   const struct arch_cost *cost, const struct derive_data *data,
                   const struct derive_options *options);

/* The split rule for ops already in r->ops (table indices of arch's space) on a net whose
 * choices the caller set (the supernet with those ops, or a fixed network of them): channels
 * of split s ranked by scores[s] (largest first; channels[s] values for s in 1..L). Fills
 * r->unmasked_accuracy, r->chosen, r->splits and r->measurements; r->argmax is left as it is.
 * derive_for_ops is this with gamma as the scores. Returns 0 or -1 with an error. */
int derive_split_for(struct derive_result *r, struct net *net, const struct arch *arch,
                     const struct arch_cost *cost, const float *const *scores,
                     const struct derive_data *data, const struct derive_options *o);

/* The choice at split s with `kept` channels fixed in advance (prune-split retrained under
 * another seed at its run's split): the kept channels of largest scores (ties: lower index;
 * scores unread at splits 0 and L + 1), the predicted latency for ops, accuracy NAN. */
void derive_pinned(struct derive_choice *choice, const struct arch *arch,
                   const struct arch_cost *cost, const int *ops, int s, const float *scores,
                   int kept);

/* The plain rule alone (no data): ops and argmax split, channels with q > 0.5. */
void derive_argmax(struct derive_result *r, const struct arch *arch, const struct arch_cost *cost);

/* Derives the search of run folder `run` (its checkpoint, tables and job) and writes
 * run/arch.json: the accuracy-tolerant rule (the data of the job for batch norm and
 * accuracy), or with argmax_only the plain rule alone. r receives the result. Returns 0 or -1
 * with an error naming the file. */
int derive_run(const char *run, int argmax_only, struct derive_result *r);

#endif
