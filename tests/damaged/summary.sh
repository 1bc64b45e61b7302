#!/usr/bin/env bash
# Damaged and hand-edited summary.json files of runs (offnas eval's), read back by offnas report
# (src/report.c). Each case exits 1 with one line naming summary.json and the field
# (tests/damaged/lib.sh), and changes nothing in the run folder.
#
#   tests/damaged/summary.sh BUILD/offnas SOURCE_DIR       (ctest: damaged.summary)
set -u
source "$(dirname "$0")/lib.sh"
damaged_start damaged_summary "${1:?usage: summary.sh OFFNAS SOURCE_DIR}" "${2:-.}"

# report CASE JQ_FILTER FIELD_REGEX: report on a copy of the fixture's run whose summary.json
# the filter edited.
report() {
  local run
  run=$(copy_case "$1" "$fx/run")
  damaged_file=$run/summary.json
  jq "$2" "$fx/run/summary.json" >"$damaged_file" || die "$1: jq $2 failed"
  watch=("$run")
  damaged "$1" "$3" "$offnas" report --out "$cases/report.$1" "$run"
}

# numbers of other types, out of range, not finite, missing
report accuracy_string '.test_accuracy = "0.9"' 'test_accuracy: expected a number, got a string'
report accuracy_null '.test_accuracy = null' 'test_accuracy: missing'
report accuracy_missing 'del(.test_accuracy)' 'test_accuracy: missing'
report accuracy_1_5 '.test_accuracy = 1.5' 'test_accuracy: 1.5 is not a fraction'
report total_1e308 '.latency_ms.total = 1e308' 'latency_ms.total: 1e\+308 is not a number in \[0, 3\.6e\+06\]'
report device_neg '.latency_ms.device = -2' 'latency_ms.device: -2 is negative'
report edge_2h '.latency_ms.edge = 7.2e6' 'latency_ms.edge: 7\.2e\+06 is not a number'
report latency_string '.latency_ms = "fast"' 'latency_ms: expected an object, got a string'
report split_2e32 '.split_point = 4294967298' 'split_point: 4294967298 is not in 0\.\.33'
report split_real '.split_point = 2.5' 'split_point: 2\.5 is not a whole number'
report kept_2e32 '.kept_channels = 4294967300' 'kept_channels: 4294967300 is not in'
report kept_over_total '.kept_channels = 20 | .total_channels = 16' 'kept_channels: 20, more than total_channels 16'
report lambda_bool '.lambda = true' 'lambda: expected a number, got a boolean'
report method_bad '.method = "magic"' "method: 'magic' is not one of"
report method_number '.method = 3' 'method: expected a string'
long=$(printf 'k3e1, %.0s' $(seq 1 500))
report ops_long ".ops = \"$long\"" 'ops: longer than'
report ops_number '.ops = 7' 'ops: expected a string'
report not_object '[.]' 'expected an object, got an array'

# not JSON: numbers jansson cannot hold, cut files, an empty file
run=$(copy_case overflow "$fx/run")
damaged_file=$run/summary.json
jq '.test_accuracy = 12345' "$fx/run/summary.json" | sed 's/12345/1e999/' >"$damaged_file"
watch=("$run")
damaged "test_accuracy 1e999 (not a double)" 'test_accuracy: not a finite number' \
  "$offnas" report --out "$cases/report.overflow" "$run"
run=$(copy_case nan_text "$fx/run")
damaged_file=$run/summary.json
jq '.latency_ms.total = 12345' "$fx/run/summary.json" | sed 's/12345/NaN/' >"$damaged_file"
watch=("$run")
damaged "latency_ms.total NaN (not JSON)" 'line [0-9]+' \
  "$offnas" report --out "$cases/report.nan_text" "$run"
run=$(copy_case cut "$fx/run")
damaged_file=$run/summary.json
head -c 100 "$fx/run/summary.json" >"$damaged_file"
watch=("$run")
damaged "summary.json cut after 100 bytes" 'line [0-9]+' \
  "$offnas" report --out "$cases/report.cut" "$run"
run=$(copy_case empty "$fx/run")
damaged_file=$run/summary.json
: >"$damaged_file"
watch=("$run")
damaged "an empty summary.json" 'line [0-9]+|empty|end of' \
  "$offnas" report --out "$cases/report.empty" "$run"

# the fixture's run reports
check "the fixture's run reports" "$offnas" report --out "$cases/report.good" "$fx/run"
finish
