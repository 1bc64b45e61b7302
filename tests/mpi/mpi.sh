#!/usr/bin/env bash
# MPI tests of the distributed search and training (ctest label mpi), run through mpirun with
# 1, 2 and 4 ranks on this machine's 2 cores (--oversubscribe).
#
#   tests/mpi/mpi.sh BUILD/offnas CASE        CASE: one of the functions test_* below
#   tests/mpi/mpi.sh BUILD/offnas all
#
# Every case makes a tiny job (4 searchable layers, 2560 training images) in its own temporary
# folder, runs it, and checks outputs with h5diff and grep. Tolerances (stated once):
# - 1 trainer vs 2 or 4 with the same global batch and data.shards: after 10 steps every weight
#   and every alpha/beta/gamma agrees within 1e-4 absolute (float32 sums in another order).
#   Measured largest differences, training at lr 0.05: 3e-8 after 1 step, 1e-7 after 5,
#   3e-5 after 10; longer runs drift apart as any chaotic optimisation does (6e-3 after 70
#   steps), so the check is after a few steps.
# - reruns, resumed runs: bit for bit (h5diff with no tolerance) in deterministic mode.
set -uo pipefail
# shellcheck source=tests/lib/harness.sh
source "$(dirname "$0")/../lib/harness.sh"

offnas=${1:?usage: tests/mpi/mpi.sh OFFNAS_BINARY CASE}
case_name=${2:?usage: tests/mpi/mpi.sh OFFNAS_BINARY CASE}
offnas=$(readlink -f "$offnas")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
# ranks are never more than cores allow here: yield instead of spinning while waiting
export OMPI_MCA_mpi_yield_when_idle=1

harness_start "mpi.$case_name"
cd "$tmp" || exit 1

# run LOG CMD...: runs CMD with a time limit, its output in LOG; returns its status.
run() {
  local log=$1
  shift
  timeout -k 5 240 "$@" >"$log" 2>&1
}

# The data set, imported once per build folder and shared by the cases.
fashion_h5 "$offnas"
data=$fashion_file
cat >job.ini <<EOF
[data]
path = $data
val_size = 512
train_limit = 2560
test_limit = 512
$(tiny_net_section)
[train]
batch = 32
threads = 1
lr = 0.05
log_seconds = 100
[search]
epochs = 2
warmup_epochs = 1
[latency]
device_scale = 20
[network]
preset = wifi
[cluster]
profile_dir = $tmp/profiles
EOF

# Profiles for the tiny space, measured here (the cases that do not use profiler ranks).
profiles() {
  "$offnas" profile --job job.ini --device phone --out dev.h5 >/dev/null 2>&1 &&
    "$offnas" profile --job job.ini --device server --out edge.h5 >/dev/null 2>&1 ||
    die "offnas profile failed"
}
FILES=(--set latency.device=dev.h5 --set latency.edge=edge.h5)

# checkpoint_step FILE: the step attribute of a checkpoint (nothing when it cannot be read).
checkpoint_step() {
  h5dump -a /step "$1" 2>/dev/null | sed -n 's/.*(0): \([0-9]*\).*/\1/p'
}

# same_within TOL A B PATH...: every listed data set of A and B agrees within TOL.
same_within() {
  local tol=$1 a=$2 b=$3
  shift 3
  for path in "$@"; do
    h5diff -d "$tol" "$a" "$b" "$path" >diff.txt 2>&1 ||
      die "$a and $b differ in $path by more than $tol: $(tail -n 3 diff.txt | tr '\n' ' ')"
  done
}

# identical A B PATH...: bit for bit.
identical() {
  local a=$1 b=$2
  shift 2
  for path in "$@"; do
    h5diff "$a" "$b" "$path" >diff.txt 2>&1 || die "$a and $b differ in $path: $(tail -n 3 diff.txt | tr '\n' ' ')"
  done
}

