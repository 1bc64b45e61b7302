#!/usr/bin/env bash
# runtime/load.sh OFFNAS SOURCE_DIR: 16 devices x 500 images at once against one edge-serve
# (2 threads): every device gets every result, in order (device-run checks each result's request
# id), each equal to the edge half run on the device (--check), with the accuracy of the same
# 500 images run alone. Prints requests per second and the worst p99. Then SIGTERM during a
# load: edge-serve exits 0 and every request it answered reached its device (the devices'
# results add up to the server's count).
source "$(dirname "$0")/lib.sh"
runtime_start runtime_load "$1" "$2"

run=$fx/run2
start_server "$run" --threads 2
"$offnas" device-run --run "$run" --server "$server_addr" --images 500 --out "$tmp/alone.json" \
  >/dev/null 2>"$tmp/alone.log" || die "device-run alone: $(tail -n 2 "$tmp/alone.log")"
expect=$(json "$tmp/alone.json" .correct)

devices=16
t0=$(date +%s.%N)
pids=()
for ((d = 0; d < devices; d++)); do
  "$offnas" device-run --run "$run" --server "$server_addr" --images 500 --check --warmup 0 \
    --out "$tmp/load$d.json" >/dev/null 2>"$tmp/load$d.log" &
  pids+=($!)
done
ok=0
for ((d = 0; d < devices; d++)); do
  if wait "${pids[d]}" && jq -e --argjson c "$expect" \
    '.images == 500 and .correct == $c and .checked == 500 and .mismatches == 0 and
     .reconnects == 0' "$tmp/load$d.json" >/dev/null; then
    ok=$((ok + 1))
  else
    fail "device $d under load" "$(tail -n 2 "$tmp/load$d.log" | tr '\n' '|')"
  fi
done
t1=$(date +%s.%N)
check "$ok of $devices devices got 500 of 500 results in order, all equal to the edge half here, $expect correct as alone" \
  test "$ok" -eq "$devices"
p99=$(jq -s 'map(.measured_ms.total.p99) | max' "$tmp"/load*.json)
med=$(jq -s 'map(.measured_ms.total.median) | sort | .[length / 2 | floor]' "$tmp"/load*.json)
rate=$(jq -n --argjson a "$t0" --argjson b "$t1" --argjson n $((devices * 500)) '$n / ($b - $a)')
printf 'load: %d devices x 500 images: %.0f requests/s, end-to-end median of medians %.3f ms, worst p99 %.3f ms\n' \
  "$devices" "$rate" "$med" "$p99"
stop_server
check "edge-serve logged $((devices * 500 + 500)) answered requests" \
  grep -q "$((devices * 500 + 500)) requests answered, 0 errors" "$tmp/server.log"

# SIGTERM in the middle of a load (an added round trip keeps the devices busy for ~2 s)
start_server "$run" --threads 2
pids=()
for ((d = 0; d < 4; d++)); do
  "$offnas" device-run --run "$run" --server "$server_addr" --rtt-ms 2 --out "$tmp/term$d.json" \
    >/dev/null 2>"$tmp/term$d.log" &
  pids+=($!)
done
# stop once all four are connected and under way (the listener and 4 connections)
for ((i = 0; i < 600; i++)); do
  (($(sockets "$server_pid") >= 5)) && break
  sleep 0.05
done
sleep 0.5
stop_server
check "edge-serve exits 0 on SIGTERM during a load" test "$server_status" -eq 0
received=0
for ((d = 0; d < 4; d++)); do
  if wait "${pids[d]}"; then
    fail "device $d after SIGTERM" "it finished all its images: the stop came too late to test"
    received=$((received + $(json "$tmp/term$d.json" .images)))
  else
    n=$(sed -n 's/.*stopped after \([0-9]*\) of 1000 results.*/\1/p' "$tmp/term$d.log")
    [[ -n $n ]] || fail "device $d after SIGTERM" "no count: $(head -n 1 "$tmp/term$d.log")"
    received=$((received + ${n:-0}))
  fi
done
answered=$(sed -n 's/.*stopped: .* \([0-9]*\) requests answered.*/\1/p' "$tmp/server.log")
check "every answered request reached its device: server $answered, devices $received" \
  test "${answered:-x}" = "$received"
check "the devices were told the server stopped (one line each)" \
  bash -c "for f in $tmp/term?.log; do test \$(wc -l <\$f) -le 2 && grep -q 'offnas: .*stopped after' \$f || exit 1; done"
# a dropped connection: the server is killed (SIGKILL: no goodbye) under a running device and a
# new one started on the same port; the device reconnects once, sends the request in flight
# again, and ends with every result right and the reconnect reported
start_server "$run"
"$offnas" device-run --run "$run" --server "$server_addr" --rtt-ms 2 --check --out "$tmp/re.json" \
  >"$tmp/re.out" 2>"$tmp/re.log" &
device=$!
for ((i = 0; i < 600; i++)); do # connected and under way
  (($(sockets "$server_pid") >= 2)) && break
  sleep 0.05
done
sleep 0.5
kill -KILL "$server_pid"
wait "$server_pid" 2>/dev/null
listen=$server_addr start_server "$run"
if wait "$device"; then
  check "after the server was killed and restarted the device got all 1000 results, one reconnect, none differs" \
    jq -e '.images == 1000 and .reconnects == 1 and .mismatches == 0' "$tmp/re.json"
  check "the reconnect is reported on stderr" grep -q "connection dropped at image .*reconnecting once" "$tmp/re.log"
  check "and in the summary line" grep -q "1 reconnect" "$tmp/re.out"
else
  fail "device-run across a server restart" "$(tail -n 2 "$tmp/re.log" | tr '\n' '|')"
fi
stop_server
finish
