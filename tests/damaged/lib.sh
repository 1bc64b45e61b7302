# shellcheck shell=bash
# damaged/lib.sh: what the damaged-file tests share (sourced by tests/damaged/*.sh). A tiny
# real run (profiles, search, derive, train --arch, eval) is made once per test script in its
# temporary folder; each case copies the file it damages, damages the copy (jq for JSON,
# tests/damaged/h5edit.py for HDF5, sed for text) and runs one command on it, which must:
#   exit 1, print exactly one line on stderr ("offnas: ..."), name the damaged file and the
#   field, and leave every file it was given unchanged (sha256 before and after).
#
#   source "$(dirname "$0")/lib.sh"
#   damaged_start NAME OFFNAS SOURCE_DIR     # harness_start + the fixture in $fx (see below)
#   damaged CASE FIELD_REGEX CMD...          # one case; CMD's files to watch: $watch (array)
#   finish
#
# The fixture $fx holds: job.ini (4 searchable layers, 1024 training images), dev.h5 and
# edge.h5 (profiles measured here), search/ (log.csv, checkpoint.h5, arch.json after derive),
# run/ (model.h5, summary.json of train --arch, eval.json). $h5edit is the HDF5 editor, $py
# the python3 with h5py.

# shellcheck source=tests/lib/harness.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/harness.sh"

h5edit=$(dirname "${BASH_SOURCE[0]}")/h5edit.py

# py: the python3 that has h5py (a pyenv python3 first in PATH may lack it; Debian's
# python3-h5py is for /usr/bin/python3, the interpreter h5edit.py names)
for py in python3 /usr/bin/python3; do
  "$py" -c 'import h5py' 2>/dev/null && break
done

damaged_start() {
  harness_start "$1"
  offnas=$2
  src=$3
  [[ -x $offnas ]] || die "$offnas is not an executable"
  "$py" -c 'import h5py' 2>/dev/null || die "no python3 with h5py (tests/deps: python3-h5py)"
  fashion_h5 "$offnas"
  fx=$tmp/fixture
  mkdir -p "$fx"
  cat >"$fx/job.ini" <<EOF
[data]
path = $fashion_file
val_size = 256
train_limit = 1024
test_limit = 256
$(tiny_net_section)
[train]
batch = 32
threads = 1
epochs = 1
log_seconds = 100
[search]
epochs = 2
warmup_epochs = 1
[latency]
device = $fx/dev.h5
edge = $fx/edge.h5
device_scale = 20
[network]
preset = wifi
EOF
  local log=$tmp/fixture.log
  {
    "$offnas" profile --job "$fx/job.ini" --device phone --out "$fx/dev.h5" &&
      "$offnas" profile --job "$fx/job.ini" --device server --out "$fx/edge.h5" &&
      "$offnas" search --job "$fx/job.ini" --out "$fx/search" &&
      "$offnas" derive --run "$fx/search" &&
      "$offnas" train --arch "$fx/search/arch.json" --out "$fx/run" &&
      "$offnas" eval --run "$fx/run"
  } >"$log" 2>&1 || die "the fixture run failed: $(tail -n 5 "$log" | tr '\n' '|')"
  cases=$tmp/cases
  mkdir -p "$cases"
}

# copy_case NAME SRC: a fresh copy of SRC (a file or a folder) at $cases/NAME, printed.
copy_case() {
  rm -rf "${cases:?}/$1"
  cp -a "$2" "$cases/$1"
  printf '%s\n' "$cases/$1"
}

# sums PATH...: sha256 of every file below PATH..., sorted (what "unchanged" compares).
sums() {
  find "$@" -type f -print0 2>/dev/null | sort -z | xargs -0 -r sha256sum
}

# damaged CASE FIELD_REGEX CMD...: CMD must exit 1 with one "offnas: " line on stderr that
# contains the file name in $damaged_file and matches FIELD_REGEX (grep -E), and must not
# change any file below the paths in $watch (default: $damaged_file).
damaged() {
  local name=$1 field=$2
  shift 2
  local -a paths=("${watch[@]:-$damaged_file}")
  local before after rc lines first
  before=$(sums "${paths[@]}")
  timeout -k 5 120 "$@" >"$tmp/stdout" 2>"$tmp/stderr" </dev/null
  rc=$?
  after=$(sums "${paths[@]}")
  lines=$(wc -l <"$tmp/stderr")
  first=$(head -n 1 "$tmp/stderr")
  if ((rc >= 124)); then
    fail "$name" "crashed or hung (exit $rc): $(head -c 300 "$tmp/stderr")"
  elif ((rc != 1)); then
    fail "$name" "exit $rc, expected 1: $(head -c 300 "$tmp/stderr")"
  elif ((lines != 1)); then
    fail "$name" "$lines lines on stderr, expected 1: $(head -n 5 "$tmp/stderr" | tr '\n' '|')"
  elif [[ $first != "offnas: "* ]]; then
    fail "$name" "stderr does not start with 'offnas: ': $first"
  elif [[ $first != *"$(basename "$damaged_file")"* ]]; then
    fail "$name" "the message does not name $(basename "$damaged_file"): $first"
  elif ! grep -qE -- "$field" <<<"$first"; then
    fail "$name" "the message does not match /$field/: $first"
  elif [[ $before != "$after" ]]; then
    fail "$name" "a file it was given changed: $(diff <(echo "$before") <(echo "$after") | head -n 3 | tr '\n' '|')"
  else
    pass "$name: $first"
  fi
  watch=()
}
