#!/usr/bin/env bash
# runtime/link.sh OFFNAS SOURCE_DIR: device-run and edge-serve in two network namespaces joined
# by a veth pair whose uplink tbf shapes to a preset's bandwidth (tests/runtime/netns.bash), the
# preset's round trip added by --rtt-ms, tables measured here just before: at lte and wifi the
# measured end-to-end median is within 15% of the predicted one at split 0 (u8 pixels) and
# split 2 (6 int8 channels), where the link dominates; a frame of 6.3 KB (split 1, every
# channel) is paced by the shaper (its transfer beyond the round trip is 60..115% of bytes /
# bandwidth, plus 1 ms of scheduling noise); all on the device nothing crosses (its 0.05 ms of compute is printed, not
# asserted: a timing that small is the machine's noise; jobs/split-sweep measures the compute
# on the camera network, docs/results.md); the namespaces are gone afterwards. Exits 77
# (skipped) where namespaces cannot be made.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/netns.bash"
if ! netns_available; then
  echo "runtime_link: skipped: needs root, ip and tc (network namespaces)"
  exit 77
fi
runtime_start runtime_link "$1" "$2"
trap 'netns_down; runtime_cleanup' EXIT
netns_up "t$$" || die "cannot make the namespaces"

# the tables of this machine, measured now: both halves run here
"$offnas" profile --job "$fx/job.ini" --device here --out "$fx/here.h5" >"$tmp/profile.log" 2>&1 ||
  die "profile: $(tail -n 2 "$tmp/profile.log")"

# run_pair PRESET RUN [--split S]: serves RUN in the edge namespace, runs the device in the other
# on 100 test images; the report in $tmp/$PRESET-$(basename RUN)$S.json
run_pair() {
  local preset=$1 run=$2 tag
  shift 2
  tag=$preset-$(basename "$run")${2:-}
  read -r _ _ rtt < <("$offnas" job --job "$fx/job.ini" --set "network.preset=$preset" --key network.link)
  local args=()
  local pid=
  if [[ $(json "$run/summary.json" .split_point) != 5 || -n ${2:-} ]]; then
    rm -f "$tmp/ready"
    netns_edge "$offnas" edge-serve --run "$run" --listen "$netns_edge_ip:0" --ready-file "$tmp/ready" \
      "$@" 2>"$tmp/server-$tag.log" &
    pid=$!
    local i
    for ((i = 0; i < 200; i++)); do
      [[ -s $tmp/ready ]] && break
      sleep 0.05
    done
    [[ -s $tmp/ready ]] || { fail "$tag" "edge-serve did not start: $(tail -n 2 "$tmp/server-$tag.log")"; return; }
    args=(--server "$(<"$tmp/ready")")
  fi
  netns_dev "$offnas" device-run --run "$run" "${args[@]}" "$@" --images 100 \
    --tables "$fx/here.h5,$fx/here.h5" --set "network.preset=$preset" --rtt-ms "$rtt" \
    --out "$tmp/$tag.json" >"$tmp/device-$tag.log" 2>&1 || fail "$tag" "device-run: $(tail -n 2 "$tmp/device-$tag.log")"
  if [[ -n $pid ]]; then
    kill -TERM "$pid" 2>/dev/null
    wait "$pid"
  fi
}

for preset in lte wifi; do
  read -r _ bw rtt < <("$offnas" job --job "$fx/job.ini" --set "network.preset=$preset" --key network.link)
  netns_shape "$bw" || die "tc tbf rate $bw Mbit/s failed"
  for s in 0 2 5; do
    run_pair "$preset" "$fx/run$s"
    f=$tmp/$preset-run$s.json
    [[ -s $f ]] || continue
    line=$(jq -r '"measured \(.measured_ms.total.median | . * 1000 | round / 1000) ms, predicted \(.predicted_ms.total | . * 1000 | round / 1000) ms"' "$f")
    if ((s == 5)); then
      check "$preset split 5: all on the device, nothing crosses ($line)" \
        jq -e '.server == null and .frame_bytes == 0 and .measured_ms.transfer.median == 0 and
               .measured_ms.edge.median == 0 and .predicted_ms.transfer == 0' "$f"
    else
      check "$preset split $s: end-to-end median within 15% of the prediction ($line)" \
        jq -e '(.measured_ms.total.median / .predicted_ms.total - 1) | fabs <= 0.15' "$f"
    fi
  done
  # a bandwidth-bound frame: split 1 with every channel (6.3 KB)
  run_pair "$preset" "$fx/run2" --split 1
  f=$tmp/$preset-run21.json
  if [[ -s $f ]]; then
    # paced: at least 60% of bytes/bandwidth (unshaped it would be ~0); at most 115% of it plus
    # 1 ms, the scheduling noise seen on a loaded 2-core machine (wifi's frame is 2.7 ms, where
    # 1.38x was measured once with the whole suite running beside it)
    frame_ms=$(jq -r --argjson bw "$bw" '8 * .frame_bytes / ($bw * 1000)' "$f")
    paced=$(jq -r --argjson ms "$frame_ms" '(.measured_ms.transfer.median - .rtt_ms_added) / $ms' "$f")
    check "$preset split 1: the 6.3 KB frame is paced by tbf (transfer beyond the round trip = $paced of bytes/bandwidth, $frame_ms ms)" \
      jq -en --argjson p "$paced" --argjson ms "$frame_ms" '$p >= 0.6 and $p <= 1.15 + 1 / $ms'
  fi
done

netns_down
check "the namespaces are gone" bash -c "! ip netns list | grep -q 'offnas-t$$-'"
finish
