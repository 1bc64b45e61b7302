#!/usr/bin/env bash
# runtime/hostile.sh OFFNAS SOURCE_DIR: what hostile or broken clients send (tests/runtime/
# hostile.py: garbage, a wrong version, type, CRC, fingerprint, an oversized or truncated frame,
# a tensor before the hello or of the wrong shape, a stall in mid-frame, a disconnect) gets the
# right ERROR and a closed connection, while a real device on another connection gets all its
# results right; afterwards the server holds no connection but its listener, accepts a new
# device, refuses one beyond --max-connections with ERROR busy, and stops with exit 0.
source "$(dirname "$0")/lib.sh"
runtime_start runtime_hostile "$1" "$2"
here=$(dirname "$0")
py=python3

run=$fx/run2
expect=$(json "$run/summary.json" .test_accuracy)
start_server "$run" --read-timeout 1 --max-connections 8
"$offnas" device-run --run "$run" --server "$server_addr" --images 20 --out "$tmp/probe.json" \
  >/dev/null 2>&1 || die "the probe device-run failed"

# a real device, slowed by an added round trip so that it runs while the attacks go on
"$offnas" device-run --run "$run" --server "$server_addr" --rtt-ms 6 --check \
  --out "$tmp/good.json" >"$tmp/good.log" 2>&1 &
good=$!
cases=(garbage version type too-large crc truncated-hello fingerprint tensor-before-hello
       wrong-shape channel-out-of-range result-from-device stall stall-payload
       disconnect-mid-frame disconnect-after-hello)
"$py" "$here/hostile.py" "$server_addr" "$tmp/probe.json" "${cases[@]}" >"$tmp/hostile.log" 2>&1
while read -r status name rest; do
  if [[ $status == ok ]]; then pass "$name $rest"; else fail "$name" "$rest"; fi
done <"$tmp/hostile.log"
(($(grep -c . "$tmp/hostile.log") == ${#cases[@]})) ||
  fail "hostile.py" "ran $(grep -c . "$tmp/hostile.log") of ${#cases[@]} cases: $(tail -n 2 "$tmp/hostile.log")"
check "the attacks overlapped the real device (it was still running)" kill -0 "$good"

if wait "$good"; then
  got=$(json "$tmp/good.json" .accuracy)
  check "the real device got all 1000 results, none differs, accuracy $got = eval's $expect" \
    jq -e --argjson e "$expect" '.images == 1000 and .mismatches == 0 and .reconnects == 0 and
      .checked == 1000 and ((.accuracy - $e) | fabs < 1e-9)' "$tmp/good.json"
else
  fail "the real device during the attacks" "$(tail -n 3 "$tmp/good.log" | tr '\n' '|')"
fi

# no connection left behind: only the listening socket
sleep 0.5
n=$(sockets "$server_pid")
if ((n == 1)); then pass "the server holds 1 socket (its listener) after all clients left"; else
  fail "leaked connections" "the server holds $n sockets"; fi

# still serving; a connection beyond --max-connections 8 gets ERROR busy
check "a new device is served after the attacks" \
  "$offnas" device-run --run "$run" --server "$server_addr" --images 50 --check --out "$tmp/after.json"
"$py" - "$server_addr" >"$tmp/busy.log" 2>&1 <<'PY'
import socket, struct, sys, time
host, port = sys.argv[1].rsplit(":", 1)
held = [socket.create_connection((host, int(port))) for _ in range(8)]
time.sleep(0.5)
s = socket.create_connection((host, int(port)), timeout=5)
hdr = s.recv(16)
assert hdr[:4] == b"OFNW", hdr
version, typ, length, crc = struct.unpack("<HHII", hdr[4:])
payload = b""
while len(payload) < length:
    payload += s.recv(length - len(payload))
code, = struct.unpack("<H", payload[:2])
assert typ == 4 and code == 11, (typ, code)
assert s.recv(1) == b""
print("ERROR busy, closed:", payload[12:].decode())
PY
check "the 9th connection with --max-connections 8 gets ERROR busy and is closed" test $? -eq 0
grep -q "refused: the server has 8 connections" "$tmp/server.log" || fail "busy log" "no refused line"
sleep 0.5
check "the held connections closed: 1 socket" test "$(sockets "$server_pid")" -eq 1

stop_server
check "edge-serve exits 0 on SIGTERM" test "$server_status" -eq 0
check "one log line per connection, each refusal named" grep -q "refused (timeout)" "$tmp/server.log"
lines=$(grep -c "^edge-serve: connection " "$tmp/server.log")
check "$lines connection lines for the ${#cases[@]} attacks and 12 others" test "$lines" -ge $((${#cases[@]} + 3))
finish
