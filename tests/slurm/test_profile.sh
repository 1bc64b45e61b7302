#!/usr/bin/env bash
# slurm/profile.sbatch: a device class chosen by node feature (--constraint=xeon: node n2 of the
# private cluster) gets its profile measured there for a tiny search space; the file is named
# after device and node, carries the device name and one row per (slot, op), and offnas loads it
# as a table for a search of that space (and refuses it for another space).
#
#   tests/slurm/cluster.sh tests/slurm/test_profile.sh BUILD/offnas SOURCE_DIR    (ctest: slurm.profile)
source "$(dirname "$0")/lib.sh"

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

id=$(submit --constraint=xeon --output="$tmp/profile-%j.out" --export=ALL,PROFILE_DIR="$tmp/profiles" \
  "$src/slurm/profile.sbatch" "$tmp/space.ini" edge-xeon --repeats 3 --warmup 1) \
  || { fail "sbatch profile.sbatch" "no job id"; finish; exit; }
out=$tmp/profile-$id.out
if wait_job "$id" 120; then pass "profile job $id ended"; else fail "profile job $id ended" "timeout"; fi

expect_completed "$id" "$out"
nodes=$(job_field "$id" NodeList)
if [[ $nodes == n2 ]]; then pass "--constraint=xeon ran on n2"; else fail "--constraint=xeon ran on n2" "ran on $nodes"; fi

file=$tmp/profiles/edge-xeon-n2.h5
check "profile file named DEVICE-NODE.h5" test -s "$file"
check "output logs the job id" grep -q "^job: *$id" "$out"
check "output logs the profile file" grep -q "^profile: *$file" "$out"
device=$(h5dump -a device "$file" 2>/dev/null | grep '(0):' | grep -o '"[^"]*"' | tr -d '"')
if [[ $device == edge-xeon ]]; then pass "h5dump: device attribute edge-xeon"; else fail "h5dump: device attribute edge-xeon" "'$device'"; fi
rows=$(h5dump -d /median_ms "$file" 2>/dev/null | grep -o 'SIMPLE { ( [0-9]* )' | grep -o '[0-9]*')
if [[ $rows == 6 ]]; then pass "h5dump: 6 rows of medians"; else fail "h5dump: 6 rows of medians" "'$rows'"; fi

# offnas loads it as both tables of a (0-epoch) search of the same space ...
check "offnas search loads the profile" "$offnas" search --job "$tmp/space.ini" --out "$tmp/load" \
  --set "latency.device=$file" --set "latency.edge=$file" --set search.epochs=0 --set search.warmup_epochs=0
# ... and refuses it for the default space
if err=$("$offnas" search --set "data.path=$fashion" --out "$tmp/load2" --set "latency.device=$file" \
  --set "latency.edge=$file" --set search.epochs=0 --set search.warmup_epochs=0 2>&1); then
  fail "offnas refuses the profile for another space" "search succeeded"
elif grep -q "another search space" <<<"$err"; then
  pass "offnas refuses the profile for another space"
else
  fail "offnas refuses the profile for another space" "$err"
fi

# without a device name: usage error, job FAILED
id=$(submit --output="$tmp/usage-%j.out" "$src/slurm/profile.sbatch" "$tmp/space.ini")
wait_job "$id" 60
if [[ $(job_field "$id" ExitCode) == 2:0 ]] && grep -q "usage: sbatch slurm/profile.sbatch" "$tmp/usage-$id.out"; then
  pass "no device: exit 2 with the usage line"
else
  fail "no device: exit 2 with the usage line" "exit $(job_field "$id" ExitCode)"
  show_output "$tmp/usage-$id.out"
fi

finish
