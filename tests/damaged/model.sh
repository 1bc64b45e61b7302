#!/usr/bin/env bash
# Damaged and hand-edited model files (RUN/model.h5 of train) read back by eval --run and by
# train.init: NaN or inf weights, negative running variances, wrong shapes and types, missing
# data sets, integer attributes out of range, a mask that is not 0/1. Each case exits 1 with
# one line naming model.h5 and the field (tests/damaged/lib.sh).
#
#   tests/damaged/model.sh BUILD/offnas SOURCE_DIR       (ctest: damaged.model)
set -u
source "$(dirname "$0")/lib.sh"
damaged_start damaged_model "${1:?usage: model.sh OFFNAS SOURCE_DIR}" "${2:-.}"


# model CASE H5EDIT_ARGS...: a copy of the fixture's run folder, its model.h5 edited; sets run
# and damaged_file.
model() {
  local name=$1
  shift
  run=$(copy_case "$name" "$fx/run")
  damaged_file=$run/model.h5
  "$py" "$h5edit" "$damaged_file" "$@" || die "$name: h5edit $*"
}

# evaluate CASE FIELD_REGEX: eval --run on the case's folder (summary.json is written only
# after the model loaded, so the whole folder must stay as it was).
evaluate() {
  watch=("$run")
  damaged "$1" "$2" "$offnas" eval --run "$run"
}

model nan_weight set params 5 nan
evaluate "a NaN weight" '/params\[5\]: nan is not a finite number'
model inf_weight set params 0 -inf
evaluate "an -inf weight" '/params\[0\]: -inf is not a finite number'
model neg_variance set running_stats 32 -2
evaluate "a negative running variance" '/running_stats\[32\]: -2 is not a variance'
model nan_stats fill running_stats nan
evaluate "NaN running statistics" '/running_stats\[0\]: nan'
model rank2_params replace params 3,4 float32
evaluate "2-D weights" '/params: expected rank 1'
model f64_params replace params 100 float64
evaluate "float64 weights" '/params: expected float32, found float64'
model short_params replace params 100 float32
evaluate "weights of another network" '/params has 100 values'
model no_params delete params
evaluate "no weights" '/params: missing'
model no_stats delete running_stats
evaluate "no running statistics" '/running_stats: missing'
model wide_mask_layer attr / mask_layer 1099511627776
evaluate "mask_layer beyond int" 'mask_layer: 1099511627776 is not in -1\.\.3'
model neg_wide_mask_layer attr / mask_layer -1099511627776
evaluate "mask_layer far below -1" 'mask_layer: -1099511627776 is not in'
model neg_mask_layer attr / mask_layer -2
evaluate "mask_layer -2" 'mask_layer: -2 is not in -1\.\.3'
model no_mask_layer delete /@mask_layer
evaluate "no mask_layer" 'attribute mask_layer missing'
model classes attr / classes 11
evaluate "another class count" 'classes: 11 is not in 10\.\.10'
model wide_classes attr / classes 34359738368
evaluate "classes beyond int" 'classes: 34359738368 is not in'
model neg_side attr / input_side -28
evaluate "a negative input side" 'input_side: -28 is not in'
model huge_parameters attr / parameters 4611686018427387904
evaluate "a parameter count beyond the network's" 'parameters: 4611686018427387904 is not in'
model mask_layer_2 attr / mask_layer 2
evaluate "a mask layer without a mask" '/mask: missing'
# add_mask FILE N: a mask of N ones in FILE (h5edit replaces only what exists).
add_mask() {
  "$py" -c 'import sys, h5py, numpy
with h5py.File(sys.argv[1], "r+") as f:
    f["mask"] = numpy.ones(int(sys.argv[2]), dtype="float32")' "$1" "$2"
}

# a mask on layer 2 (16 channels) of 0.5 and of the wrong size
model half_mask attr / mask_layer 1
add_mask "$damaged_file" 16 && "$py" "$h5edit" "$damaged_file" set mask 3 0.5
evaluate "a mask value of 0.5" '/mask\[3\]: 0\.5 is not 0 or 1'
model short_mask attr / mask_layer 1
add_mask "$damaged_file" 15
evaluate "a mask of 15 values for 16 channels" '/mask has 15 values, layer 2 has 16'

# train.init reads model.h5 through the same checks
model init_nan set params 1 nan
damaged "train.init: a NaN weight" '/params\[1\]: nan' \
  "$offnas" train --arch "$fx/search/arch.json" --out "$cases/init_out" --set "train.init=$damaged_file"

finish
