#!/usr/bin/env bash
# Replays fuzz reproducers and prints a short stack summary per file: the error line (sanitizer
# report, curv-fuzz finding, or signal) and the first frames inside curv's sources.
#
#   scripts/fuzz_triage.sh TARGET FILE...      e.g. scripts/fuzz_triage.sh onnx fuzz-out/onnx/artifacts/*
#
# Needs build-fuzz/ (scripts/fuzz.sh builds it). Exit status 0; the summary is the output.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${CURV_FUZZ_BUILD:-build-fuzz}
target=$1
shift
tmp=$(mktemp -d)
for f in "$@"; do
  out=$(TMPDIR=$tmp UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ASAN_OPTIONS=detect_leaks=0 \
        timeout 60 "$BUILD/fuzz/fuzz_$target" -timeout=30 -rss_limit_mb=2048 -malloc_limit_mb=256 "$f" 2>&1)
  rc=$?
  what=$(grep -m1 -E "FINDING|ERROR: AddressSanitizer|runtime error:|ERROR: libFuzzer|SUMMARY|deadly signal" <<<"$out")
  frames=$(grep -E '^ +#[0-9]+ ' <<<"$out" | grep -E '/(src|curvature|quant|tools)/' | grep -v fuzz_ |
           sed -E 's/^ +#[0-9]+ 0x[0-9a-f]+ in //; s/\(anonymous namespace\):://g; s/^([^(]*)\(.* ([^ ]+)$/\1 \2/; s|[^ ]*/\.\./\.\./\.\./||; s|/work/[^ ]*/(src/\|curvature/\|quant/)|\1|' |
           awk '!seen[$0]++' | head -4 | paste -sd '<' | sed 's/</ <- /g')
  echo "$(basename "$f") [exit $rc]: ${what:-no error (fixed?)}"
  [[ -n $frames ]] && echo "    at $frames"
done
rm -rf "$tmp"
