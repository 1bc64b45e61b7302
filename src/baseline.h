/* baseline: the networks the searched one is measured against (DESIGN.md, "Baselines and the
 * report"), each trained with the job's budget and evaluated on the same tables and link:
 *
 *   neurosurgeon    the job's fixed network (net.ops), the split with the lowest predicted
 *                   latency, every channel sent (Kang et al. 2017); its all-device and
 *                   all-edge figures are the two trivial baselines
 *   nas-then-split  the same supernet searched for the device alone (search.split = device,
 *                   FBNet/ProxylessNAS style), derived, then its best split with all channels
 *   prune-split     the fixed network trained, then at every split the channels ranked by the
 *                   batch-norm scale of the layer that makes them; the fewest within
 *                   derive.max_accuracy_drop of the unpruned accuracy (batch norm
 *                   re-estimated), the fastest such split, fine-tuned with that mask for
 *                   baseline.finetune_epochs (2-step pruning after Shi et al. 2019);
 *                   baseline.pin_split / pin_kept fix the split and count instead (how
 *                   jobs/compare retrains a prune-split run under another seed)
 *
 * Each ends with the files of search -> derive -> train --arch -> eval in out_dir: arch.json
 * (with "method"), model.h5, log.csv, summary.json; the tables in lut_device.h5 and
 * lut_edge.h5. */
#ifndef OFFNAS_BASELINE_H
#define OFFNAS_BASELINE_H

#include "eval.h"
#include "job.h"

enum baseline_method { BASELINE_NEUROSURGEON, BASELINE_NAS_THEN_SPLIT, BASELINE_PRUNE_SPLIT,
                       BASELINE_COUNT };

/* "neurosurgeon", "nas-then-split", "prune-split"; the index, or -1 for another name. */
extern const char *const BASELINE_NAMES[BASELINE_COUNT];
int baseline_parse(const char *name);

/* Builds, trains and evaluates baseline `method` of job into out_dir. Returns 0 with the
 * evaluation in *result, or -1 with an error. */
int baseline_run(enum baseline_method method, const struct job *job, const char *out_dir,
                 struct eval_result *result);

#endif
