#!/usr/bin/env bash
# Damaged and hand-edited CSV tables of `offnas profile fit` (src/latency_fit.c): malformed and
# absurd numbers, wrong column counts, empty files, and fits whose table offnas's own loader
# would refuse. Each case exits 1 with one line naming the CSV and the column or line
# (tests/damaged/lib.sh), and writes no profile.
#
#   tests/damaged/csv.sh BUILD/offnas SOURCE_DIR       (ctest: damaged.csv)
set -u
source "$(dirname "$0")/lib.sh"
damaged_start damaged_csv "${1:?usage: csv.sh OFFNAS SOURCE_DIR}" "${2:-.}"

header=device,op_type,input_h,input_w,in_channels,out_channels,expand_ratio,kernel,stride,se,act,v_scale,norm,latency_ms,key
# A CSV like ../shared/data/latency/'s: 144 MBConv rows whose times grow with their MACs, plus
# stem (firstconv) rows and a row the fit ignores.
good=$cases/good.csv
{
  echo "$header"
  n=0
  for h in 8 16 24 32; do for c in 8 16 24; do for e in 1 3 6; do for k in 3 5; do for s in 1 2; do
    ms=$(awk -v h="$h" -v c="$c" -v e="$e" -v k="$k" -v s="$s" \
      'BEGIN { o = h / s; printf "%.6f", 1e-6 * (h*h*c*c*e + o*o*k*k*c*e) + 2e-5 * c * e + 0.05 }')
    echo "phone,conv,$h,$h,$c,$c,$e,$k,$s,0,relu,-1,na,$ms,b$((n++))"
  done; done; done; done; done
  for h in 64 96 128; do echo "phone,firstconv,$h,$h,3,16,-1,3,2,-1,na,-1,na,0.$h,s$h"; done
  echo "phone,transattn,7,7,64,64,-1,-1,-1,-1,relu,2,ln,123.5,attn"
} >"$good"

# csv CASE SED_SCRIPT: a copy of the good CSV edited by sed; sets damaged_file.
csv() {
  damaged_file=$(copy_case "$1.csv" "$good")
  sed -i "$2" "$damaged_file"
}

# fit CASE FIELD_REGEX [ARGS...]: profile fit of the damaged copy, which must write nothing.
fit() {
  local name=$1 field=$2
  shift 2
  damaged "$name" "$field" "$offnas" profile fit --csv "$damaged_file" --job "$fx/job.ini" \
    --device phone --out "$cases/out.$name.h5" "$@"
  [[ ! -e $cases/out.$name.h5 ]] || fail "$name" "wrote a profile anyway"
}

# latency_ms: malformed, not finite, negative, zero, absurd
csv ms_text '5s/,0\.[0-9]*,b3$/,0.5x,b3/'
fit "latency_ms 0.5x" ':5: latency_ms'
csv ms_nan '6s/,0\.[0-9]*,b4$/,nan,b4/'
fit "latency_ms nan" ':6: latency_ms'
csv ms_inf '7s/,0\.[0-9]*,b5$/,inf,b5/'
fit "latency_ms inf" ':7: latency_ms'
csv ms_1e400 '7s/,0\.[0-9]*,b5$/,1e400,b5/'
fit "latency_ms 1e400 (overflows a double)" ':7: latency_ms'
csv ms_1e300 '8s/,0\.[0-9]*,b6$/,1e300,b6/'
fit "latency_ms 1e300 (gave entries near 1e307 and an inf error)" ':8: latency_ms'
csv ms_neg '9s/,0\.[0-9]*,b7$/,-0.5,b7/'
fit "latency_ms -0.5" ':9: latency_ms'
csv ms_zero '9s/,0\.[0-9]*,b7$/,0,b7/'
fit "latency_ms 0" ':9: latency_ms'
csv ms_hours '9s/,0\.[0-9]*,b7$/,7.2e6,b7/'
fit "latency_ms of two hours" ':9: latency_ms'
long=$(printf '9%.0s' $(seq 1 5000))
csv ms_long "9s/,0\\.[0-9]*,b7\$/,$long,b7/"
fit "latency_ms of 5000 digits" ':9: latency_ms'
(($(wc -c <"$tmp/stderr") < 300)) && pass "the 5000-digit value is cut in the message" ||
  fail "long value" "message of $(wc -c <"$tmp/stderr") bytes"

