#!/usr/bin/env bash
# Damaged and hand-edited latency profiles (HDF5, src/latency.c): read back by search (the job's
# latency.device / latency.edge) and eval (the tables arch.json names). Each case exits 1 with one
# line naming the profile and the field (tests/damaged/lib.sh).
#
#   tests/damaged/profile.sh BUILD/offnas SOURCE_DIR       (ctest: damaged.profile)
set -u
source "$(dirname "$0")/lib.sh"
damaged_start damaged_profile "${1:?usage: profile.sh OFFNAS SOURCE_DIR}" "${2:-.}"


# profile CASE EDIT...: a copy of the fixture's device profile edited by h5edit.py EDIT...;
# sets damaged_file.
profile() {
  local name=$1
  shift
  damaged_file=$(copy_case "$name.h5" "$fx/dev.h5")
  "$py" "$h5edit" "$damaged_file" "$@" || die "$name: h5edit.py $* failed"
}

# search CASE FIELD_REGEX: search with the damaged copy as the device profile.
search() {
  damaged "$1" "$2" "$offnas" search --job "$fx/job.ini" --out "$cases/out.$1" \
    --set "latency.device=$damaged_file"
}

# the times: NaN, inf, negative, and finite but absurd (a sum of 1e308 is inf, E[T] NaN)
profile median_nan set median_ms 3 nan
search "a NaN median" 'median_ms \(slot 1, op 2\): nan'
profile p90_inf set p90_ms 0 inf
search "an infinite p90" 'p90_ms \(slot 0, op 0\): inf'
profile p10_neg set p10_ms 5 -1
search "a negative p10" 'p10_ms \(slot 2, op 0\): -1'
profile median_1e308 set median_ms 1 1e308
search "a median of 1e308 ms" 'median_ms \(slot 1, op 0\): 1e\+308'
profile median_2h set median_ms 2 7.2e6
search "a median of two hours" 'median_ms \(slot 1, op 1\): 7\.2e\+06'
profile repeats_neg set repeats 4 -5
search "negative repeats" 'repeats \(slot 1, op 3\): -5'

# the index data sets: entries outside the space, twice, missing
profile slot_big set slot 2 4294
search "an entry of slot 4294" 'entry 2 is \(slot 4294'
profile op_twice set op 2 0
search "an entry listed twice" 'appears twice'
profile slot_huge replace slot 100000 int32
search "a /slot of 100000 entries" '/slot: 100000 entries'

# element types, ranks and shapes of every data set
profile median_f32 replace median_ms 17 float32
search "median_ms stored as float32" 'median_ms'
profile slot_i64 replace slot 17 int64
search "slot stored as int64" 'slot'
profile p10_2d replace p10_ms 17,1 float64
search "p10_ms of rank 2" 'p10_ms'
profile op_scalar replace op '' int32
search "op a scalar" '/op|op:'
profile repeats_short replace repeats 3 int32
search "repeats with 3 entries" '/repeats has 3 entries'
profile no_p90 delete p90_ms
search "p90_ms missing" 'p90_ms'

# attributes: 64-bit integers range-checked before they become ints, types, string lengths
profile threads_2e32 attr / threads 4294967299
search "threads 2^32 + 3 (was read as 3)" 'threads: 4294967299 is not in'
profile version_neg attr / version -4294967296
search "version -2^32 (was read as 0)" 'version: -4294967296 is not in'
profile slot_count_7 attr / slot_count 7
search "slot_count 7 for 4 layers" 'slot_count: 7 is not in 6\.\.6'
profile threads_string attr / threads four string
search "threads a string" 'threads'
profile no_version delete /@version
search "version missing" 'version'
long=$(printf 'x%.0s' $(seq 1 300))
profile device_long attr / device "$long" string
search "a device name of 300 characters" 'device: longer than 63'
profile source_long attr / source "$long" string
search "a source of 300 characters" 'source: longer than 255'
profile fingerprint_bad attr / fingerprint "$long" string
search "a fingerprint of 300 characters" 'fingerprint: longer than 63'
profile fingerprint_text attr / fingerprint nothex string
search "a fingerprint that is not hex" "fingerprint: 'nothex'"
profile space_other attr / space 'side=1' string
search "a space text that does not match" 'space: does not match'
profile mape_inf attr / fit_mape inf float64
search "an infinite fit_mape" 'fit_mape: inf'
profile rmse_huge attr / fit_rmse_ms 1e308 float64
search "fit_rmse_ms 1e308" 'fit_rmse_ms: 1e\+308'
profile mape_neg attr / fit_mape -3 float64
search "a negative fit_mape" 'fit_mape: -3'

# not a profile at all
damaged_file=$cases/text.h5
printf 'not hdf5\n' >"$damaged_file"
search "a text file" 'HDF5|hdf5'
damaged_file=$(copy_case cut.h5 "$fx/dev.h5")
truncate -s 2000 "$damaged_file"
search "a profile cut to 2000 bytes" 'cut|HDF5|hdf5|read'

# eval reads the tables arch.json names
profile eval_edge set median_ms 0 inf
run=$(copy_case eval_run "$fx/run")
jq --arg p "$damaged_file" '.lut_edge = $p' "$fx/run/arch.json" >"$run/arch.json"
watch=("$damaged_file" "$run")
damaged "eval: an infinite stem time in the edge table" 'median_ms \(slot 0, op 0\): inf' \
  "$offnas" eval --run "$run"

# an hour per entry is still accepted (the bound is CHECK_MAX_LATENCY_MS, inclusive)
profile hour set median_ms 1 3.6e6
check "a median of exactly one hour is accepted" "$offnas" search --job "$fx/job.ini" \
  --out "$cases/out.hour" --set "latency.device=$damaged_file" --set search.epochs=0
finish
