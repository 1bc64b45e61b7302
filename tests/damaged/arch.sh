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

long=$(printf 'k3e1%.0s' $(seq 1 400))
arch long_op ".ops[0] = \"$long\""
damaged "an op name of 1600 characters" 'ops\[0\]' "$offnas" train --arch "$damaged_file" --out "$cases/out"

finish