# reports LOG N: N ranks printed "architecture (...): ops OPS split S" and all the same OPS S.
# mpirun forwards each rank's stdout and stderr separately, so a line may follow another
# rank's text on the same line of LOG: match anywhere, not at line starts.
reports() {
  local found kinds
  found=$(grep -ao "architecture ([^)]*): ops [^ ]* split [0-9]*" "$1")
  kinds=$(sed 's/.*: //' <<<"$found" | sort -u | grep -c .)
  [[ $(grep -c . <<<"$found") == "$2" && $kinds == 1 ]] ||
    die "want $2 ranks reporting one architecture, got: $(tr '\n' '|' <<<"$found")"
}

# Data-parallel training: 1, 2 and 4 trainers, same global batch and shards, 10 steps.
test_train_equivalence() {
  local s=(--set data.shards=4 --set train.steps=10 --set train.epochs=1 --set train.deterministic=1)
  run t1.log "$offnas" train --job job.ini --out t1 "${s[@]}" || die "1 trainer: $(tail -n 2 t1.log)"
  run t2.log mpirun -np 2 "$offnas" train --job job.ini --out t2 "${s[@]}" || die "2 trainers: $(tail -n 2 t2.log)"
  run t4.log mpirun -np 4 "$offnas" train --job job.ini --out t4 "${s[@]}" || die "4 trainers: $(tail -n 2 t4.log)"
  same_within 1e-4 t1/model.h5 t2/model.h5 /params
  same_within 1e-4 t1/model.h5 t4/model.h5 /params
  # and the check can fail: another shard count changes the batches
  run t5.log "$offnas" train --job job.ini --out t5 "${s[@]}" --set data.shards=1 || die "shards 1"
  h5diff -d 1e-4 t1/model.h5 t5/model.h5 /params >/dev/null 2>&1 && die "shards=1 should differ from shards=4"
  grep -q "on 4 trainers" t4.log || die "the 4-rank run did not report 4 trainers"
  echo "ok: train with 1, 2, 4 trainers agrees within 1e-4 after 10 steps"
}

# The search: 1 vs 2 trainers, architecture steps from the first step on, 10 steps.
test_search_equivalence() {
  profiles
  local s=(--set data.shards=2 --set train.steps=10 --set search.warmup_epochs=0
    --set search.deterministic=1 "${FILES[@]}")
  run s1.log "$offnas" search --job job.ini --out s1 "${s[@]}" || die "1 trainer: $(tail -n 2 s1.log)"
  run s2.log mpirun -np 2 "$offnas" search --job job.ini --out s2 "${s[@]}" || die "2 trainers: $(tail -n 2 s2.log)"
  same_within 1e-4 s1/checkpoint.h5 s2/checkpoint.h5 /weights/params /arch/params /weights/momentum
  reports s2.log 2
  local a0
  a0=$(grep -ao "architecture (trainer 0 of 2): ops [^ ]* split [0-9]*" s2.log | sed 's/.*: //')
  echo "ok: search with 1 and 2 trainers agrees within 1e-4 after 10 steps; both trainers: $a0"
}

# One program, 4 ranks: 2 trainers + a mobile and an edge profiler named in the job.
test_profilers_one_program() {
  run p.log mpirun -np 4 "$offnas" search --job job.ini --out p --set cluster.profilers="mobile:1, edge:1" ||
    die "search: $(tail -n 3 p.log)"
  grep -q "2 trainer ranks, 2 profiler ranks" p.log || die "roles not reported"
  # the table the trainers used is the one the profiler measured and saved, bit for bit
  local saved
  saved=$(ls profiles/mobile-*.h5 2>/dev/null | head -n 1)
  [[ -n $saved ]] || die "the mobile profiler saved no table in cluster.profile_dir"
  identical "$saved" p/lut_device.h5 /median_ms /p10_ms /p90_ms /repeats
  h5dump -a /host "$saved" | grep -q "$(hostname)" || die "the saved profile does not name this host"
  # a corrected table (version 2 after the first epoch) was taken up
  local last
  last=$(tail -n 1 p/log.csv | cut -d, -f15,16)
  [[ $last == "2,2" || $last == "3,3" ]] || die "log.csv table versions at the end: '$last' (want corrected tables)"
  # every rank reports the same architecture (the profilers: what trainer 0 sent last)
  reports p.log 4
  # the derived network retrains on 2 ranks although its job names profilers: train has none
  run d.log "$offnas" derive --run p || die "derive: $(tail -n 2 d.log)"
  run r.log mpirun -np 2 "$offnas" train --arch p/arch.json --out p2 --set train.steps=5 ||
    die "train --arch on 2 ranks: $(grep offnas: r.log | head -n 2)"
  grep -q "on 2 trainers" r.log || die "train --arch did not use both ranks as trainers"
  echo "ok: 2 trainers + 2 profilers (one program): identical table, corrected tables taken up, one architecture; retrained on 2 ranks"
}

