# shellcheck shell=bash
# runtime/lib.sh: what the split-runtime tests share (sourced by tests/runtime/*.sh): a tiny real
# model trained once per build folder at three splits, and an edge server to start and stop.
#
#   source "$(dirname "$0")/lib.sh"
#   runtime_start NAME OFFNAS SOURCE_DIR   # harness_start + the fixture in $fx (see below)
#   start_server RUN [ARGS...]             # edge-serve on 127.0.0.1:0 (or $listen): $server_pid,
#                                          # $server_addr, its log in $tmp/server.log
#   stop_server                            # SIGTERM, wait; $server_status is its exit status
#   json FILE FILTER                       # jq -r FILTER FILE
#   finish
#
# The fixture $fx (made afresh in each test's folder: about 5 s, and never stale): job.ini (4 layers,
# 2048 training and 1000 test images), dev.h5 and edge.h5 measured here, search/, and three
# retrained run folders of one derived network with eval's summary.json: run0 (split 0: u8
# pixels), run2 (split 2: 6 of 16 channels in int8), run5 (split 5: all on the device).

# shellcheck source=tests/lib/harness.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/harness.sh"

runtime_fixture() {
  fx=$tmp/fixture
  mkdir -p "$fx" || die "cannot create $fx"
  fashion_file=$(realpath "$fashion_file")
  (
    cat >"$fx/job.ini" <<EOF2
[data]
path = $fashion_file
val_size = 256
train_limit = 2048
test_limit = 1000
$(tiny_net_section)
[train]
batch = 32
threads = 1
epochs = 1
log_seconds = 100
[search]
epochs = 2
warmup_epochs = 1
wire = int8
[latency]
device = $fx/dev.h5
edge = $fx/edge.h5
device_scale = 20
[network]
preset = wifi
EOF2
    set -e
    "$offnas" profile --job "$fx/job.ini" --device phone --out "$fx/dev.h5"
    "$offnas" profile --job "$fx/job.ini" --device server --out "$fx/edge.h5"
    "$offnas" search --job "$fx/job.ini" --out "$fx/search"
    "$offnas" derive --run "$fx/search"
    # the same derived ops at three splits (arch.json edited as a user may: derive's checks apply)
    local s
    for s in 0 2 5; do
      case $s in
        0) jq '.split_point=0 | .channels=[] | .kept_channels=0 | .total_channels=0' ;;
        2) jq '.split_point=2 | .channels=[0,2,5,7,9,11] | .kept_channels=6 | .total_channels=16' ;;
        5) jq '.split_point=5 | .channels=[] | .kept_channels=0 | .total_channels=0' ;;
      esac <"$fx/search/arch.json" >"$fx/arch$s.json"
      "$offnas" train --arch "$fx/arch$s.json" --out "$fx/run$s"
      "$offnas" eval --run "$fx/run$s"
    done
  ) >"$tmp/fixture.log" 2>&1 || die "the fixture run failed: $(tail -n 5 "$tmp/fixture.log" | tr '\n' '|')"
}

runtime_start() {
  harness_start "$1"
  offnas=$2
  src=$3
  [[ -x $offnas ]] || die "$offnas is not an executable"
  command -v jq >/dev/null || die "no jq (tests/deps installs it)"
  fashion_h5 "$offnas"
  runtime_fixture
  server_pid=
  trap 'runtime_cleanup' EXIT
}

runtime_cleanup() {
  [[ -n ${server_pid:-} ]] && kill -KILL "$server_pid" 2>/dev/null
  harness_cleanup
}

json() {
  jq -r "$2" "$1"
}

# start_server RUN [ARGS...]: an edge-serve of RUN on a free loopback port, waited for.
start_server() {
  local run=$1
  shift
  rm -f "$tmp/ready"
  [[ -n ${listen:-} ]] || : >"$tmp/server.log" # a restart on a given port keeps the log
  "$offnas" edge-serve --run "$run" --listen "${listen:-127.0.0.1:0}" --ready-file "$tmp/ready" "$@" \
    2>>"$tmp/server.log" &
  server_pid=$!
  local i
  for ((i = 0; i < 200; i++)); do
    [[ -s $tmp/ready ]] && break
    kill -0 "$server_pid" 2>/dev/null || die "edge-serve exited: $(tail -n 3 "$tmp/server.log" | tr '\n' '|')"
    sleep 0.05
  done
  [[ -s $tmp/ready ]] || die "edge-serve did not start within 10 s"
  server_addr=$(<"$tmp/ready")
}

stop_server() {
  kill -TERM "$server_pid" 2>/dev/null
  wait "$server_pid"
  server_status=$?
  server_pid=
}

# sockets PID: how many sockets the process holds open.
sockets() {
  find "/proc/$1/fd" -lname 'socket:*' 2>/dev/null | wc -l
}
