# shellcheck shell=bash
# Shared by the tests/slurm/test_*.sh scripts (sourced). They run inside tests/slurm/cluster.sh
# (SLURM_CONF set) and are called as
#   test_X.sh OFFNAS_BINARY SOURCE_DIR
# Defines: offnas, src, tmp (removed at exit; OFFNAS_SLURM_KEEP=1 keeps it), pass, fail,
# finish, fashion (the Fashion-MNIST HDF5, imported once and cached beside the binary),
# tiny_job FILE [EXTRA INI LINES], submit, wait_job, job_field.
set -u

offnas=${1:?usage: test_X.sh OFFNAS_BINARY SOURCE_DIR}
src=${2:?usage: test_X.sh OFFNAS_BINARY SOURCE_DIR}
offnas=$(realpath "$offnas")
src=$(realpath "$src")
name=$(basename "$0" .sh)

if [[ ! -x $offnas ]]; then
  echo "$name: $offnas is not an executable" >&2
  exit 1
fi
if [[ -z ${SLURM_CONF:-} ]]; then
  echo "$name: SLURM_CONF is not set: run me inside tests/slurm/cluster.sh" >&2
  exit 1
fi

tmp=$(mktemp -d "/tmp/offnas_slurm_${name}.XXXXXX") || exit 1
cleanup() {
  if [[ ${OFFNAS_SLURM_KEEP:-0} == 1 ]]; then
    echo "$name: kept $tmp" >&2
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT

passed=0
failed=0
failures=()
started=$SECONDS

pass() {
  passed=$((passed + 1))
  printf 'ok    %s\n' "$1"
}

fail() {
  failed=$((failed + 1))
  failures+=("$1")
  printf 'FAIL  %s: %s\n' "$1" "$2"
}

# check NAME COMMAND...: pass when COMMAND succeeds, else fail with its output.
check() {
  local what=$1 out
  shift
  if out=$("$@" 2>&1); then
    pass "$what"
  else
    fail "$what" "$(printf '%s' "$out" | head -c 600)"
  fi
}

finish() {
  echo
  echo "$name: $passed passed, $failed failed ($((SECONDS - started)) s)"
  local f
  for f in "${failures[@]+"${failures[@]}"}"; do
    echo "  failed: $f"
  done
  ((failed == 0))
}

# show_output FILE: a job's output file, indented, for the log of a failed test.
show_output() {
  echo "---- $1"
  sed 's/^/    /' "$1" 2>/dev/null | tail -n 40
  echo "----"
}

# ---- data and job files -----------------------------------------------------------------

fashion=$(dirname "$offnas")/tests/slurm-fashion-mnist.h5
if [[ ! -f $fashion ]]; then
  mkdir -p "$(dirname "$fashion")"
  if ! "$offnas" data import fashion-mnist --out "$fashion" >"$tmp/import.log" 2>&1; then
    echo "$name: cannot import Fashion-MNIST (tests/deps installs dataset-fashion-mnist):" >&2
    cat "$tmp/import.log" >&2
    exit 1
  fi
fi

# tiny_job FILE [LINE...]: a search job small enough for seconds on one core: 600 training
# images, 2 search epochs (1 warm-up), the default network with the shipped phone profiles.
# Extra lines are appended (whole sections, e.g. '[cluster]' 'profilers = mobile:1').
tiny_job() {
  local file=$1
  shift
  cat >"$file" <<EOF
[data]
path = $fashion
train_limit = 600
val_size = 200
test_limit = 200

[train]
batch = 32
threads = 1
epochs = 1
log_seconds = 1000

[search]
epochs = 2
warmup_epochs = 1
lambda = 0.5

[latency]
device = $src/profiles/pixel4.h5
edge = $src/profiles/pixel6.h5
EOF
  local line
  for line in "$@"; do
    printf '%s\n' "$line" >>"$file"
  done
}

# ---- Slurm --------------------------------------------------------------------------------

# Every job runs from $tmp with this checkout's scripts and this build's program.
export OFFNAS=$offnas OFFNAS_ROOT=$src

# submit SBATCH_ARGS...: prints the job id (sbatch --parsable), from folder $tmp.
submit() {
  sbatch --parsable --chdir="$tmp" "$@"
}

# wait_job ID SECONDS: polls every 0.25 s until no task of job ID is pending, running,
# requeued or completing (squeue shows nothing unfinished). Returns 1 on timeout (the job is
# cancelled then).
wait_job() {
  local id=$1 limit=$2 deadline states
  deadline=$(($(date +%s%N) / 1000000 + limit * 1000))
  while :; do
    states=$(squeue -h -j "$id" -o %T 2>/dev/null | grep -Ev '^(COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE|PREEMPTED)$')
    [[ -z $states ]] && return 0
    if (($(date +%s%N) / 1000000 > deadline)); then
      echo "$name: job $id not done after $limit s (states: $(echo "$states" | tr '\n' ' ')); cancelling" >&2
      scancel "$id" 2>/dev/null
      return 1
    fi
    sleep 0.25
  done
}

# job_field ID FIELD: FIELD (e.g. JobState, ExitCode, Restarts) of `scontrol show job ID`,
# one value per line (one line per array task or het component).
job_field() {
  scontrol show job "$1" 2>/dev/null | grep -o "\b$2=[^ ]*" | cut -d= -f2
}
