#!/usr/bin/env bash
# slurm/search.sbatch preempted for real: two deterministic tiny searches run side by side; one
# is sent SIGUSR1 after its first epoch (scancel --signal=USR1 JOBID, what --signal=USR1@T
# sends before the time limit), checkpoints, exits 3, requeues itself, resumes with --resume and
# completes. Its result must equal the uninterrupted run's: same arch.json choices, and the
# final weights and architecture parameters bit for bit (h5diff).
#
#   tests/slurm/cluster.sh tests/slurm/test_preempt.sh BUILD/offnas SOURCE_DIR    (ctest: slurm.preempt)
source "$(dirname "$0")/lib.sh"

# long enough to be stopped in the middle: 6 epochs (2 of warm-up) on 1000 images
tiny_job "$tmp/tiny.ini"
sets=(--set data.train_limit=1200 --set search.epochs=6 --set search.warmup_epochs=2
      --set search.deterministic=1)

ref=$(submit --ntasks=1 --cpus-per-task=1 --output="$tmp/ref-%j.out" \
  "$src/slurm/search.sbatch" "$tmp/tiny.ini" "$tmp/ref" "${sets[@]}")
id=$(submit --ntasks=1 --cpus-per-task=1 --output="$tmp/stop-%j.out" \
  "$src/slurm/search.sbatch" "$tmp/tiny.ini" "$tmp/stop" "${sets[@]}")
[[ -n $ref && -n $id ]] || { fail "sbatch search.sbatch (twice)" "no job ids"; finish; exit; }

# signal after the first epoch's row in log.csv, well before the end
deadline=$((SECONDS + 120))
until [[ $(grep -c . "$tmp/stop/log.csv" 2>/dev/null) -ge 2 ]] || ((SECONDS > deadline)); do sleep 0.25; done
if [[ $(grep -c . "$tmp/stop/log.csv" 2>/dev/null) -ge 2 ]]; then
  scancel --signal=USR1 "$id"
  pass "SIGUSR1 sent to job $id after epoch 1"
else
  fail "SIGUSR1 sent to job $id after epoch 1" "no epoch row after 120 s"
fi

if wait_job "$id" 300; then pass "stopped job ended"; else fail "stopped job ended" "timeout"; fi
if wait_job "$ref" 300; then pass "reference job ended"; else fail "reference job ended" "timeout"; fi

out=$tmp/stop-$id.out
if [[ $(job_field "$id" JobState) == COMPLETED && $(job_field "$id" Restarts) == 1 ]]; then
  pass "stopped job: requeued once, then COMPLETED"
else
  fail "stopped job: requeued once, then COMPLETED" "state $(job_field "$id" JobState), restarts $(job_field "$id" Restarts)"
  show_output "$out"
fi
if [[ $(job_field "$ref" JobState) == COMPLETED && $(job_field "$ref" Restarts) == 0 ]]; then
  pass "reference job COMPLETED without restart"
else
  fail "reference job COMPLETED without restart" "state $(job_field "$ref" JobState), restarts $(job_field "$ref" Restarts)"
  show_output "$tmp/ref-$ref.out"
fi
check "the search stopped on the signal (exit 3) and the job requeued itself" \
  grep -q "search stopped by signal, checkpoint written; requeueing job $id" "$out"
check "the second run resumed" grep -q "^resume: *$tmp/stop/checkpoint.h5" "$out"

# same result as the uninterrupted run
pick='{ops, split_point, kept_channels, total_channels, channels, predicted_latency_ms, all_device_ms, all_edge_ms}'
a=$(jq -S "$pick" "$tmp/ref/arch.json" 2>&1)
b=$(jq -S "$pick" "$tmp/stop/arch.json" 2>&1)
if [[ -n $a && $a == "$b" ]]; then pass "arch.json choices equal"; else fail "arch.json choices equal" "$(diff <(echo "$a") <(echo "$b") | head -20)"; fi
for d in /weights/params /weights/running_stats /arch/params; do
  if diff_out=$(h5diff "$tmp/ref/checkpoint.h5" "$tmp/stop/checkpoint.h5" "$d" "$d" 2>&1); then
    pass "h5diff $d: identical"
  else
    fail "h5diff $d: identical" "$(head -n 5 <<<"$diff_out")"
  fi
done
rows_ref=$(tail -n 1 "$tmp/ref/log.csv" 2>/dev/null)
rows_stop=$(tail -n 1 "$tmp/stop/log.csv" 2>/dev/null)
if [[ -n $rows_ref && $rows_ref == "$rows_stop" ]]; then pass "last log.csv row equal"; else fail "last log.csv row equal" "'$rows_ref' vs '$rows_stop'"; fi

finish
