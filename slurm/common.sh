# shellcheck shell=bash
# What every slurm/*.sbatch script shares; sourced by them (not run). Before sourcing, a script
# has checked that it runs inside Slurm and set `script` (its name, for messages).
#
# Sets:
#   root    the offnas checkout: OFFNAS_ROOT, or the folder sbatch was called from
#           (SLURM_SUBMIT_DIR; sbatch runs a copy of the script, so its own path says nothing)
#   offnas  the program: OFFNAS, or $root/build/offnas
# and defines die, log and log_start.

die() {
  printf '%s: %s\n' "$script" "$*" >&2
  exit 1
}

log() { printf '%s: %s\n' "$script" "$*" >&2; }

root=${OFFNAS_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}}
offnas=${OFFNAS:-$root/build/offnas}
[[ -x $offnas ]] || die "offnas program not found at $offnas (build it, or set OFFNAS=/path/to/offnas)"

# log_start JOBFILE: who, where and what, at the top of the job's output file.
log_start() {
  local revision
  revision=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
  if [[ $revision != unknown ]] && ! git -C "$root" diff --quiet HEAD 2>/dev/null; then
    revision+="+changes"
  fi
  local id=$SLURM_JOB_ID
  [[ -n ${SLURM_ARRAY_JOB_ID:-} ]] && id+=" (array ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID})"
  [[ -n ${SLURM_HET_SIZE:-} ]] && id+=" (heterogeneous, ${SLURM_HET_SIZE} components)"
  echo "== $script $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "job:       $id, restart ${SLURM_RESTART_COUNT:-0}"
  echo "nodes:     ${SLURM_JOB_NODELIST:-?} (batch host $(hostname -s))"
  echo "tasks:     ${SLURM_NTASKS:-?}"
  echo "revision:  $revision ($root)"
  echo "offnas:    $offnas"
  echo "job file:  ${1:-(defaults)}"
}
