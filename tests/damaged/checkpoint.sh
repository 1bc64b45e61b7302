#!/usr/bin/env bash
# Damaged and hand-edited search checkpoints (DIR/checkpoint.h5) read back by search --resume
# and derive --run: negative or inconsistent counters, NaN/inf in weights, optimizer state,
# architecture parameters and tables, 64-bit attributes beyond int, wrong shapes and types,
# missing attributes, another version, a damaged job text. Each case exits 1 with one line
# naming checkpoint.h5 and the field (tests/damaged/lib.sh).
#
#   tests/damaged/checkpoint.sh BUILD/offnas SOURCE_DIR       (ctest: damaged.checkpoint)
set -u
source "$(dirname "$0")/lib.sh"
damaged_start damaged_checkpoint "${1:?usage: checkpoint.sh OFFNAS SOURCE_DIR}" "${2:-.}"


# ckpt CASE H5EDIT_ARGS...: a copy of the fixture's search folder without the previous
# checkpoint (no fallback), its checkpoint.h5 edited; sets run and damaged_file, and watches
# the whole folder (a refused resume writes nothing).
ckpt() {
  local name=$1
  shift
  run=$(copy_case "$name" "$fx/search")
  rm -f "$run/checkpoint.prev.h5"
  damaged_file=$run/checkpoint.h5
  "$py" "$h5edit" "$damaged_file" "$@" || die "$name: h5edit $*"
}

# resume CASE FIELD_REGEX: search --resume on the case's folder.
resume() {
  watch=("$run")
  damaged "$1" "$2" "$offnas" search --resume --out "$run"
}

# The fixture: 768 training images, batch 32, 2 epochs -> 48 steps, 24 per epoch.
ckpt neg_step attr / step -5
resume "a negative step" 'step: -5 is not in'
ckpt huge_step attr / step 1099511627776
resume "a step beyond the run's steps" 'step: 1099511627776 is beyond'
ckpt neg_epoch attr / epoch -1
resume "a negative epoch" 'epoch: -1 is not in'
ckpt many_epochs attr / epoch 99
resume "more epochs done than search.epochs" 'epoch: 99 epochs done'
ckpt wrong_epoch attr / epoch 1
resume "an epoch count that does not fit the step" 'epoch: 1 epochs done does not fit step 48'
ckpt wide_epoch attr / epoch 4294967298
resume "an epoch beyond int" 'epoch: 4294967298 is not in'
ckpt neg_arch_steps attr / arch_steps -3
resume "negative architecture steps" 'arch_steps: -3 is not in'
ckpt more_arch_steps attr / arch_steps 49
resume "more architecture steps than steps" 'arch_steps: 49 is not in 0\.\.48'
ckpt nan_t_ref attr / t_ref_ms nan float64
resume "t_ref_ms NaN" 't_ref_ms: nan'
ckpt zero_t_ref attr / t_ref_ms 0 float64
resume "t_ref_ms 0" 't_ref_ms: 0 is not a latency'
ckpt inf_t_ref attr / t_ref_ms inf float64
resume "t_ref_ms inf" 't_ref_ms: inf'
ckpt wide_shards attr / shards 1099511627777
resume "shards beyond int" 'shards: 1099511627777 is not in'
ckpt neg_trainers attr / trainers -1
resume "trainers -1" 'trainers: -1 is not in'
ckpt wide_table_version attr / device_table_version 8589934592
resume "a table version beyond int" 'device_table_version: 8589934592 is not in'
ckpt new_version attr / version 3
resume "a checkpoint of a later version" 'version: 3 is not in 1\.\.2'
ckpt no_step delete /@step
resume "no step attribute" 'attribute step missing'
ckpt no_t_ref delete /@t_ref_ms
resume "no t_ref_ms attribute" 'attribute t_ref_ms missing'
ckpt string_step attr / step 12 string
resume "a step stored as a string" 'attribute step: expected an integer'
ckpt nan_weight set weights/params 7 nan
resume "a NaN weight" '/weights/params\[7\]: nan is not a finite'
ckpt inf_momentum set weights/momentum 3 inf
resume "an inf momentum" '/weights/momentum\[3\]: inf'
ckpt neg_variance set weights/running_stats 32 -1
resume "a negative running variance" '/weights/running_stats\[32\]: -1 is not a variance'
ckpt nan_mean set weights/running_stats 0 nan
resume "a NaN running mean" '/weights/running_stats\[0\]: nan'
ckpt nan_alpha set arch/params 0 nan
resume "a NaN architecture parameter" '/arch/params\[0\]: nan'
ckpt huge_beta fill arch/params 1e30
resume "architecture parameters of 1e30" '/arch/params\[0\]: 1e\+30'
ckpt neg_adam_v set arch/adam_v 2 -1
resume "a negative Adam second moment" '/arch/adam_v\[2\]: -1'
ckpt nan_adam_m set arch/adam_m 1 nan
resume "a NaN Adam first moment" '/arch/adam_m\[1\]: nan'
ckpt nan_table set tables/device_median_ms 17 nan
resume "a NaN in the stored device table" '/tables/device_median_ms\[17\]: nan'
ckpt neg_table set tables/edge_median_ms 17 -4
resume "a negative stored edge latency" '/tables/edge_median_ms\[17\]: -4'
ckpt nan_sums set epoch_sums 0 nan
resume "a NaN epoch sum" '/epoch_sums\[0\]: nan'
ckpt neg_images set epoch_sums 2 -10
resume "negative image counts in the epoch sums" '/epoch_sums: negative'
ckpt short_sums replace epoch_sums 3 float64
resume "epoch sums of 3 values" '/epoch_sums has 3 values'
ckpt rank2_params replace weights/params 3,4 float32
resume "2-D weights" 'weights/params.*rank 1'
ckpt f64_alpha replace arch/params 36 float64
resume "float64 architecture parameters" 'arch/params.*float32'
ckpt short_params replace weights/params 10 float32
resume "weights of another search space" '/weights/params has 10 values'
ckpt no_momentum delete weights/momentum
resume "no momentum" 'weights/momentum.*missing'
ckpt no_tables delete tables/edge_median_ms
resume "no edge table" 'tables/edge_median_ms.*missing'
ckpt no_job delete /@job
resume "no job text" 'attribute job missing'
ckpt bad_job attr / job $'[train]\nbatchx = 3\n' string
resume "a job text with an unknown key" 'job:2: unknown key .batchx.'

# derive --run reads the same checkpoint through the same checks
ckpt derive_nan_alpha set arch/params 0 nan
damaged "derive: a NaN architecture parameter" '/arch/params\[0\]: nan' \
  "$offnas" derive --run "$run" --mode argmax
ckpt derive_neg_step attr / step -1
damaged "derive: a negative step" 'step: -1 is not in' "$offnas" derive --run "$run"
ckpt derive_many_epochs attr / epoch 7
damaged "derive: more epochs than the job's" 'epoch: 7 epochs done' \
  "$offnas" derive --run "$run" --mode argmax
ckpt derive_nan_weight set weights/params 0 nan
damaged "derive: a NaN weight" '/weights/params\[0\]: nan' "$offnas" derive --run "$run"
ckpt derive_bad_job attr / job $'[train]\nbatch = -3\n' string
damaged "derive: a job text with a negative batch" 'checkpoint.h5: job: .*train.batch' \
  "$offnas" derive --run "$run" --mode argmax

finish
