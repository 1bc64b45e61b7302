#!/usr/bin/env bash
# runtime/accuracy.sh OFFNAS SOURCE_DIR: edge-serve and device-run on loopback give eval's test
# accuracy exactly (the wire format is simulated in training and eval), at split 0 (u8 pixels),
# an inner split (int8 channels) and all on the device; every result equals the edge half run
# on the device's own frame (--check); runtime.json holds what docs/formats.md says.
source "$(dirname "$0")/lib.sh"
runtime_start runtime_accuracy "$1" "$2"

for s in 0 2 5; do
  run=$fx/run$s
  expect=$(json "$run/summary.json" .test_accuracy)
  out=$tmp/runtime$s.json
  if ((s < 5)); then
    start_server "$run"
    args=(--server "$server_addr" --check)
  else
    args=()
  fi
  if "$offnas" device-run --run "$run" "${args[@]}" --out "$out" >"$tmp/device.log" 2>&1; then
    got=$(json "$out" .accuracy)
    if [[ $(jq -n --argjson a "$got" --argjson b "$expect" '($a - $b) | fabs < 1e-9') == true ]]; then
      pass "split $s: device-run accuracy $got = eval's $expect"
    else
      fail "split $s: accuracy" "device-run $got, eval $expect"
    fi
    check "split $s: 1000 images, none differs from the edge half run here" \
      jq -e '.images == 1000 and .mismatches == 0 and .reconnects == 0' "$out"
    check "split $s: medians are finite and the parts add up to at most the total" \
      jq -e '.measured_ms | (.device.median >= 0 and .transfer.median >= 0 and .edge.median >= 0
             and .total.median >= .device.median and .total.p99 >= .total.median)' "$out"
  else
    fail "split $s: device-run" "$(tail -n 3 "$tmp/device.log" | tr '\n' '|')"
  fi
  if ((s < 5)); then
    check "split $s: bytes per image as predicted (values), frame = 16 + 25 + 2c + values" \
      jq -e '.value_bytes == .predicted_bytes and
             .frame_bytes == 16 + 25 + 2 * .kept_channels + .value_bytes' "$out"
    stop_server
    if ((server_status == 0)) && grep -q "1000 requests, 0 errors" "$tmp/server.log"; then
      pass "split $s: edge-serve stopped on SIGTERM with exit 0 and logged 1000 requests"
    else
      fail "split $s: edge-serve" "exit $server_status: $(tail -n 2 "$tmp/server.log" | tr '\n' '|')"
    fi
  fi
done

# split 2 sends 6 channels of 16 at 14x14 in int8; split 0 the 28x28 u8 pixels
check "split 2 sends 14*14*6 int8 values" jq -e '.value_bytes == 1176 and .wire == "int8"' "$tmp/runtime2.json"
check "split 0 sends 28*28 u8 pixels" jq -e '.value_bytes == 784 and .wire == "u8"' "$tmp/runtime0.json"

# an all-on-device model has nothing to serve
if "$offnas" edge-serve --run "$fx/run5" --listen 127.0.0.1:0 >/dev/null 2>"$tmp/err"; then
  fail "edge-serve of an all-on-device model" "it served"
else
  check "edge-serve of an all-on-device model is refused in one line" grep -q "nothing to serve" "$tmp/err"
fi

# an edge server needs no data file: model.h5 names the input's channels and the classes
start_server "$fx/run2" --set data.path="$tmp/no-such-data.h5"
if "$offnas" device-run --run "$fx/run2" --server "$server_addr" --out "$tmp/nodata.json" >/dev/null 2>"$tmp/err"; then
  check "an edge server without the data file serves eval's accuracy" \
    jq -e --argjson e "$(json "$fx/run2/summary.json" .test_accuracy)" '(.accuracy - $e) | fabs < 1e-9' "$tmp/nodata.json"
else
  fail "an edge server without the data file" "$(head -n 2 "$tmp/err")"
fi
stop_server

# a device of another model (split 0) against the split-2 server is refused at the hello
start_server "$fx/run2"
if "$offnas" device-run --run "$fx/run0" --server "$server_addr" --images 5 --out "$tmp/x.json" \
  >/dev/null 2>"$tmp/err"; then
  fail "a device of another model" "it was served"
else
  check "a device of another model is refused: fingerprint mismatch named" grep -q "mismatch" "$tmp/err"
  check "... in one line" test "$(wc -l <"$tmp/err")" -eq 1
fi
stop_server
finish
