#!/usr/bin/env bash
# slurm/search-het.sbatch with the real program: 2 trainers (component 0) : 2 profilers
# (component 1, mobile and edge) in one MPI_COMM_WORLD. The tiny job names no profile files, so
# both tables must be measured; the search completes once (not once per rank), every rank
# reports the same architecture, and the measured tables are left beside it.
#
#   tests/slurm/cluster.sh tests/slurm/test_het.sh BUILD/offnas SOURCE_DIR    (ctest: slurm.het)
source "$(dirname "$0")/lib.sh"

tiny_job "$tmp/tiny.ini"
# no table files: the profiler ranks measure them
sed -i '/^device = /d; /^edge = /d' "$tmp/tiny.ini"

id=$(submit --ntasks=2 --cpus-per-task=1 --output="$tmp/het-%j.out" \
  : --ntasks=2 --cpus-per-task=1 "$src/slurm/search-het.sbatch" "$tmp/tiny.ini" "$tmp/run") \
  || { fail "sbatch search-het.sbatch" "no job id"; finish; exit; }
out=$tmp/het-$id.out
if wait_job "$id" 300; then pass "het job $id ended"; else fail "het job $id ended" "timeout"; fi

states=$(job_field "$id" JobState | sort -u | tr '\n' ' ')
codes=$(job_field "$id" ExitCode | sort -u | tr '\n' ' ')
if [[ $states == "COMPLETED " && $codes == "0:0 " ]]; then
  pass "both components COMPLETED, exit 0:0"
else
  fail "both components COMPLETED, exit 0:0" "states $states, exit $codes"
  show_output "$out"
fi
check "output logs the roles" grep -q "^ranks: *2 trainers on .*, 2 profilers (mobile:1, edge:1)" "$out"
rows=$(($(wc -l <"$tmp/run/log.csv" 2>/dev/null || echo 1) - 1))
if ((rows == 2)); then pass "log.csv has 2 epoch rows"; else fail "log.csv has 2 epoch rows" "$rows rows"; fi
expect_all_on_device "$tmp/run/arch.json"

# one search in one MPI_COMM_WORLD, not three independent ones (what a program that ignores the
# launcher does): exactly one "search: done" line
done_lines=$(grep -c '^search: done' "$out" 2>/dev/null)
if [[ $done_lines == 1 ]]; then pass "one search (one 'search: done' line)"; else fail "one search (one 'search: done' line)" "$done_lines lines"; fi

# every rank (2 trainers, 2 profilers) reports the same ops and split
# (matched anywhere in a line: the ranks' stdout and stderr reach the file separately)
found=$(grep -ao "architecture ([^)]*): ops [^ ]* split [0-9]*" "$out" 2>/dev/null)
reports=$(grep -c . <<<"$found")
kinds=$(sed 's/.*: //' <<<"$found" | sort -u | grep -c .)
if [[ $reports == 4 && $kinds == 1 ]]; then
  pass "all 4 ranks report one architecture"
else
  fail "all 4 ranks report one architecture" "$reports reports, $kinds different"
fi

# the tables were measured (the job names no profile files), not taken from the shipped fits
for t in device edge; do
  source_attr=$(h5dump -a source "$tmp/run/lut_$t.h5" 2>/dev/null | grep '(0):' | grep -o '"[^"]*"' | tr -d '"')
  if [[ -s $tmp/run/lut_$t.h5 && $source_attr != fit:* ]]; then
    pass "lut_$t.h5 measured (source '$source_attr')"
  else
    fail "lut_$t.h5 measured" "missing, or source '$source_attr'"
  fi
done

finish
