#!/usr/bin/env bash
# The wiring of slurm/search.sbatch and slurm/search-het.sbatch, with tests/slurm/fake-offnas
# standing in for the program (so it needs no MPI layer): every rank starts in one srun with the
# right world size, rank order and [cluster] profilers; the heterogeneous job puts the profilers
# last; a search stopped by SIGUSR1 (scancel --signal=USR1, and the real --signal=USR1@T before
# a 1-minute time limit) exits 3, the job requeues itself, starts again with --resume and
# completes.
#
#   tests/slurm/cluster.sh tests/slurm/test_wiring.sh BUILD/offnas SOURCE_DIR    (ctest: slurm.wiring)
source "$(dirname "$0")/lib.sh"

fake=$src/tests/slurm/fake-offnas
printf '[search]\nepochs = 1\n' >"$tmp/job.ini"

# calls FILE: the calls.log lines, sorted by rank
calls() { sort -t= -k2 -n "$1" 2>/dev/null; }

# ---- the time-limit signal (checked at the end; it takes ~30 s to arrive) -----------------------
# --time=1 --signal=USR1@58: Slurm signals the search steps within the first half minute
# (slurmctld checks time limits every 30 s); the script requeues and the second run resumes.
# A requeued run has its own time limit and gets the warning signal again once it is within 58 s
# of it (seen here: a resumed run of 45 s was stopped and requeued again, job after job); the
# resumed run here lasts about 2 s, and the rare periodic check that falls into them stops it
# once more, rightly. So: at least one requeue, one "requeueing" line per restart, and every run
# after the first resumed.
limit_id=$(submit --ntasks=1 --cpus-per-task=1 --time=1 --signal=USR1@58 --output="$tmp/limit-%j.out" \
  --export=ALL,OFFNAS="$fake",FAKE_SEARCH_SECONDS=120,FAKE_RESUME_SECONDS=1 \
  "$src/slurm/search.sbatch" "$tmp/job.ini" "$tmp/limit")
limit_t0=$SECONDS

# ---- search.sbatch: 3 ranks on 2 nodes, one profiler -----------------------------------------
id=$(submit --nodes=2 --ntasks=3 --cpus-per-task=1 --output="$tmp/plain-%j.out" \
  --export=ALL,OFFNAS="$fake",PROFILERS=mobile:1 \
  "$src/slurm/search.sbatch" "$tmp/job.ini" "$tmp/plain" --set search.seed=7)
wait_job "$id" 60 || true
if [[ $(job_field "$id" JobState) == COMPLETED ]]; then pass "search.sbatch -N2 -n3: COMPLETED"; else fail "search.sbatch -N2 -n3: COMPLETED" "$(job_field "$id" JobState)"; show_output "$tmp/plain-$id.out"; fi
log=$tmp/plain/calls.log
check "3 ranks, world size 3" test "$(grep -c 'size=3 ' "$log" 2>/dev/null)" = 3
check "ranks 0, 1, 2" test "$(grep -o '^rank=[0-9]*' "$log" 2>/dev/null | sort | tr '\n' ' ')" = "rank=0 rank=1 rank=2 "
check "both nodes used" test "$(grep -o 'node=n[12]' "$log" 2>/dev/null | sort -u | wc -l)" = 2
check "PROFILERS -> --set cluster.profilers=mobile:1" grep -q -- '--set cluster.profilers=mobile:1' "$log"
check "train.threads from --cpus-per-task" grep -q -- '--set train.threads=1' "$log"
check "user options passed last" grep -q -- '--set search.seed=7$' "$log"
check "no --resume on the first run" bash -c "! grep -q 'resume=1' '$log'"
check "derive ran after the search" test -s "$tmp/plain/arch.json"

# ---- search-het.sbatch: 1 trainer : 2 profilers ----------------------------------------------
id=$(submit --ntasks=1 --cpus-per-task=1 --output="$tmp/het-%j.out" --export=ALL,OFFNAS="$fake" \
  : --ntasks=2 --cpus-per-task=1 "$src/slurm/search-het.sbatch" "$tmp/job.ini" "$tmp/het")
wait_job "$id" 60 || true
if [[ $(job_field "$id" JobState | sort -u) == COMPLETED ]]; then pass "search-het.sbatch 1 : 2: COMPLETED"; else fail "search-het.sbatch 1 : 2: COMPLETED" "$(job_field "$id" JobState | tr '\n' ' ')"; show_output "$tmp/het-$id.out"; fi
log=$tmp/het/calls.log
check "het: one srun, world size 3 over both components" test "$(grep -c 'size=3 .*het_size=2' "$log" 2>/dev/null)" = 3
check "het: profilers mobile:1, edge:1 (component 1 has 2 tasks)" \
  test "$(grep -c -- '--set cluster.profilers=mobile:1, edge:1 ' "$log" 2>/dev/null)" = 3
