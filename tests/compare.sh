#!/usr/bin/env bash
# jobs/compare's seeds (COMPARE_SEEDS) in seconds: a stand-in for offnas that trains nothing
# runs the whole compare, and the test checks what compare asked of it. Each run's final network
# is retrained under the next seeds after its pipeline (train --arch of the right arch.json, then
# eval; prune-split: its baseline rerun pinned to the run's split and channel count), the report
# averages them, a second compare keeps every finished seed, and COMPARE_SEEDS=1 adds nothing.
#
#   tests/compare.sh BUILD/offnas [SOURCE_DIR]       (ctest: cli.compare_seeds)
#
# The stand-in passes `job` and `report` to the real program (BUILD/offnas), so the seeds'
# summaries go through the real report.
set -u
# shellcheck source=tests/lib/harness.sh
source "$(dirname "$0")/lib/harness.sh"

offnas=${1:?usage: tests/compare.sh OFFNAS_BINARY [SOURCE_DIR]}
src=${2:-$(cd "$(dirname "$0")/.." && pwd)}
[[ -x $offnas ]] || { echo "compare.sh: $offnas is not an executable" >&2; exit 1; }
harness_start compare

# The stand-in: every call appends "COMMAND ARGS" to $FAKE_CALLS. derive and baseline write a
# valid arch.json (the fuzz corpus's, prune-split at split 2 keeping 3 of 16 channels, which
# a seed's own ranking changes), train --arch copies it and notes the seed, eval writes the
# summary with accuracy 0.8 + seed / 100.
fake=$tmp/fake-offnas
cat >"$fake" <<'EOF_FAKE'
#!/usr/bin/env bash
set -eu
echo "$*" >>"$FAKE_CALLS"
cmd=$1
shift
case $cmd in job | report) exec "$FAKE_REAL" "$cmd" "$@" ;; esac
method=${1:-} out= arch= seed=1 pin_split=-1 pin_kept=0
while (($#)); do
  case $1 in
    --out | --run) out=$2; shift 2 ;;
    --arch) arch=$2; shift 2 ;;
    --set)
      case $2 in
        train.seed=*) seed=${2#*=} ;;
        baseline.pin_split=*) pin_split=${2#*=} ;;
        baseline.pin_kept=*) pin_kept=${2#*=} ;;
      esac
      shift 2 ;;
    *) shift ;;
  esac
done
# arch_json METHOD SPLIT KEPT TOTAL CHANNELS: the arch.json of a network
arch_json() {
  jq --arg m "$1" --argjson s "$2" --argjson k "$3" --argjson t "$4" --argjson c "$5" \
    '.method = $m | .split_point = $s | .kept_channels = $k | .total_channels = $t |
     .channels = $c' "$FAKE_ARCH"
}
summary() { # summary DIR SEED: eval's summary.json of DIR's arch.json
  jq '{method, test_accuracy: (0.8 + '"$2"' / 100), lambda: 1, ops: (.ops | join(", ")),
      split_point, kept_channels, total_channels,
      latency_ms: {total: 5, all_device: 5, all_edge: 9}}' "$1/arch.json" >"$1/summary.json"
}
case $cmd in
  profile) echo table >"$out" ;;
  search) mkdir -p "$out" ;;
  derive) arch_json search 5 0 0 '[]' >"$out/arch.json" ;;
  train) mkdir -p "$out" && cp "$arch" "$out/arch.json" && echo "$seed" >"$out/seed" ;;
  eval) summary "$out" "$(cat "$out/seed")" ;;
  baseline)
    mkdir -p "$out"
    case $method in
      prune-split)
        if ((pin_split >= 0)); then
          arch_json prune-split "$pin_split" "$pin_kept" 16 "[$(seq -s, "$seed" $((seed + pin_kept - 1)))]"
        else
          arch_json prune-split 2 3 16 '[0, 1, 2]'
        fi ;;
      *) arch_json "$method" 5 0 0 '[]' ;;
    esac >"$out/arch.json"
    summary "$out" "$seed" ;;
  *) echo "offnas: fake: unknown command '$cmd'" >&2; exit 2 ;;
