#!/usr/bin/env bash
# slurm/search.sbatch with one task and no profilers (what works without the MPI layer): a
# tiny search in the private cluster ends COMPLETED, logs its header, and leaves log.csv (one
# row per epoch), checkpoint.h5 and the derived arch.json.
#
#   tests/slurm/cluster.sh tests/slurm/test_search.sh BUILD/offnas SOURCE_DIR    (ctest: slurm.search)
source "$(dirname "$0")/lib.sh"

tiny_job "$tmp/tiny.ini"
id=$(submit --ntasks=1 --cpus-per-task=1 --output="$tmp/search-%j.out" \
  "$src/slurm/search.sbatch" "$tmp/tiny.ini" "$tmp/run") || { fail "sbatch search.sbatch" "no job id"; finish; exit; }
out=$tmp/search-$id.out
if wait_job "$id" 180; then pass "search job $id ended"; else fail "search job $id ended" "timeout"; fi

expect_completed "$id" "$out"

check "output logs the job id" grep -q "^job: *$id" "$out"
check "output logs nodes" grep -q "^nodes: *n[12]" "$out"
check "output logs the revision" grep -Eq "^revision: *([0-9a-f]{7,}|unknown)" "$out"
check "output logs the job file" grep -q "^job file: *$tmp/tiny.ini" "$out"
check "first run does not resume" bash -c "! grep -q -- '--resume' '$out'"
rows=$(($(wc -l <"$tmp/run/log.csv" 2>/dev/null || echo 1) - 1))
if ((rows == 2)); then pass "log.csv has 2 epoch rows"; else fail "log.csv has 2 epoch rows" "$rows rows"; fi
check "checkpoint.h5 written" test -s "$tmp/run/checkpoint.h5"
expect_all_on_device "$tmp/run/arch.json"

# a missing job file fails the job with one clear line, not a search with the defaults
id=$(submit --output="$tmp/missing-%j.out" "$src/slurm/search.sbatch" "$tmp/no_such.ini" "$tmp/run2")
wait_job "$id" 60
state=$(job_field "$id" JobState)
if [[ $state == FAILED ]] && grep -q "job file $tmp/no_such.ini not found" "$tmp/missing-$id.out"; then
  pass "missing job file: job FAILED with a clear message"
else
  fail "missing job file: job FAILED with a clear message" "state $state"
  show_output "$tmp/missing-$id.out"
fi

finish
