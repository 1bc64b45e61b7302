#!/usr/bin/env bash
# Bad input to the offnas program: every case must exit 1 or 2 (never crash: no exit >= 128)
# with exactly one line on stderr that starts with "offnas: ". Also: `--help` of every command
# exits 0 and prints "usage:", and a failed import leaves an existing output file untouched.
#
#   tests/cli.sh BUILD/offnas [SOURCE_DIR]       (ctest: cli.bad_input)
#
# Needs the Fashion-MNIST idx files in /usr/share/datasets/fashion-mnist (tests/deps), imported
# once per build folder (tests/lib/harness.sh). Prints each case and a summary; exits 1 on any
# failure.
set -u
# shellcheck source=tests/lib/harness.sh
source "$(dirname "$0")/lib/harness.sh"

offnas=${1:?usage: tests/cli.sh OFFNAS_BINARY [SOURCE_DIR]}
src=${2:-$(cd "$(dirname "$0")/.." && pwd)}

if [[ ! -x $offnas ]]; then
  echo "cli.sh: $offnas is not an executable" >&2
  exit 1
fi
harness_start cli

# bad NAME ARGS...: offnas ARGS must exit 1 or 2 with one "offnas: " line on stderr.
bad() {
  local name=$1
  shift
  "$offnas" "$@" >"$tmp/stdout" 2>"$tmp/stderr" </dev/null
  local rc=$?
  last_rc=$rc
  local lines
  lines=$(wc -l <"$tmp/stderr")
  local first
  first=$(head -n 1 "$tmp/stderr")
  if ((rc >= 128)); then
    fail "$name" "crashed (exit $rc, signal $((rc - 128))): $(head -c 300 "$tmp/stderr")"
  elif ((rc != 1 && rc != 2)); then
    fail "$name" "exit $rc, expected 1 or 2"
  elif ((lines != 1)); then
    fail "$name" "$lines lines on stderr, expected 1: $(head -n 5 "$tmp/stderr" | tr '\n' '|')"
  elif [[ $first != "offnas: "* ]]; then
    fail "$name" "stderr does not start with 'offnas: ': $first"
  else
    pass "$name (exit $rc) $first"
  fi
}

# exits NAME CODE: the last `bad` case exited with CODE.
exits() {
  if [[ $last_rc == "$2" ]]; then pass "$1: exit $2"; else fail "$1: exit $2" "exit $last_rc"; fi
}

# help NAME ARGS...: offnas ARGS exits 0 and prints "usage:" on stdout.
help() {
  local name=$1
  shift
  "$offnas" "$@" >"$tmp/stdout" 2>"$tmp/stderr" </dev/null
  local rc=$?
  if ((rc != 0)); then
    fail "$name" "exit $rc, expected 0"
  elif ! grep -q "usage:" "$tmp/stdout"; then
    fail "$name" "no 'usage:' on stdout"
  else
    pass "$name"
  fi
}

# ---- a real data set, a search space's profiles, broken files -----------------------------

# a copy of the shared import: the cases below try to overwrite it
fashion_h5 "$offnas"
data=$tmp/fashion.h5
cp "$fashion_file" "$data" || die "cannot copy $fashion_file"
slice=(--set "data.path=$data" --set data.train_limit=1500 --set data.val_size=300
       --set data.test_limit=300 --set train.batch=32 --set train.threads=1)

printf '[train]\nepochz = 3\n' >"$tmp/unknown_key.ini"