# the integer columns
csv chan_real '3s/^phone,conv,8,8,8,/phone,conv,8,8,8.5,/'
fit "in_channels 8.5" ':3: in_channels'
csv chan_2e64 '3s/^phone,conv,8,8,8,/phone,conv,8,8,99999999999999999999,/'
fit "in_channels 10^20" ':3: in_channels'
csv chan_2e32 '3s/^phone,conv,8,8,8,/phone,conv,8,8,4294967304,/'
fit "in_channels 2^32 + 8 (was it narrowed to 8?)" ':3: in_channels: 4294967304 is not in 1..100000'
csv kernel_99 '3s/^phone,conv,8,8,8,8,1,3,/phone,conv,8,8,8,8,1,99,/'
fit "kernel 99" ':3: kernel: 99 is not in 1..15'

# columns and lines
csv extra_field '4s/$/,extra/'
fit "a line with one field too many" ':4: 16 fields, the header has 15'
csv short_line '4s/,b[0-9]*$//'
fit "a line with one field too few" ':4: 14 fields'
many=$(printf ',x%.0s' $(seq 1 70))
csv wide_header "1s/\$/$many/"
fit "a header of 85 columns" ':1: more than 64 columns'
csv wide_line "5s/\$/$many/"
fit "a line of 85 fields" ':5: more than 64 fields'
csv no_latency '1s/latency_ms/latency/'
fit "no latency_ms column" ':1: latency_ms'
csv empty_field '6s/,relu,/,,/'
fit "an empty field" ':6: field 11 is empty'
csv blank '7s/.*//'
fit "a blank line" ':7: empty line'
damaged_file=$cases/empty.csv
: >"$damaged_file"
fit "an empty file" 'empty file'
damaged_file=$cases/header_only.csv
echo "$header" >"$damaged_file"
fit "a header and no rows" '0 MBConv rows'
damaged_file=$(copy_case nul.csv "$good")
printf 'phone,conv,8,8,8,8,1,3,1,0,relu,-1,na,0.5\0,z\n' >>"$damaged_file"
fit "a NUL byte" 'NUL byte'

# the device column
csv device_other '10s/^phone,/tablet,/'
fit "a second device" ":10: device: 'tablet' differs"
dev=$(printf 'p%.0s' $(seq 1 100))
csv device_long "2s/^phone,/$dev,/"
fit "a device name of 100 characters" ':2: device: longer than 63'

# the fit itself: rows that determine nothing, and a table the loader would refuse
damaged_file=$cases/same_rows.csv
{ echo "$header"; for i in $(seq 1 20); do echo "phone,conv,8,8,8,8,1,3,1,0,relu,-1,na,0.5,r$i"; done; } >"$damaged_file"
fit "20 identical rows (a singular fit)" 'singular fit'
damaged_file=$(copy_case scale.csv "$good")
fit "--scale 1e12: entries above an hour" 'the fitted model gives .* not in \[0, 3\.6e\+06\]' --scale 1e12

# the good CSV fits, and what it writes loads (the search reads it as the device profile)
check "the good CSV fits" "$offnas" profile fit --csv "$good" --job "$fx/job.ini" --device phone \
  --out "$cases/fitted.h5"
check "the fitted profile loads" "$offnas" search --job "$fx/job.ini" --out "$cases/out.fitted" \
  --set "latency.device=$cases/fitted.h5" --set search.epochs=0
finish