# the last two ranks are component 1's: on one node, the trainer's node is component 0's
nodes=$(calls "$log" | grep -o 'node=n[12]' | cut -d= -f2 | tr '\n' ' ')
n0=$(job_field "$id" NodeList | head -n 1)
n1=$(job_field "$id" NodeList | tail -n 1)
if [[ $nodes == "$n0 $n1 $n1 " ]]; then pass "het: rank 0 on component 0 ($n0), ranks 1-2 on component 1 ($n1)"; else fail "het: ranks in component order" "ranks on '$nodes', components on $n0 / $n1"; fi
check "het: logs the roles" grep -q "^ranks: *1 trainers on .*, 2 profilers (mobile:1, edge:1)" "$tmp/het-$id.out"

# PROFILERS that do not add up to component 1's tasks: FAILED with a clear line
id=$(submit --ntasks=1 --output="$tmp/hetbad-%j.out" --export=ALL,OFFNAS="$fake",PROFILERS="edge:3" \
  : --ntasks=2 "$src/slurm/search-het.sbatch" "$tmp/job.ini" "$tmp/hetbad")
wait_job "$id" 60 || true
if grep -q "PROFILERS='edge:3' names 3 profiler ranks, component 1 has 2 tasks" "$tmp/hetbad-$id.out" 2>/dev/null \
  && [[ ! -e $tmp/hetbad/calls.log ]]; then
  pass "het: PROFILERS not matching component 1 refused before srun"
else
  fail "het: PROFILERS not matching component 1 refused before srun" "$(job_field "$id" JobState | tr '\n' ' ')"
  show_output "$tmp/hetbad-$id.out"
fi

# ---- stop by signal, requeue, resume -------------------------------------------------------
id=$(submit --ntasks=2 --cpus-per-task=1 --output="$tmp/stop-%j.out" \
  --export=ALL,OFFNAS="$fake",FAKE_SEARCH_SECONDS=60,FAKE_RESUME_SECONDS=1 \
  "$src/slurm/search.sbatch" "$tmp/job.ini" "$tmp/stop")
deadline=$((SECONDS + 30))
until [[ $(grep -c . "$tmp/stop/calls.log" 2>/dev/null) == 2 ]] || ((SECONDS > deadline)); do sleep 0.25; done
if [[ $(grep -c . "$tmp/stop/calls.log" 2>/dev/null) == 2 ]]; then
  sleep 0.5 # both ranks are in their timed loop
  scancel --signal=USR1 "$id"
  t0=$SECONDS
  if wait_job "$id" 60; then pass "stopped job ended ($((SECONDS - t0)) s after the signal, requeue included)"; else fail "stopped job ended" "timeout"; fi
  if [[ $(job_field "$id" JobState) == COMPLETED && $(job_field "$id" Restarts) == 1 ]]; then
    pass "requeued once, then COMPLETED"
  else
    fail "requeued once, then COMPLETED" "state $(job_field "$id" JobState), restarts $(job_field "$id" Restarts)"
  fi
  check "first run: search stopped, job requeued" grep -q "search stopped by signal, checkpoint written; requeueing job $id" "$tmp/stop-$id.out"
  check "second run resumed from the checkpoint" grep -q "^resume: *$tmp/stop/checkpoint.h5" "$tmp/stop-$id.out"
  check "second run: both ranks with --resume, restart 1" \
    test "$(grep -c 'restart=1 resume=1 .*--resume' "$tmp/stop/calls.log")" = 2
  check "one output file for both runs (append)" test "$(grep -c '^== search.sbatch' "$tmp/stop-$id.out")" = 2
  check "derive after the resumed run" test -s "$tmp/stop/arch.json"
else
  fail "stop job started its ranks" "no 2 lines in calls.log after 30 s"
  scancel "$id"
fi
[[ $failed == 0 ]] || show_output "$tmp/stop-$id.out"

# ---- heterogeneous: stop by signal, requeue, resume ---------------------------------------
# (This is where srun of Slurm before 24.05.4 hung most often, after the ranks of the resumed
# run had ended; search-het.sbatch preloads the work-around into srun, docs/slurm.md "Known
# problem". A hang fails the test here, with a hang report, instead of being skipped.)
id=$(submit --ntasks=1 --cpus-per-task=1 --output="$tmp/hetstop-%j.out" \
  --export=ALL,OFFNAS="$fake",FAKE_SEARCH_SECONDS=60,FAKE_RESUME_SECONDS=1 \
  : --ntasks=1 --cpus-per-task=1 "$src/slurm/search-het.sbatch" "$tmp/job.ini" "$tmp/hetstop")
