#!/usr/bin/env bash
# slurm/profile.sbatch with the arm64 build: OFFNAS names a program that runs build-arm64/offnas
# under qemu-aarch64-static (what an ARM node of the partition runs natively); the job on the
# `board` node (n1) writes board-arm64-n1.h5 with the device name and rows of the space, and the
# x86 build searches with it. Skipped (77) without the arm64 build (tests/build-arm64).
#
#   tests/slurm/cluster.sh tests/slurm/test_profile_arm64.sh BUILD/offnas SOURCE_DIR   (ctest: slurm.profile_arm64)
# shellcheck source=tests/slurm/lib.sh
source "$(dirname "$0")/lib.sh"
# shellcheck source=tests/arm64/lib.sh
source "$(dirname "$0")/../arm64/lib.sh"
arm64_start "$src"

# the program as a board would run it: here through qemu and the sysroot
program=$tmp/offnas-arm64
printf '#!/bin/sh\nexec qemu-aarch64-static -L "%s" "%s" "$@"\n' "$arm64_sysroot" "$arm64_offnas" >"$program"
chmod +x "$program"

# a 2-layer space: stem, 2 + 2 candidates (skip does not fit either layer), head = 6 rows
cat >"$tmp/space.ini" <<EOF
[data]
path = $fashion
train_limit = 600
val_size = 200
test_limit = 200

[net]
layers = 8/1, 16/2
ops = k3e1, k3e3
candidates = k3e1, k3e3, skip
head = 32
EOF

id=$(submit --constraint=board --output="$tmp/profile-%j.out" \
  --export="ALL,OFFNAS=$program,PROFILE_DIR=$tmp/profiles" \
  "$src/slurm/profile.sbatch" "$tmp/space.ini" board-arm64 --repeats 3 --warmup 1) ||
  { fail "sbatch profile.sbatch" "no job id"; finish; exit; }
out=$tmp/profile-$id.out
if wait_job "$id" 120; then pass "profile job $id ended"; else fail "profile job $id ended" "timeout"; fi
expect_completed "$id" "$out"
nodes=$(job_field "$id" NodeList)
if [[ $nodes == n1 ]]; then pass "--constraint=board ran on n1"; else fail "--constraint=board ran on n1" "ran on $nodes"; fi
check "the output names the arm64 program" grep -q "^offnas: *$program" "$out"

file=$tmp/profiles/board-arm64-n1.h5
check "profile file named DEVICE-NODE.h5" test -s "$file"
device=$(h5dump -a device "$file" 2>/dev/null | grep '(0):' | grep -o '"[^"]*"' | tr -d '"')
if [[ $device == board-arm64 ]]; then pass "h5dump: device attribute board-arm64"; else fail "h5dump: device attribute board-arm64" "'$device'"; fi
rows=$(h5dump -d /median_ms "$file" 2>/dev/null | grep -o 'SIMPLE { ( [0-9]* )' | grep -o '[0-9]*')
if [[ $rows == 6 ]]; then pass "h5dump: 6 rows of medians"; else fail "h5dump: 6 rows of medians" "'$rows'"; fi

# the x86 build loads it as the device table of a (0-epoch) search of the same space
check "the x86 offnas search loads the arm64 profile" "$offnas" search --job "$tmp/space.ini" \
  --out "$tmp/load" --set "latency.device=$file" --set search.epochs=0 --set search.warmup_epochs=0
finish
