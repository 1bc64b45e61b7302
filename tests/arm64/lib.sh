# shellcheck shell=bash
# arm64/lib.sh: what the arm64 tests share (sourced by tests/arm64/*.sh after harness_start or
# runtime_start): the cross-built device build of offnas (build-arm64/, made by
# tests/build-arm64; the ctest arm64.build runs it first) and qemu-aarch64-static to run it.
# Emulated timings are not an ARM device's: the tests check files and figures, never speed.
#
#   arm64_start SOURCE_DIR   sets arm64_build, arm64_offnas, arm64_sysroot; skips the test
#                            (exit 77, a SKIP line) when there is no arm64 build to run
#   arm64 PROGRAM ARGS...    runs an aarch64 program under qemu-aarch64-static -L SYSROOT
#
# Environment: OFFNAS_ARM64_SYSROOT (default /opt/offnas-arm64-sysroot), OFFNAS_ARM64_BUILD
# (default SOURCE_DIR/build-arm64), as for tests/build-arm64.

# skip WHY: the test did not run (ctest's SKIP_RETURN_CODE 77), never a pass.
# shellcheck disable=SC2154 # harness_name: set by harness_start (tests/lib/harness.sh)
skip() {
  echo "SKIP $harness_name: $*" >&2
  exit 77
}

arm64_start() {
  arm64_sysroot=${OFFNAS_ARM64_SYSROOT:-/opt/offnas-arm64-sysroot}
  arm64_build=${OFFNAS_ARM64_BUILD:-build-arm64}
  [[ $arm64_build == /* ]] || arm64_build=$1/$arm64_build
  arm64_offnas=$arm64_build/offnas
  command -v qemu-aarch64-static >/dev/null ||
    skip "no qemu-aarch64-static (tests/build-arm64 installs it through tests/deps --arm64)"
  [[ -f $arm64_sysroot/.offnas-sysroot ]] ||
    skip "no arm64 sysroot at $arm64_sysroot (tests/deps --arm64 could not make it)"
  [[ -x $arm64_offnas ]] || skip "no $arm64_offnas (tests/build-arm64 makes it)"
  [[ $(file -b "$arm64_offnas") == *"ARM aarch64"* ]] || die "$arm64_offnas is not an aarch64 program"
}

arm64() {
  qemu-aarch64-static -L "$arm64_sysroot" "$@"
}