mkdir "$tmp/truncated"
cp "$FASHION_IDX"/*-ubyte.gz "$tmp/truncated/"
gz=$tmp/truncated/train-images-idx3-ubyte.gz
truncate -s $(($(stat -c %s "$gz") / 2)) "$gz"

# the last file an import reads: the failure comes as late as possible
mkdir "$tmp/truncated_late"
cp "$FASHION_IDX"/*-ubyte.gz "$tmp/truncated_late/"
gz=$tmp/truncated_late/t10k-labels-idx1-ubyte.gz
truncate -s $(($(stat -c %s "$gz") / 2)) "$gz"

mkdir "$tmp/empty_run" "$tmp/corrupt_run"
head -c 65536 /dev/urandom >"$tmp/corrupt_run/checkpoint.h5"
cp "$src/profiles/pixel6.h5" "$tmp/corrupt_run/lut_device.h5"
cp "$src/profiles/pixel6.h5" "$tmp/corrupt_run/lut_edge.h5"
head -c 65536 /dev/urandom >"$tmp/garbage.h5"

# ---- the cases ----------------------------------------------------------------------------

bad "missing job file" train --job "$tmp/no_such_job.ini" --out "$tmp/o"
bad "resume without a checkpoint" search --resume --out "$tmp/no_such_run"
bad "profiler with an unknown device" profiler --device phone
bad "profiler outside an MPI job" profiler --device mobile
bad "bench search with 0 steps" bench search --steps 0
bad "job with unknown key" train --job "$tmp/unknown_key.ini" --out "$tmp/o"
bad "--set with bad value" train --set train.epochs=abc --out "$tmp/o"
bad "--set with unknown key" train --set train.epochz=3 --out "$tmp/o"
bad "--set without '='" train --set train.epochs --out "$tmp/o"
bad "--job without value" train --job
bad "unknown command" frobnicate
bad "unknown option (train)" train --frobnicate
bad "unknown option (search)" search --frobnicate
bad "unknown option (derive)" derive --frobnicate
bad "unknown option (eval)" eval --frobnicate
bad "unknown option (data import)" data import fashion-mnist --frobnicate --out "$tmp/x.h5"
bad "data import from a missing dir" data import fashion-mnist --from "$tmp/no_such_dir" --out "$tmp/x.h5"
bad "data import of a truncated .gz" data import fashion-mnist --from "$tmp/truncated" --out "$tmp/x.h5"
if [[ -e $tmp/x.h5 ]] || compgen -G "$tmp/x.h5.tmp*" >/dev/null; then
  fail "failed imports leave no output" "$(ls "$tmp" | grep '^x\.h5' | tr '\n' ' ')"
else
  pass "failed imports leave no output"
fi
bad "train with a missing data file" train --set "data.path=$tmp/no_such_data.h5" --out "$tmp/o_train"
bad "data info of a missing file" data info "$tmp/no_such_data.h5"
bad "data info of garbage" data info "$tmp/garbage.h5"
bad "eval --run on a missing dir" eval --run "$tmp/no_such_run"
bad "derive --run on an empty dir" derive --run "$tmp/empty_run"
bad "derive with a corrupt checkpoint.h5" derive --run "$tmp/corrupt_run"
bad "search with a garbage device profile" search "${slice[@]}" --set "latency.device=$tmp/garbage.h5" \
  --set "latency.edge=$src/profiles/pixel6.h5" --out "$tmp/o_search"
bad "train --arch with a missing arch.json" train --arch "$tmp/no_such_arch.json" --out "$tmp/o_arch"
printf '{"ops": [' >"$tmp/broken_arch.json"
bad "train --arch with a broken arch.json" train --arch "$tmp/broken_arch.json" --out "$tmp/o_arch"

bad "baseline without a method" baseline
exits "baseline without a method" 2
bad "baseline with an unknown method" baseline frobnicate --out "$tmp/o"
exits "baseline with an unknown method" 2
bad "baseline without --out" baseline neurosurgeon
exits "baseline without --out" 2
bad "baseline with a missing job file" baseline prune-split --job "$tmp/no_such_job.ini" --out "$tmp/o"
exits "baseline with a missing job file" 1
bad "derive with an unknown mode" derive --run "$tmp/empty_run" --mode best
exits "derive with an unknown mode" 2
bad "job with an unknown key" job --key train.epochz
exits "job with an unknown key" 1
bad "job with a key that is not SECTION.KEY" job --key epochs
exits "job with a key that is not SECTION.KEY" 1
"$offnas" job --set search.lambda=7 --key search.lambda >"$tmp/stdout" 2>&1
if [[ $(cat "$tmp/stdout") == 7 ]]; then pass "job --key prints the value in effect"; else fail "job --key prints the value in effect" "$(head -c 200 "$tmp/stdout")"; fi
bad "report without arguments" report
exits "report without arguments" 2
bad "report without run folders" report --out "$tmp/report"
exits "report without run folders" 2
mkdir "$tmp/no_accuracy_run"
echo '{"latency_ms": {"total": 3}}' >"$tmp/no_accuracy_run/summary.json"
bad "report of a summary without test_accuracy" report --out "$tmp/report" "$tmp/no_accuracy_run"
exits "report of a summary without test_accuracy" 1
bad "report of a folder without summary.json" report --out "$tmp/report" "$tmp/empty_run"
exits "report of a folder without summary.json" 1
if [[ -e $tmp/report ]]; then
  fail "failed reports write nothing" "$(ls -A "$tmp/report" | tr '\n' ' ')"
else
  pass "failed reports write nothing"
fi

bad "search --until-epoch 0" search --until-epoch 0 --out "$tmp/o_search"
exits "search --until-epoch 0" 2

# jobs/compare's own argument errors: exit 2, one line naming the problem, nothing run.
for args in "nosuch_regime $tmp/o_compare" "jobs/camera.ini" "jobs/camera.ini $tmp/o_compare --frobnicate" \
  "COMPARE_SEEDS=0 jobs/camera.ini $tmp/o_compare" "COMPARE_SEEDS=two jobs/camera.ini $tmp/o_compare" \
  "COMPARE_SEEDS=10000 jobs/camera.ini $tmp/o_compare"; do
  env=()
  if [[ $args == COMPARE_SEEDS=* ]]; then env=("${args%% *}") args=${args#* }; fi
  # shellcheck disable=SC2086
  (cd "$src" && env OFFNAS="$offnas" "${env[@]}" jobs/compare $args) >"$tmp/stdout" 2>"$tmp/stderr"
  rc=$?
  if ((rc == 2)) && [[ $(wc -l <"$tmp/stderr") == 1 ]] && grep -q '^jobs/compare: ' "$tmp/stderr" &&
    [[ ! -e $tmp/o_compare ]]; then
    pass "${env[*]:+${env[*]} }jobs/compare $args"
  else
    fail "${env[*]:+${env[*]} }jobs/compare $args" "exit $rc: $(head -c 300 "$tmp/stderr")"
  fi
done

# A failed import must not touch an existing output file.
before=$(sha256sum <"$data")
bad "import over an existing file fails" data import fashion-mnist --from "$tmp/truncated" --out "$data"
bad "late failing import over an existing file" data import fashion-mnist --from "$tmp/truncated_late" --out "$data"
after=$(sha256sum <"$data")
if [[ $before == "$after" ]]; then
  pass "existing output file untouched by the failed imports"
else
  fail "existing output file untouched by the failed imports" "checksum changed"
fi
if compgen -G "$data.tmp*" >/dev/null; then
  fail "failed import removes its temporary file" "$(ls "$tmp" | grep 'fashion\.h5\.tmp' | tr '\n' ' ')"
else
  pass "failed import removes its temporary file"
fi

# ---- --help ---------------------------------------------------------------------------------

help "offnas --help" --help
help "data --help" data --help
help "data import --help" data import --help
help "data info --help" data info --help
help "train --help" train --help
help "search --help" search --help
help "derive --help" derive --help
help "eval --help" eval --help
help "baseline --help" baseline --help
help "job --help" job --help
help "bench --help" bench --help
help "bench train --help" bench train --help
help "profile --help" profile --help
help "profile fit --help" profile fit --help
help "profiler --help" profiler --help
help "bench search --help" bench search --help
help "bench infer --help" bench infer --help
help "report --help" report --help
help "edge-serve --help" edge-serve --help
help "device-run --help" device-run --help

# the split runtime's commands: bad options and a missing run folder
bad "edge-serve without --run" edge-serve
exits "edge-serve without --run" 2
bad "edge-serve --listen without a port" edge-serve --run "$tmp" --listen 127.0.0.1
exits "edge-serve --listen without a port" 2
bad "edge-serve --listen with a host name" edge-serve --run "$tmp" --listen example.org:80
bad "edge-serve --threads 0" edge-serve --run "$tmp" --threads 0
bad "edge-serve --read-timeout not a number" edge-serve --run "$tmp" --read-timeout soon
bad "edge-serve of a folder without arch.json" edge-serve --run "$tmp/no_such_run"
exits "edge-serve of a folder without arch.json" 1
bad "device-run --server without a port" device-run --run "$tmp" --server 127.0.0.1:
exits "device-run --server without a port" 2
bad "device-run --rtt-ms negative" device-run --run "$tmp" --rtt-ms -1
bad "device-run --tables without a comma" device-run --run "$tmp" --tables only_one.h5
bad "device-run of a folder without arch.json" device-run --run "$tmp/no_such_run" --server 127.0.0.1:9
exits "device-run of a folder without arch.json" 1

# with no OPENBLAS_CORETYPE of the user's, the kernels the program names are the ones OpenBLAS
# loads (it prints its core under OPENBLAS_VERBOSE=2; the last line is the re-executed
# program's): SkylakeX on an AVX-512 CPU
flags=$(grep -m 1 '^flags' /proc/cpuinfo 2>/dev/null)
if [[ $(uname -m) == x86_64 ]] && grep -qw avx512f <<<"$flags" && grep -qw avx512bw <<<"$flags" &&
  grep -qw avx512vl <<<"$flags" && grep -qw avx512dq <<<"$flags"; then
  core=$(env -u OPENBLAS_CORETYPE -u OFFNAS_ENV_SET OPENBLAS_VERBOSE=2 "$offnas" --help 2>&1 >/dev/null |
    grep '^Core:' | tail -n 1)
  if [[ $core == "Core: SkylakeX" ]]; then pass "OpenBLAS loads its SkylakeX kernels"; else fail "OpenBLAS loads its SkylakeX kernels" "'$core'"; fi
fi

finish
