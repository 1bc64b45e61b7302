# shellcheck shell=bash
# harness: what every shell test shares (sourced by tests/cli.sh, tests/mpi/mpi.sh and
# tests/slurm/*.sh): a temporary folder, pass/fail bookkeeping with a summary, and the
# Fashion-MNIST HDF5 file imported once per build folder.
#
#   source "$(dirname "$0")/lib/harness.sh"
#   harness_start NAME          # tmp: a fresh folder, removed at exit (OFFNAS_TEST_KEEP=1 keeps it)
#   pass WHAT                   # one passed check
#   fail WHAT WHY               # one failed check; the test goes on
#   check WHAT COMMAND...       # pass when COMMAND succeeds, else fail with its output
#   die WHY                     # fail at once: a message on stderr and exit 1
#   finish                      # the summary; its status is the test's (0: nothing failed)
#   fashion_h5 OFFNAS           # fashion_file: the Fashion-MNIST HDF5 beside OFFNAS's build
#   tiny_net_section            # prints the [net] section of the tests' tiny 4-layer space

FASHION_IDX=/usr/share/datasets/fashion-mnist

harness_start() {
  harness_name=$1
  tmp=$(mktemp -d "/tmp/offnas_${harness_name}.XXXXXX") || exit 1
  trap harness_cleanup EXIT
  passed=0
  failed=0
  failures=()
  started=$SECONDS
}

harness_cleanup() {
  if [[ ${OFFNAS_TEST_KEEP:-${OFFNAS_SLURM_KEEP:-0}} == 1 ]]; then
    echo "$harness_name: kept $tmp" >&2
  else
    rm -rf "$tmp"
  fi
}

pass() {
  passed=$((passed + 1))
  printf 'ok    %s\n' "$1"
}

fail() {
  failed=$((failed + 1))
  failures+=("$1")
  printf 'FAIL  %s: %s\n' "$1" "$2"
}

check() {
  local what=$1 out
  shift
  if out=$("$@" 2>&1); then
    pass "$what"
  else
    fail "$what" "$(printf '%s' "$out" | head -c 600)"
  fi
}

die() {
  echo "FAIL $harness_name: $*" >&2
  exit 1
}

finish() {
  echo
  echo "$harness_name: $passed passed, $failed failed ($((SECONDS - started)) s)"
  local f
  for f in "${failures[@]+"${failures[@]}"}"; do
    echo "  failed: $f"
  done
  ((failed == 0))
}

# fashion_h5 OFFNAS: sets fashion_file to BUILD/tests/fashion-mnist.h5 beside the binary,
# importing it from $FASHION_IDX (tests/deps installs it) on first use; concurrent tests wait
# for one import (flock). Dies when the import fails.
fashion_h5() {
  fashion_file=$(dirname "$1")/tests/fashion-mnist.h5
  mkdir -p "$(dirname "$fashion_file")" || die "cannot create $(dirname "$fashion_file")"
  (
    flock 9
    [[ -s $fashion_file ]] && exit 0
    "$1" data import fashion-mnist --from "$FASHION_IDX" --out "$fashion_file" >/dev/null
  ) 9>"$fashion_file.lock" || die "cannot import $FASHION_IDX (tests/deps installs dataset-fashion-mnist)"
}

# The [net] section of the tiny search space the shell tests share (4 layers, 28x28): the
# fuzzers' FUZZ_TINY_JOB and the unit tests' tiny space are their own.
tiny_net_section() {
  cat <<'EOF_NET'
[net]
stem = 8
head = 32
layers = 8/1, 16/2, 16/1, 24/2
candidates = k3e1, k3e3, k5e3, skip
ops = k3e1, k3e3, k3e3, k5e3
EOF_NET
}