deadline=$((SECONDS + 30))
until [[ $(grep -c . "$tmp/hetstop/calls.log" 2>/dev/null) == 2 ]] || ((SECONDS > deadline)); do sleep 0.25; done
sleep 0.5
scancel --signal=USR1 "$id"
# In this idle test cluster a requeued heterogeneous job would stay pending: Slurm starts
# heterogeneous jobs only from the backfill scheduler, and that runs only after some change in
# the cluster; the job becomes eligible 6 s after its requeue (cred_expire=5), which is no such
# change. Any update is one: the test pokes the job once it is eligible (a busy cluster does
# not need this).
deadline=$((SECONDS + 30))
until [[ $(job_field "$id" Restarts | head -n 1) == 1 ]] || ((SECONDS > deadline)); do sleep 0.25; done
sleep 7
scontrol update JobId="$id" Comment=poke 2>/dev/null
if wait_job "$id" 60; then pass "het stopped job ended"; else fail "het stopped job ended" "timeout"; fi
if [[ $(job_field "$id" JobState | sort -u) == COMPLETED && $(job_field "$id" Restarts | sort -u) == 1 ]]; then
  pass "het: requeued once, then COMPLETED"
else
  fail "het: requeued once, then COMPLETED" "state $(job_field "$id" JobState | tr '\n' ' '), restarts $(job_field "$id" Restarts | tr '\n' ' ')"
  show_output "$tmp/hetstop-$id.out"
fi
check "het: second run, both ranks with --resume" \
  test "$(grep -c 'restart=1 resume=1 .*--resume' "$tmp/hetstop/calls.log" 2>/dev/null)" = 2


# ---- sweep: every array task stopped by signal, requeued, resumed; one gather job -----------
printf '3g 0.5\nwifi 2\n' >"$tmp/sweep.list"
id=$(submit --array=0-1 --cpus-per-task=1 --output="$tmp/sweep-%A_%a.out" \
  --export=ALL,OFFNAS="$fake",FAKE_SEARCH_SECONDS=60,FAKE_RESUME_SECONDS=1 \
  "$src/slurm/sweep.sbatch" "$tmp/job.ini" "$tmp/sweep.list" "$tmp/sweep")
deadline=$((SECONDS + 30))
until [[ $(cat "$tmp"/sweep/task-*/search/calls.log 2>/dev/null | grep -c .) == 2 ]] || ((SECONDS > deadline)); do sleep 0.25; done
sleep 0.5
scancel --signal=USR1 "$id"
if wait_job "$id" 60; then pass "sweep: stopped array ended"; else fail "sweep: stopped array ended" "timeout"; fi
if [[ $(job_field "$id" JobState | sort -u) == COMPLETED && $(job_field "$id" Restarts | sort -u) == 1 ]]; then
  pass "sweep: both tasks requeued once, then COMPLETED"
else
  fail "sweep: both tasks requeued once, then COMPLETED" "state $(job_field "$id" JobState | tr '\n' ' '), restarts $(job_field "$id" Restarts | tr '\n' ' ')"
  for f in "$tmp"/sweep-"$id"_*.out; do show_output "$f"; done
fi
check "sweep: both tasks resumed their search" \
  test "$(cat "$tmp"/sweep/task-*/search/calls.log 2>/dev/null | grep -c 'restart=1 resume=1 .*--resume')" = 2
gather=$(grep -ho '^gather: *job [0-9]*' "$tmp"/sweep-"$id"_*.out 2>/dev/null | grep -o '[0-9]*$')
if [[ $(wc -w <<<"$gather") == 1 ]]; then
  pass "sweep: one gather job, not one per restart"
  wait_job "$gather" 60 || true
  check "sweep: gather waited for the resumed tasks (2 ok rows)" test "$(grep -c $'\tok\t' "$tmp/sweep/sweep.tsv" 2>/dev/null)" = 2
else
  fail "sweep: one gather job, not one per restart" "found '$gather'"
fi

# ---- the time-limit signal, submitted at the start ------------------------------------------
if wait_job "$limit_id" 120; then pass "time-limit job ended ($((SECONDS - limit_t0)) s after submission)"; else fail "time-limit job ended" "timeout"; fi
restarts=$(job_field "$limit_id" Restarts)
if [[ $(job_field "$limit_id" JobState) == COMPLETED && $restarts -ge 1 ]]; then
  pass "--signal=USR1@58 before the 1-minute limit: stopped, requeued ($restarts), resumed, COMPLETED"
else
  fail "--signal=USR1@58 before the 1-minute limit: stopped, requeued, resumed, COMPLETED" \
    "state $(job_field "$limit_id" JobState), restarts $restarts"
  show_output "$tmp/limit-$limit_id.out"
fi
check "time-limit job: one requeue line per restart" \
  test "$(grep -c '^== search stopped by signal, checkpoint written; requeueing' "$tmp/limit-$limit_id.out")" = "$restarts"
check "time-limit job: the first run fresh, every later one with --resume" \
  test "$(grep -c 'restart=0 resume=0 ' "$tmp/limit/calls.log"):$(grep -c 'resume=1 .*--resume' "$tmp/limit/calls.log")" = "1:$restarts"

finish
