# shellcheck shell=bash
# What every slurm/*.sbatch script shares; sourced by them (not run). Before sourcing, a script
# has checked that it runs inside Slurm and set `script` (its name, for messages).
#
# Sets:
#   root    the offnas checkout: OFFNAS_ROOT, or the folder sbatch was called from
#           (SLURM_SUBMIT_DIR; sbatch runs a copy of the script, so its own path says nothing)
#   offnas  the program: OFFNAS, or $root/build/offnas
# and defines die, log, log_start and srun_het.

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

# srun_het SRUN_ARGS...: srun for a step over several heterogeneous components
# (--het-group=0,1). Slurm before 24.05.4 can leave such a step's srun hanging for ever after all
# its ranks have exited: its mpi/pmix plugin starts and stops an "abort agent" once per
# component, in concurrent threads, on shared variables without a lock (SchedMD ticket 16817;
# docs/slurm.md "Known problem"). There srun runs with libsrun_pmix_het.so preloaded
# (slurm/srun_pmix_het.c, built beside the program), which makes those calls one at a time.
# OFFNAS_SRUN_SHIM=PATH names the library; OFFNAS_SRUN_SHIM=none runs srun as it is.
srun_het() {
  local version shim=${OFFNAS_SRUN_SHIM:-} candidate
  version=$(srun --version 2>/dev/null | awk '{print $NF}')
  if [[ $shim != none && -n $version && $version != 24.05.4 \
        && $(printf '%s\n' "$version" 24.05.4 | sort -V | head -n 1) == "$version" ]]; then
    if [[ -z $shim ]]; then
      for candidate in "$(dirname "$offnas")/libsrun_pmix_het.so" "$root/build/libsrun_pmix_het.so"; do
        if [[ -f $candidate ]]; then shim=$candidate; break; fi
      done
    fi
    if [[ -n $shim && -f $shim ]]; then
      shim=$(realpath "$shim")
      echo "srun:      Slurm $version, with $shim (het step hang, fixed in Slurm 24.05.4)"
      LD_PRELOAD="$shim${LD_PRELOAD:+ $LD_PRELOAD}" srun "$@"
      return
    fi
    log "Slurm $version: srun can hang after the ranks of a heterogeneous step have ended" \
      "(fixed in Slurm 24.05.4) and no libsrun_pmix_het.so was found (build offnas, or set OFFNAS_SRUN_SHIM)"
  fi
  srun "$@"
}