esac
EOF_FAKE
chmod +x "$fake"
export FAKE_REAL=$offnas FAKE_CALLS=$tmp/calls.log FAKE_ARCH=$src/tests/fuzz/corpus/arch_json/tiny-run.json
export OFFNAS=$fake COMPARE_PARALLEL=2 COMPARE_LAMBDAS="0.5 2"

# compare OUT [ARGS...]: jobs/compare jobs/search.ini OUT ARGS..., its output in $tmp/compare.log
compare() {
  local out=$1
  shift
  (cd "$src" && jobs/compare jobs/search.ini "$out" "$@") >"$tmp/compare.log" 2>&1
}

out=$tmp/seeds
if COMPARE_SEEDS=3 compare "$out" --set train.seed=5; then
  pass "compare with COMPARE_SEEDS=3 finishes"
else
  fail "compare with COMPARE_SEEDS=3 finishes" "$(tail -n 5 "$tmp/compare.log")"
fi

# called CALL: some line of the calls log starts with CALL
called() {
  if grep -qF -- "$1" "$FAKE_CALLS"; then pass "called: $1"; else fail "called: $1" "not in the log"; fi
}
for seed in 6 7; do
  for run in neurosurgeon nas-then-split; do
    called "train --arch $out/$run/arch.json --out $out/$run/seeds/$seed "
    called "eval --run $out/$run/seeds/$seed "
  done
  for run in search-l0.5 search-l2; do
    called "train --arch $out/$run/search/arch.json --out $out/$run/seeds/$seed "
  done
  called "baseline prune-split --job jobs/search.ini --out $out/prune-split/seeds/$seed "
done
check "each retraining sets its seed after the job's overrides" \
  grep -qE -- "--out $out/search-l2/seeds/7 .*--set train.seed=5 .*--set train.seed=7$" "$FAKE_CALLS"
check "prune-split's seeds are pinned to the run's split and channel count" \
  grep -qE -- "seeds/6 .*--set train.seed=6 --set baseline.pin_split=2 --set baseline.pin_kept=3$" \
  "$FAKE_CALLS"
if grep -q -- "seeds/8\|seeds/5" "$FAKE_CALLS"; then
  fail "only seeds 6 and 7 are retrained" "$(grep -- "seeds/[58]" "$FAKE_CALLS" | head -n 2)"
else
  pass "only seeds 6 and 7 are retrained"
fi

# Every run's row: the mean of seeds 5, 6, 7 (0.85, 0.86, 0.87), all three listed.
report=$out/report/report.json
if [[ -f $report ]] &&
  jq -e '[.runs[] | select(.method != "all-device" and .method != "all-edge")] | length == 5 and
         all((.test_accuracy - 0.86 | fabs) < 1e-12 and (.test_accuracy_seeds | length) == 3)' \
    "$report" >/dev/null; then
  pass "the report averages the three trainings of every run"
else
  fail "the report averages the three trainings of every run" "$(head -c 400 "$report" 2>&1)"
fi
check "compare's last line names the mean" grep -q "accuracy 0.86 (mean of 3 seeds)" "$tmp/compare.log"

# Run again: every run and seed is kept, nothing retrained.
: >"$FAKE_CALLS"
COMPARE_SEEDS=3 compare "$out" --set train.seed=5
if grep -qE '^(train|eval|baseline|search)' "$FAKE_CALLS"; then
  fail "a second compare keeps the finished seeds" "$(grep -E '^(train|eval|baseline)' "$FAKE_CALLS" | head -n 2)"
else
  pass "a second compare keeps the finished seeds"
fi
check "the kept seeds are named" grep -q "== prune-split/seeds/7: done before, kept" "$tmp/compare.log"

# COMPARE_SEEDS unset: no seeds, the report as before.
: >"$FAKE_CALLS"
out=$tmp/one
compare "$out"
if [[ -e $out/neurosurgeon/seeds ]] || grep -q seeds "$FAKE_CALLS" ||
  jq -e '.runs[] | select(has("test_accuracy_seeds"))' "$out/report/report.json" >/dev/null; then
  fail "without COMPARE_SEEDS nothing is retrained" "$(grep seeds "$FAKE_CALLS" | head -n 2)"
else
  pass "without COMPARE_SEEDS nothing is retrained"
fi
finish
