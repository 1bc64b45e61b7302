#!/usr/bin/env bash
# arm64/profile.sh OFFNAS SOURCE_DIR: `offnas profile` of the arm64 build under emulation writes a
# latency table that this (x86) build loads and searches with, and refuses for a job of another
# search space in one line. The table's figures are checked for sanity only: emulated timings
# are not an ARM device's.
# shellcheck source=tests/lib/harness.sh
source "$(dirname "$0")/../lib/harness.sh"
# shellcheck source=tests/arm64/lib.sh
source "$(dirname "$0")/lib.sh"
harness_start arm64_profile
offnas=$1
src=$2
[[ -x $offnas ]] || die "$offnas is not an executable"
arm64_start "$src"
fashion_h5 "$offnas"
for py in python3 /usr/bin/python3; do
  "$py" -c 'import h5py' 2>/dev/null && break
done
"$py" -c 'import h5py' 2>/dev/null || die "no python3 with h5py (tests/deps: python3-h5py)"

job=$tmp/job.ini
cat >"$job" <<EOF2
[data]
path = $fashion_file
val_size = 128
train_limit = 512
test_limit = 128
$(tiny_net_section)
[train]
batch = 32
threads = 1
epochs = 1
log_seconds = 100
[search]
epochs = 2
warmup_epochs = 1
[latency]
device = $tmp/arm64.h5
edge = $tmp/x86.h5
[network]
preset = wifi
EOF2

# the table, measured under qemu (few repeats: the figures are not what is tested)
if arm64 "$arm64_offnas" profile --job "$job" --device arm64-qemu --repeats 5 --warmup 1 \
  --out "$tmp/arm64.h5" >"$tmp/profile.log" 2>&1; then
  pass "arm64 offnas profile under qemu wrote $(du -h "$tmp/arm64.h5" | cut -f1) ($(grep fixed_network_ms "$tmp/profile.log"))"
else
  die "arm64 offnas profile: $(tail -n 3 "$tmp/profile.log" | tr '\n' '|')"
fi
"$offnas" profile --job "$job" --device x86 --repeats 5 --warmup 1 --out "$tmp/x86.h5" \
  >"$tmp/profile_x86.log" 2>&1 || die "x86 offnas profile: $(tail -n 3 "$tmp/profile_x86.log" | tr '\n' '|')"

# one attribute or data set of a table, as text: h5 FILE NAME
h5() {
  "$py" - "$@" <<'EOF2'
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    name = sys.argv[2]
    value = f[name][()] if name.startswith("/") else f.attrs[name]
    if isinstance(value, bytes):
        value = value.decode()
    print(" ".join(repr(float(v)) for v in value) if hasattr(value, "__len__") and
          not isinstance(value, str) else value)
EOF2
}
check "the arm64 table names its device and was measured" \
  test "$(h5 "$tmp/arm64.h5" device) $(h5 "$tmp/arm64.h5" source)" = "arm64-qemu measured"
check "the arm64 table has the fingerprint of the x86 table of the same job" \
  test "$(h5 "$tmp/arm64.h5" fingerprint)" = "$(h5 "$tmp/x86.h5" fingerprint)"
check "the arm64 table has the x86 table's (slot, op) rows" \
  test "$(h5 "$tmp/arm64.h5" /slot) $(h5 "$tmp/arm64.h5" /op)" = "$(h5 "$tmp/x86.h5" /slot) $(h5 "$tmp/x86.h5" /op)"
check "every arm64 figure is finite, positive, p10 <= median <= p90, 5 repeats" \
  "$py" - "$tmp/arm64.h5" <<'EOF2'
import math, sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    rows = zip(f["/p10_ms"][()], f["/median_ms"][()], f["/p90_ms"][()], f["/repeats"][()])
    bad = [r for r in rows if not (all(math.isfinite(v) and v > 0 for v in r[:3])
                                   and r[0] <= r[1] <= r[2] and r[3] == 5)]
sys.exit(f"{len(bad)} bad rows, first {bad[0]}" if bad else 0)
EOF2

# the x86 build searches with the arm64 table as its device
if "$offnas" search --job "$job" --out "$tmp/search" >"$tmp/search.log" 2>&1; then
  pass "x86 offnas search with the arm64 table as latency.device"
  check "the search used the arm64 table: lut_device.h5 is arm64-qemu's, figures unchanged" \
    test "$(h5 "$tmp/search/lut_device.h5" device) $(h5 "$tmp/search/lut_device.h5" /median_ms)" \
    = "arm64-qemu $(h5 "$tmp/arm64.h5" /median_ms)"
  # shellcheck disable=SC2016 # an awk program
  check "log.csv has both epochs with a finite expected latency" \
    awk -F, 'NR > 1 { n++; if ($9 + 0 <= 0) bad++ } END { exit n != 2 || bad }' "$tmp/search/log.csv"
else
  fail "x86 offnas search with the arm64 table" "$(tail -n 3 "$tmp/search.log" | tr '\n' '|')"
fi

# a job of another search space (one layer more) refuses the table in one line
sed -e 's|^layers = .*|layers = 8/1, 16/2, 16/1, 24/2, 24/1|' \
  -e 's|^ops = .*|ops = k3e1, k3e3, k3e3, k5e3, k3e1|' "$job" >"$tmp/other.ini"
if "$offnas" search --job "$tmp/other.ini" --out "$tmp/other" >/dev/null 2>"$tmp/err"; then
  fail "a job of another search space" "the search ran with the arm64 table"
else
  check "a job of another search space is refused: 'another search space', naming arm64.h5" \
    grep -q "arm64.h5: made for another search space" "$tmp/err"
  check "... in one line" test "$(wc -l <"$tmp/err")" -eq 1
fi
finish
