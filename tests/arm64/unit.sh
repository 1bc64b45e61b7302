#!/usr/bin/env bash
# arm64/unit.sh OFFNAS SOURCE_DIR: the arm64 build's unit tests under qemu-aarch64-static: every
# op's forward against its reference and its backward against finite differences (test_op),
# and the two halves of a split network and the wire protocol that device-run uses
# (test_split, test_wire). Every TEST() of each file must run and pass.
# shellcheck source=tests/lib/harness.sh
source "$(dirname "$0")/../lib/harness.sh"
# shellcheck source=tests/arm64/lib.sh
source "$(dirname "$0")/lib.sh"
harness_start arm64_unit
src=$2
arm64_start "$src"

for module in op split wire; do
  binary=$arm64_build/tests/test_$module
  [[ -x $binary ]] || { fail "test_$module" "no $binary"; continue; }
  declared=$(grep -c '^TEST(' "$src/tests/test_$module.c")
  if arm64 "$binary" >"$tmp/$module.log" 2>&1; then
    # CUnit's summary row: "tests  total  ran  passed  failed  inactive"
    if grep -Eq "^ +tests +$declared +$declared +$declared +0 " "$tmp/$module.log"; then
      pass "test_$module under qemu: $declared of $declared tests passed"
    else
      fail "test_$module under qemu" "not $declared tests run and passed: $(grep -E '^ +tests ' "$tmp/$module.log")"
    fi
  else
    fail "test_$module under qemu" "$(grep -E 'FAILED|failed|Error' "$tmp/$module.log" | head -n 5 | tr '\n' '|')"
  fi
done
check "the finite-difference gradient tests ran" \
  test "$(grep -c 'finite_differences \.\.\.passed' "$tmp/op.log")" -ge 8
finish