# Both profilers present and an inner split (pinned at 2): each epoch the mobile rank runs the
# device half of the preferred partition and sends its tensor to the edge rank over TCP in
# the runtime's protocol; each corrects its half of the table to what it measured, and the
# trainers log the measured partition beside the prediction.
test_profilers_measure_partition() {
  run q.log mpirun -np 2 "$offnas" search --job job.ini --out q --set search.pin_split=2 \
    : -np 1 "$offnas" profiler --job job.ini --device mobile \
    : -np 1 "$offnas" profiler --job job.ini --device edge || die "search: $(tail -n 3 q.log)"
  grep -q "profiler rank 3 (edge): partitions are measured over TCP, edge at 127.0.0.1:" q.log ||
    die "the edge rank did not open its probe socket on loopback"
  local dev edge
  dev=$(grep -c "profiler rank 2 (mobile): partition split 2, [0-9]* channels, over TCP: device half" q.log)
  edge=$(grep -c "profiler rank 3 (edge): partition split 2, [0-9]* channels, over TCP: edge half" q.log)
  ((dev == 2 && edge == 2)) || die "partitions measured: $dev by the mobile rank, $edge by the edge rank (want 2 each, one per epoch)"
  grep -q "search: step [0-9]*: partition split 2 with [0-9]* channels measured over TCP: device" q.log ||
    die "the trainers did not log the measured partition"
  local last
  last=$(tail -n 1 q/log.csv | cut -d, -f15,16)
  [[ $last == "2,2" || $last == "3,3" ]] || die "log.csv table versions at the end: '$last' (want corrected tables)"
  echo "ok: the preferred partition measured over TCP by the two profiler ranks each epoch, tables corrected, logged by the trainers"
}

# MPMD: mpirun -np 2 search : -np 1 profiler mobile : -np 1 profiler edge.
test_profilers_mpmd() {
  run m.log mpirun -np 2 "$offnas" search --job job.ini --out m \
    : -np 1 "$offnas" profiler --job job.ini --device mobile \
    : -np 1 "$offnas" profiler --job job.ini --device edge || die "MPMD search: $(tail -n 3 m.log)"
  grep -q "2 trainer ranks, 2 profiler ranks" m.log || die "roles not reported"
  reports m.log 4
  grep -aq "architecture (profiler rank 2, mobile)" m.log || die "the mobile profiler did not report"
  echo "ok: MPMD launch with 2 trainers and 2 profiler ranks"
}

# A device with neither profile file nor profiler rank under mpirun: an error, before training.
test_missing_table_source() {
  run e.log mpirun -np 2 "$offnas" search --job job.ini --out e && die "search should fail"
  grep -q "latency.device: no profile file and no profiler rank" e.log || die "unclear error: $(head -n 3 e.log)"
  [[ ! -e e/checkpoint.h5 ]] || die "a checkpoint was written"
  run e2.log mpirun -np 2 "$offnas" search --job job.ini --out e2 --set cluster.profilers="mobile:2" &&
    die "two mobile profilers should be refused"
  grep -q "one profiler rank per device" e2.log || die "unclear error: $(head -n 3 e2.log)"
  echo "ok: missing table sources and bad cluster.profilers are refused"
}

