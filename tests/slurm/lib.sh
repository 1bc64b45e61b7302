# shellcheck shell=bash
# Shared by the tests/slurm/test_*.sh scripts (sourced). They run inside tests/slurm/cluster.sh
# (SLURM_CONF set) and are called as
#   test_X.sh OFFNAS_BINARY SOURCE_DIR
# Defines: offnas, src, name, fashion (the Fashion-MNIST HDF5, imported once and cached beside
# the binary), tiny_job FILE [EXTRA INI LINES], submit, wait_job, job_field, expect_completed,
# expect_all_on_device, show_output; and from tests/lib/harness.sh tmp (removed at exit; OFFNAS_SLURM_KEEP=1 keeps
# it), pass, fail, check, finish.
set -u
# shellcheck source=tests/lib/harness.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/harness.sh"

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

harness_start "slurm_$name"

# show_output FILE: a job's output file, indented, for the log of a failed test.
show_output() {
  echo "---- $1"
  sed 's/^/    /' "$1" 2>/dev/null | tail -n 40
  echo "----"
}

# ---- data and job files -----------------------------------------------------------------

fashion_h5 "$offnas"
fashion=$fashion_file

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
      hang_report "$id" >&2
      if [[ -n ${OFFNAS_SLURM_HANG_HOLD:-} ]]; then
        # debugging: leave the hung job as it is for that many seconds (or until the file goes)
        touch "$OFFNAS_SLURM_DIR/HOLD"
        echo "$name: holding job $id for ${OFFNAS_SLURM_HANG_HOLD} s: rm $OFFNAS_SLURM_DIR/HOLD to go on" >&2
        local hold_end=$((SECONDS + OFFNAS_SLURM_HANG_HOLD))
        while [[ -e $OFFNAS_SLURM_DIR/HOLD ]] && ((SECONDS < hold_end)); do sleep 1; done
      fi
      scancel "$id" 2>/dev/null
      return 1
    fi
    sleep 0.25
  done
}

# hang_report ID: what a job that did not end is doing, for the log of a failed test: its steps,
# the cluster's slurmstepd, srun and job processes with their state, and (OFFNAS_SLURM_KEEP=1) a
# copy in the cluster's folder beside the daemon logs.
hang_report() {
  local id=$1 report
  report=$(
    echo "---- hang report for job $id ($(date +%T.%N))"
    squeue -s -h -j "$id" -o '%i %T %N' 2>&1
    scontrol show step 2>&1 | grep -E 'StepId|State|NodeList|Tasks' | sed 's/^ */    /'
    local env_file p
    for env_file in /proc/[0-9]*/environ; do
      p=${env_file#/proc/}
      p=${p%/environ}
      if tr '\0' '\n' 2>/dev/null <"$env_file" | grep -qx "SLURM_CONF=$SLURM_CONF" \
        || tr '\0' ' ' 2>/dev/null </proc/"$p"/cmdline | grep -q '^slurmstepd: \['; then
        ps -o pid=,ppid=,stat=,etime=,wchan:24=,args= -p "$p" 2>/dev/null | cut -c1-160
      fi
    done
    echo "----"
  )
  echo "$report"
  [[ -n ${OFFNAS_SLURM_DIR:-} ]] && echo "$report" >>"$OFFNAS_SLURM_DIR/hang-$id.txt"
  return 0
}

# job_field ID FIELD: FIELD (e.g. JobState, ExitCode, Restarts) of `scontrol show job ID`,
# one value per line (one line per array task or het component).
job_field() {
  scontrol show job "$1" 2>/dev/null | grep -o "\b$2=[^ ]*" | cut -d= -f2
}

# expect_completed ID OUT: job ID ended COMPLETED with exit 0:0 (else its output OUT is shown).
expect_completed() {
  local state code
  state=$(job_field "$1" JobState)
  code=$(job_field "$1" ExitCode)
  if [[ $state == COMPLETED && $code == 0:0 ]]; then
    pass "job state COMPLETED, exit 0:0"
  else
    fail "job state COMPLETED, exit 0:0" "state $state, exit $code"
    show_output "$2"
  fi
}

# expect_all_on_device ARCH_JSON: the network derived from a tiny_job search has 8 ops and runs
# all on the device (split 9), the split its tables make fastest: any other split sends data
# over the job's 3g link and pays its 100 ms round trip, more than the whole network takes on
# the device.
expect_all_on_device() {
  check "arch.json: 8 ops, all on the device (split 9), faster than the 3g round trip" \
    jq -e '(.ops | length) == 8 and .split_point == 9 and .predicted_latency_ms.total == .all_device_ms
           and .all_device_ms < 100' "$1"
}
