# shellcheck shell=bash
# runtime/netns.bash: a shaped link between a device and an edge host on one machine, sourced by
# tests/runtime/link.sh and jobs/split-sweep. Two network namespaces joined by a veth pair,
# 10.231.0.1 (device) and 10.231.0.2 (edge), /30, nothing else routed: no traffic leaves the
# pair. The device's uplink is shaped with tc tbf (burst 1600 bytes: about one packet, so a
# frame is paced at the rate from its second packet on); the kernel here has no netem, so the
# round trip is added by device-run --rtt-ms. Needs root, ip and tc.
#
#   netns_up TAG           # namespaces offnas-TAG-dev / offnas-TAG-edge; netns_cleanup on EXIT
#   netns_shape MBIT       # the uplink's rate (tbf), replaced on each call
#   netns_dev CMD... / netns_edge CMD...   # run CMD in a namespace
#   netns_down             # removes both namespaces (and the veth pair with them)

netns_available() {
  [[ $(id -u) == 0 ]] && command -v ip >/dev/null && command -v tc >/dev/null &&
    ip netns add "offnas-probe-$$" 2>/dev/null && ip netns del "offnas-probe-$$"
}

netns_up() {
  netns_tag=$1
  netns_d=offnas-$netns_tag-dev
  netns_e=offnas-$netns_tag-edge
  netns_if=on$netns_tag
  netns_down 2>/dev/null
  ip netns add "$netns_d" && ip netns add "$netns_e" &&
    ip link add "${netns_if}d" type veth peer name "${netns_if}e" &&
    ip link set "${netns_if}d" netns "$netns_d" && ip link set "${netns_if}e" netns "$netns_e" &&
    ip -n "$netns_d" addr add 10.231.0.1/30 dev "${netns_if}d" &&
    ip -n "$netns_e" addr add 10.231.0.2/30 dev "${netns_if}e" &&
    ip -n "$netns_d" link set "${netns_if}d" up && ip -n "$netns_e" link set "${netns_if}e" up &&
    ip -n "$netns_d" link set lo up && ip -n "$netns_e" link set lo up || {
    netns_down
    return 1
  }
  netns_dev_ip=10.231.0.1
  netns_edge_ip=10.231.0.2
}

netns_shape() {
  local kbit
  kbit=$(awk -v m="$1" 'BEGIN { printf "%d", m * 1000 }')
  ip netns exec "$netns_d" tc qdisc replace dev "${netns_if}d" root tbf rate "${kbit}kbit" \
    burst 1600 latency 400ms
}

netns_dev() {
  ip netns exec "$netns_d" "$@"
}

netns_edge() {
  ip netns exec "$netns_e" "$@"
}

netns_down() {
  [[ -n ${netns_d:-} ]] || return 0
  ip netns pids "$netns_e" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
  ip netns pids "$netns_d" 2>/dev/null | xargs -r kill -KILL 2>/dev/null
  ip netns del "$netns_d" 2>/dev/null
  ip netns del "$netns_e" 2>/dev/null
  return 0
}