# A damaged or foreign table message from a profiler rank reaches the trainers: refused with
# one line naming the sender and what is wrong, and every rank ends (non-zero, no hang). The
# profiler spoils its message through the test hook OFFNAS_TEST_DAMAGE_TABLE (mpi/lutcast.c):
# 1 flips a byte of the first table, version marks it as another build's format, later flips a
# byte of the first corrected table (taken up mid-search, after the first epoch).
test_table_message_refused() {
  local how want rc
  for how in 1 version later; do
    case $how in
      1 | later) want="table message from profiler rank 2 (mobile): CRC-32 [0-9a-f]*, the bytes give [0-9a-f]* (damaged on the way)" ;;
      version) want="table message from profiler rank 2 (mobile): version 2, this build reads 1 (another build of offnas?)" ;;
    esac
    OFFNAS_TEST_DAMAGE_TABLE=$how run "x-$how.log" mpirun -np 4 "$offnas" search --job job.ini \
      --out "x-$how" --set cluster.profilers="mobile:1, edge:1"
    rc=$?
    [[ $rc != 0 ]] || die "$how: a damaged table message was taken"
    [[ $rc != 124 && $rc != 137 ]] || die "$how: the job hung (killed by the time limit)"
    grep -aq "offnas: $want\$" "x-$how.log" ||
      die "$how: unclear error: $(grep -a offnas: "x-$how.log" | head -n 3)"
    ! grep -aqE "internal error|Segmentation|signal 11" "x-$how.log" || die "$how: a crash"
    if [[ $how == later ]]; then
      grep -aq "search: epoch 1:" "x-$how.log" || die "later: refused before the first epoch ended"
    else
      [[ ! -e x-$how/checkpoint.h5 ]] || die "$how: a checkpoint was written"
    fi
  done
  echo "ok: damaged and foreign table messages are refused on every rank with one line"
}

# Diverged replicas stop the job with an error naming the step.
test_divergence_detected() {
  profiles
  OFFNAS_TEST_DIVERGE_RANK=1 run d.log mpirun -np 2 "$offnas" search --job job.ini --out d \
    "${FILES[@]}" --set cluster.checksum_every=5 --set train.steps=12 && die "divergence not detected"
  grep -q "step 5: the trainers' parameters differ" d.log || die "unclear error: $(grep offnas: d.log | head -n 2)"
  echo "ok: a checksum mismatch stops the job at step 5"
}

# kill -9 after a checkpoint, --resume: the same result as an uninterrupted run, bit for bit.
test_resume_after_kill() {
  profiles
  # 6 epochs of 64 steps, a checkpoint every 10: time to catch it mid-way
  local s=(--set search.deterministic=1 --set cluster.checkpoint_every=10 --set search.epochs=6
    "${FILES[@]}")
  run full.log mpirun -np 2 "$offnas" search --job job.ini --out full "${s[@]}" || die "full run: $(tail -n 2 full.log)"
  setsid mpirun -np 2 "$offnas" search --job job.ini --out cut "${s[@]}" >cut.log 2>&1 &
  local pid=$! step=0
  for _ in $(seq 1 1200); do
    step=$(checkpoint_step cut/checkpoint.h5)
    [[ ${step:-0} -ge 30 ]] && break
    sleep 0.02
  done
  # all processes of the run's session at once: mpirun, and the ranks, which Open MPI starts in
  # process groups of their own (killing mpirun's group alone leaves them running for seconds,
  # writing more checkpoints); then wait until none is left before looking at what they left
  local session
  mapfile -t session < <(ps -o pid= -s "$pid")
  kill -9 "${session[@]}" 2>/dev/null
  wait "$pid" 2>/dev/null
  for _ in $(seq 1 500); do
    [[ -z $(ps -o pid= -s "$pid") ]] && break
    sleep 0.02
  done
  [[ -z $(ps -o pid= -s "$pid") ]] || die "processes of the killed run still alive: $(ps -o pid=,args= -s "$pid")"
  [[ ${step:-0} -ge 30 && ${step:-0} -lt 384 ]] || die "did not catch the run mid-way (step ${step:-none})"
  # the resumed run starts at the step of the newest checkpoint on disk (the run may have written
  # one more after the look above; the previous one when the kill came between its renames:
  # search_save_checkpoint moves checkpoint.h5 aside before renaming the new one into place)
  local saved=cut/checkpoint.h5 saved_step
  [[ -e $saved ]] || saved=cut/checkpoint.prev.h5
  saved_step=$(checkpoint_step "$saved")
  [[ -n $saved_step ]] || die "no readable checkpoint after the kill"
  ((saved_step >= step)) || die "$saved holds step $saved_step, before the step $step seen"
  run resume.log mpirun -np 2 "$offnas" search --resume --out cut || die "resume: $(tail -n 2 resume.log)"
  grep -q "resuming at step $saved_step of " resume.log ||
    die "did not resume at $saved's step $saved_step: $(grep -a 'resuming' resume.log | head -n 2)"
  identical full/checkpoint.h5 cut/checkpoint.h5 /weights/params /weights/momentum /weights/running_stats /arch/params /arch/adam_m /arch/adam_v
  cmp -s <(cut -d, -f1-16 full/log.csv) <(cut -d, -f1-16 cut/log.csv) || die "log.csv differs after resume"
  echo "ok: killed after step $step (kill -9), resumed at step $saved_step: bit-identical to the uninterrupted run"
}

