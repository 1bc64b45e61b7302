#!/usr/bin/env bash
# arm64/device_run.sh OFFNAS SOURCE_DIR: the arm64 `offnas device-run` under emulation against
# this (x86) build's `offnas edge-serve` on loopback gets the test accuracy of eval and of the
# x86 device-run exactly, with the same bytes on the wire, at split 0 (u8 pixels), an inner
# split (int8 channels) and all on the device; with --check the arm64 edge half gives every
# result the x86 server sent. Timings are not checked (qemu is not an ARM device).
# shellcheck source=tests/runtime/lib.sh
source "$(dirname "$0")/../runtime/lib.sh"
# shellcheck source=tests/arm64/lib.sh
source "$(dirname "$0")/lib.sh"
# the runtime fixture (tests/runtime/lib.sh) made by this build: job, profiles, three run folders
harness_name=arm64_device_run
arm64_start "$2"
runtime_start arm64_device_run "$1" "$2"

for s in 0 2 5; do
  run=$fx/run$s
  expect=$(json "$run/summary.json" .test_accuracy)
  args=()
  if ((s < 5)); then
    start_server "$run"
    args=(--server "$server_addr" --check)
  fi
  "$offnas" device-run --run "$run" "${args[@]}" --out "$tmp/x86_$s.json" >"$tmp/x86.log" 2>&1 ||
    die "split $s: x86 device-run: $(tail -n 3 "$tmp/x86.log" | tr '\n' '|')"
  out=$tmp/arm64_$s.json
  if arm64 "$arm64_offnas" device-run --run "$run" "${args[@]}" --out "$out" >"$tmp/arm64.log" 2>&1; then
    got=$(json "$out" .accuracy)
    x86=$(json "$tmp/x86_$s.json" .accuracy)
    if [[ $(jq -n --argjson a "$got" --argjson b "$expect" --argjson c "$x86" \
      '(($a - $b) | fabs < 1e-9) and (($a - $c) | fabs < 1e-9)') == true ]]; then
      pass "split $s: arm64 device-run accuracy $got = eval's $expect = x86 device-run's $x86"
    else
      fail "split $s: accuracy" "arm64 device-run $got, eval $expect, x86 device-run $x86"
    fi
    check "split $s: 1000 images, no reconnect" jq -e '.images == 1000 and .reconnects == 0' "$out"
    if ((s < 5)); then
      check "split $s: the arm64 edge half agrees with the x86 server on every image" \
        jq -e '.checked == 1000 and .mismatches == 0' "$out"
      check "split $s: the same frame and value bytes as the x86 device" \
        test "$(jq -c '[.frame_bytes, .value_bytes, .wire, .fingerprint]' "$out")" \
        = "$(jq -c '[.frame_bytes, .value_bytes, .wire, .fingerprint]' "$tmp/x86_$s.json")"
    fi
  else
    fail "split $s: arm64 device-run" "$(tail -n 3 "$tmp/arm64.log" | tr '\n' '|')"
  fi
  if ((s < 5)); then
    stop_server
    if ((server_status == 0)) && grep -q "2000 requests answered, 0 errors" "$tmp/server.log"; then
      pass "split $s: edge-serve answered both devices (2000 requests, 0 errors), exit 0"
    else
      fail "split $s: edge-serve" "exit $server_status: $(tail -n 2 "$tmp/server.log" | tr '\n' '|')"
    fi
  fi
done
finish
