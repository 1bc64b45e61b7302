#!/usr/bin/env bash
# Damaged and hand-edited arch.json files: derive's output read back by train --arch, eval and
# report. Each case exits 1 with one line naming arch.json and the field (tests/damaged/lib.sh).
#
#   tests/damaged/arch.sh BUILD/offnas SOURCE_DIR       (ctest: damaged.arch)
set -u
source "$(dirname "$0")/lib.sh"
damaged_start damaged_arch "${1:?usage: arch.sh OFFNAS SOURCE_DIR}" "${2:-.}"

# arch CASE JQ_FILTER: a copy of the fixture's arch.json edited by the filter; sets damaged_file.
arch() {
  damaged_file=$(copy_case "$1" "$fx/search/arch.json")
  jq "$2" "$fx/search/arch.json" >"$damaged_file.new" && mv "$damaged_file.new" "$damaged_file"
}

# train CASE FIELD_REGEX: train --arch on the damaged copy (the fixture's job: 4 layers, split 5).
train() {
  damaged "$1" "$2" "$offnas" train --arch "$damaged_file" --out "$cases/out.$1"
}

# A valid arch.json split after layer 2 (16 channels), the base of the channel cases.
split2='.split_point = 2 | .total_channels = 16 | .kept_channels = 4 | .channels = [0, 1, 2, 3]'

# op names: a fixed buffer filled from the file, lengths, types, counts
long=$(printf 'k3e1%.0s' $(seq 1 400))
arch long_op ".ops[0] = \"$long\""
train "an op name of 1600 characters" 'ops\[0\]'
longer=$(printf 'k3e1%.0s' $(seq 1 1500))
arch longer_op ".ops[2] = \"$longer\""
train "an op name of 6000 characters (longer than the joined ops buffer)" 'ops\[2\]'
arch op_20 '.ops[1] = "k3e1k3e1k3e1k3e1k3e1"'
train "an op name of 20 characters" 'ops\[1\]'
arch op_bad '.ops[3] = "k9e1"'
train "an op with kernel 9" 'ops\[3\]'
arch op_number '.ops[1] = 42'
train "an op that is a number" 'ops\[1\].*integer'
arch ops_string '.ops = "skip, k5e3, skip, k5e3"'
train "ops a string, not an array" 'ops: expected an array'
arch ops_empty '.ops = []'
train "no ops" 'ops: 0 ops'
arch ops_40 '.ops = [range(40) | "k3e1"]'
train "40 ops (more than a network has layers)" 'ops: 40 ops'
arch ops_3 '.ops = ["skip", "k5e3", "skip"]'
train "3 ops for 4 layers" 'ops'
arch ops_missing 'del(.ops)'
train "ops missing" 'ops: missing'

# 64-bit integers narrowed to int: each must be range-checked first
arch split_2e32 '.split_point = 4294967298'
train "split_point 2^32 + 2 (was read as 2)" 'split_point: 4294967298 is not in'
arch split_neg '.split_point = -4294967296'
train "split_point -2^32 (was read as 0)" 'split_point: -4294967296 is not in'
arch split_6 '.split_point = 6'
train "split_point 6 for 4 layers" 'split_point: 6 is not in 0\.\.5'
arch split_string '.split_point = "2"'
train "split_point a string" 'split_point: expected an integer, got a string'
arch split_real '.split_point = 1.5'
train "split_point 1.5" 'split_point: expected an integer, got a real'
arch split_missing 'del(.split_point)'
train "split_point missing" 'split_point: missing'
arch total_2e32 "$split2 | .total_channels = 4294967312"
train "total_channels 2^32 + 16" 'total_channels: 4294967312'
arch kept_2e32 "$split2 | .kept_channels = 4294967300"
train "kept_channels 2^32 + 4" 'kept_channels: 4294967300'
arch channel_2e32 "$split2 | .channels[1] = 4294967297"
train "a channel 2^32 + 1 (was read as 1)" 'channels\[1\]: 4294967297'

# channels: indices, duplicates, counts, and the layer they belong to
arch channel_twice "$split2 | .channels = [0, 1, 1, 3]"
train "a channel listed twice" 'channels\[2\].*twice'
arch channel_16 "$split2 | .channels = [0, 1, 2, 16]"
train "channel 16 of 16" 'channels\[3\]: 16 is not in 0\.\.15'
arch channel_neg "$split2 | .channels = [0, -1, 2, 3]"
train "channel -1" 'channels\[1\]: -1'
arch channel_string "$split2 | .channels[0] = \"0\""
train "a channel that is a string" 'channels\[0\].*string'
arch channels_object "$split2 | .channels = {}"
train "channels an object" 'channels: expected an array'
arch kept_more "$split2 | .kept_channels = 5"
train "kept_channels 5, channels lists 4" 'kept_channels: 5'
arch kept_missing "$split2 | del(.kept_channels)"
train "kept_channels missing" 'kept_channels: missing'
arch total_wrong "$split2 | .total_channels = 8"
train "total_channels 8 where layer 2 has 16" 'total_channels: 8'
arch total_at_end '.total_channels = 16 | .kept_channels = 1 | .channels = [0]'
train "channels at split 5 (all on the device)" 'total_channels: 16'
arch no_channels "$split2 | .kept_channels = 0 | .channels = []"
train "split 2 sending no channels" 'channels: split_point 2 sends no channels'
arch channel_total_0 '.channels = [0]'
train "a channel where total_channels is 0" 'channels\[0\]'

# the other fields read back
arch job_number '.job = 7'
train "job a number" 'job: expected a string'
arch job_missing 'del(.job)'
train "job missing" 'job: missing'
arch job_bad '.job = "[net]\nlayers = banana\n"'
train "job text with a bad key value" 'job'
arch method_bad '.method = "magic"'
train "method unknown" "method: 'magic'"
arch lut_number '.lut_device = 3'
train "lut_device a number" 'lut_device: expected a string'
arch lut_long ".lut_edge = \"/tmp/$long\""
train "lut_edge a 1605-character path" 'lut_edge: longer than'
damaged_file=$(copy_case not_json "$fx/search/arch.json")
head -c 200 "$fx/search/arch.json" >"$damaged_file"
train "arch.json cut after 200 bytes" 'line [0-9]+'
arch array '[.]'
train "an array, not an object" 'expected an object'

# eval and report read the arch.json of a run (the copy train --arch wrote)
run=$(copy_case eval_split "$fx/run")
damaged_file=$run/arch.json
jq '.split_point = 4294967298' "$fx/run/arch.json" >"$damaged_file"
watch=("$run")
damaged "eval: split_point 2^32 + 2" 'split_point: 4294967298' "$offnas" eval --run "$run"
run=$(copy_case report_ops "$fx/run")
damaged_file=$run/arch.json
jq 'del(.ops)' "$fx/run/summary.json" >"$run/summary.json"
jq ".ops[0] = \"$longer\"" "$fx/run/arch.json" >"$damaged_file"
watch=("$run")
damaged "report: a 6000-character op name" 'ops\[0\]' "$offnas" report --out "$cases/report" "$run"

# the fixture's arch.json edited to a valid split is still accepted (the checks refuse only
# what is wrong)
arch split2_ok "$split2"
check "a valid split after layer 2 loads" "$offnas" train --arch "$damaged_file" \
  --out "$cases/out.split2_ok" --set train.epochs=0

finish