# A truncated newest checkpoint is reported and the previous one used.
test_truncated_checkpoint() {
  profiles
  local s=(--set search.deterministic=1 --set cluster.checkpoint_every=16 "${FILES[@]}")
  run full.log "$offnas" search --job job.ini --out full "${s[@]}" || die "full run"
  cp -r full part
  [[ -s part/checkpoint.prev.h5 ]] || die "no previous checkpoint kept"
  local prev_step
  prev_step=$(checkpoint_step part/checkpoint.prev.h5)
  truncate -s 2000 part/checkpoint.h5
  run res.log "$offnas" search --resume --out part "${s[@]}" || die "resume: $(tail -n 2 res.log)"
  grep -q "resuming from the previous checkpoint" res.log || die "the damaged checkpoint was not reported: $(head -n 3 res.log)"
  grep -q "checkpoint.h5" res.log || die "the message does not name the file"
  grep -q "resuming at step $prev_step " res.log || die "did not resume at the previous checkpoint's step $prev_step"
  identical full/checkpoint.h5 part/checkpoint.h5 /weights/params /arch/params
  echo "ok: truncated checkpoint refused, previous one (step $prev_step) used, result identical"
}

# SIGUSR1 (Slurm's warning signal): checkpoint, exit status 3, resume to the same result.
test_signal_checkpoint() {
  profiles
  local s=(--set search.deterministic=1 --set cluster.checkpoint_every=1000 "${FILES[@]}")
  run full.log mpirun -np 2 "$offnas" search --job job.ini --out full "${s[@]}" || die "full run"
  mpirun -np 2 "$offnas" search --job job.ini --out sig "${s[@]}" >sig.log 2>&1 &
  local pid=$!
  for _ in $(seq 1 1200); do
    grep -q "search: epoch 1:" sig.log 2>/dev/null && break
    sleep 0.05
  done
  kill -USR1 "$pid"
  wait "$pid"
  local status=$?
  [[ $status == 3 ]] || die "exit status $status after SIGUSR1 (want 3): $(tail -n 3 sig.log)"
  grep -q "stopped at step" sig.log || die "no stop message"
  run res.log mpirun -np 2 "$offnas" search --resume --out sig || die "resume: $(tail -n 2 res.log)"
  identical full/checkpoint.h5 sig/checkpoint.h5 /weights/params /arch/params
  echo "ok: SIGUSR1 wrote a checkpoint and exited 3; the resumed run equals the uninterrupted one"
}

if [[ $case_name == all ]]; then
  for f in $(declare -F | awk '/test_/{print $3}'); do
    ("$f") || exit 1
  done
else
  declare -F "test_$case_name" >/dev/null || die "no such case"
  "test_$case_name"
fi
