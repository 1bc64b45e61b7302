#!/usr/bin/env bash
# The slurm/*.sbatch scripts without a cluster: they parse (bash -n), use set -euo pipefail,
# have one commented option per #SBATCH line, print their header on --help (exit 0), and refuse
# to run outside a Slurm job with one line on stderr and exit status 2.
#
#   tests/slurm/test_scripts.sh [SOURCE_DIR]     (ctest: slurm.scripts)
set -u
# shellcheck source=tests/lib/harness.sh
source "$(dirname "$0")/../lib/harness.sh"
src=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
harness_start slurm_test_scripts

scripts=(search.sbatch search-het.sbatch profile.sbatch sweep.sbatch)
for s in "${scripts[@]}"; do
  f=$src/slurm/$s
  if [[ ! -x $f ]]; then
    fail "$s" "missing or not executable"
    continue
  fi
  if err=$(bash -n "$f" 2>&1); then pass "$s: bash -n"; else fail "$s: bash -n" "$err"; fi
  if grep -q '^set -euo pipefail$' "$f"; then pass "$s: set -euo pipefail"; else fail "$s: set -euo pipefail" "not found"; fi

  # every #SBATCH line: one option (or the hetjob separator) and a comment
  bad=$(grep '^#SBATCH' "$f" | grep -Ev '^#SBATCH (--[a-z-]+(=[^ ]+)? +# .+|hetjob)$')
  n=$(grep -c '^#SBATCH --' "$f")
  if [[ -z $bad && $n -gt 0 ]]; then pass "$s: $n #SBATCH options, one per line, each commented"; else fail "$s: one commented #SBATCH option per line" "$bad"; fi

  env -u SLURM_JOB_ID bash "$f" --help >"$tmp/out" 2>"$tmp/err"
  rc=$?
  if ((rc == 0)) && grep -q "sbatch .*slurm/$s" "$tmp/out" && [[ ! -s $tmp/err ]]; then
    pass "$s --help: exit 0, usage on stdout"
  else
    fail "$s --help" "exit $rc: $(head -c 200 "$tmp/err")"
  fi
  if grep -q '^#SBATCH' "$tmp/out"; then fail "$s --help prints only the header" "#SBATCH lines in it"; fi

  env -u SLURM_JOB_ID bash "$f" jobs/search.ini runs/x >"$tmp/out" 2>"$tmp/err"
  rc=$?
  if ((rc == 2)) && [[ $(wc -l <"$tmp/err") == 1 && ! -s $tmp/out ]] \
    && grep -q "^$s: not inside a Slurm job (no SLURM_JOB_ID)" "$tmp/err"; then
    pass "$s outside Slurm: exit 2, one line"
  else
    fail "$s outside Slurm: exit 2, one line" "exit $rc, stderr: $(head -c 200 "$tmp/err")"
  fi
done

# the job-wide options every search script needs for preemption
for s in search.sbatch search-het.sbatch sweep.sbatch; do
  for opt in --requeue --open-mode=append --signal=USR1@; do
    if grep -q "^#SBATCH $opt" "$src/slurm/$s"; then pass "$s has $opt"; else fail "$s has $opt" "missing"; fi
  done
done

# the shipped sweep list: PRESET LAMBDA lines the job parser accepts
while read -r preset lambda rest; do
  if [[ $preset =~ ^(3g|lte|wifi|5g)$ && $lambda =~ ^[0-9.]+$ && -z $rest ]]; then continue; fi
  fail "jobs/sweep.list entries" "bad line: $preset $lambda $rest"
done < <(grep -Ev '^[[:space:]]*(#|$)' "$src/jobs/sweep.list")
pass "jobs/sweep.list entries are PRESET LAMBDA"

finish
