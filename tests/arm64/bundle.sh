#!/usr/bin/env bash
# arm64/bundle.sh OFFNAS SOURCE_DIR: `tests/build-arm64 --bundle DIR` gives a program that runs
# with none of the sysroot: under qemu-aarch64-static without -L (this machine has no arm64
# libraries of its own), through the bundled loader as DIR/offnas starts it, it measures a
# profile with the fingerprint of the x86 build's for the same space.
# shellcheck source=tests/lib/harness.sh
source "$(dirname "$0")/../lib/harness.sh"
# shellcheck source=tests/arm64/lib.sh
source "$(dirname "$0")/lib.sh"
harness_start arm64_bundle
offnas=$1
src=$2
[[ -x $offnas ]] || die "$offnas is not an executable"
arm64_start "$src"

bundle=$tmp/bundle
if "$src/tests/build-arm64" --bundle "$bundle" >"$tmp/bundle.log" 2>&1; then
  pass "$(tail -n 1 "$tmp/bundle.log" | sed 's|^tests/build-arm64: ||')"
else
  die "tests/build-arm64 --bundle: $(tail -n 3 "$tmp/bundle.log" | tr '\n' '|')"
fi
check "the bundle holds the loader, the C library, OpenBLAS and HDF5" \
  ls "$bundle/lib/ld-linux-aarch64.so.1" "$bundle/lib/libc.so.6" "$bundle/lib/libopenblas.so.0" \
  "$bundle/lib/libhdf5_serial.so.103"
# shellcheck disable=SC2016 # the wrapper's own words, unexpanded
check "DIR/offnas is the wrapper that starts bin/offnas through the bundled loader" \
  grep -q 'exec "$here/lib/ld-linux-aarch64.so.1" --library-path "$here/lib" "$here/bin/offnas"' \
  "$bundle/offnas"

# what the wrapper runs, with qemu in front and no sysroot (-L)
# shellcheck disable=SC2054 # commas inside a value
space=(--set net.layers=8/1,16/2 --set net.ops=k3e1,k3e3 --set net.stem=8 --set net.head=32)
if OMP_WAIT_POLICY=PASSIVE qemu-aarch64-static "$bundle/lib/ld-linux-aarch64.so.1" \
  --library-path "$bundle/lib" "$bundle/bin/offnas" profile "${space[@]}" --device bundle \
  --repeats 3 --warmup 1 --out "$tmp/bundle.h5" >"$tmp/profile.log" 2>&1; then
  pass "the bundled program measured a profile without the sysroot"
  "$offnas" profile "${space[@]}" --device x86 --repeats 3 --warmup 1 --out "$tmp/x86.h5" \
    >"$tmp/x86.log" 2>&1 || die "x86 profile: $(tail -n 2 "$tmp/x86.log" | tr '\n' '|')"
  check "its fingerprint is the x86 build's for the same space" \
    test "$(grep '^fingerprint:' "$tmp/profile.log")" = "$(grep '^fingerprint:' "$tmp/x86.log")"
else
  fail "the bundled program without the sysroot" "$(tail -n 3 "$tmp/profile.log" | tr '\n' '|')"
fi
finish
