#!/usr/bin/env bash
# Runs the libFuzzer targets of fuzz/ for a while each and prints one summary line per target.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     SECONDS per target (default 60); TARGET among
#                                            onnx npz idx h5data checkpoint study runfile (default: all)
#
# Builds build-fuzz/ first if needed (clang, -DCURV_FUZZ=ON: ASan + UBSan + coverage). Each target
# starts from its seed corpus fuzz/corpus/<target>/ plus what earlier runs kept in
# fuzz-out/<target>/corpus/, with its dictionary fuzz/<format>.dict where there is one, in
# libFuzzer's fork mode so that one crash does not end the run. An allocation above 512 MB counts as
# out-of-memory (inputs are a few KB). Crash, timeout and out-of-memory reproducers go to
# fuzz-out/<target>/artifacts/, the log to fuzz-out/<target>/fuzz.log. Replay or triage them with
#   build-fuzz/fuzz/fuzz_<target> FILE        scripts/fuzz_triage.sh <target> FILE...
#
# Environment: CURV_FUZZ_BUILD (build dir, default build-fuzz), CURV_FUZZ_OUT (default fuzz-out),
# CURV_FUZZ_FAIL=1 (exit 1 when any target crashed or hung; default: report only),
# CURV_FUZZ_STRICT=1 (loader messages must name the file; see fuzz/fuzz_harness.h).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECONDS_PER_TARGET=${1:-60}
shift || true
ALL=(onnx npz idx h5data checkpoint study runfile)
TARGETS=("$@")
((${#TARGETS[@]})) || TARGETS=("${ALL[@]}")
BUILD=${CURV_FUZZ_BUILD:-build-fuzz}
OUT=${CURV_FUZZ_OUT:-fuzz-out}
case $OUT in /*) ;; *) OUT=$ROOT/$OUT ;; esac

# Largest input per format: a bit above the largest seed, so mutations can grow files.
max_len() {
  case $1 in
    onnx) echo 32768 ;; checkpoint) echo 49152 ;; h5data) echo 16384 ;; npz) echo 4096 ;; idx) echo 1024 ;;
    study) echo 4096 ;; runfile) echo 8192 ;;
    *) echo "fuzz.sh: unknown target '$1' (expected: ${ALL[*]})" >&2; exit 2 ;;
  esac
}
for t in "${TARGETS[@]}"; do max_len "$t" >/dev/null; done

if [[ ! -f $BUILD/CMakeCache.txt ]]; then
  CC=clang CXX=clang++ cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCURV_FUZZ=ON \
    -DCURV_BUILD_TESTS=OFF -DCURV_BUILD_BENCH=OFF >&2
fi
cmake --build "$BUILD" -j"$(nproc)" --target fuzzers >&2

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
status=0
for t in "${TARGETS[@]}"; do
  dir=$OUT/$t
  mkdir -p "$dir/corpus" "$dir/artifacts" "$dir/tmp"
  dict=()
  case $t in onnx) dict=(-dict=fuzz/onnx.dict) ;; npz) dict=(-dict=fuzz/npz.dict) ;;
    h5data | checkpoint) dict=(-dict=fuzz/h5.dict) ;; study) dict=(-dict=fuzz/study.dict) ;; esac
  # The first corpus folder receives new interesting inputs; the seeds stay untouched.
  TMPDIR=$dir/tmp "$BUILD/fuzz/fuzz_$t" "${dict[@]}" -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
    -max_total_time="$SECONDS_PER_TARGET" -max_len="$(max_len "$t")" -timeout=20 -rss_limit_mb=2048 -malloc_limit_mb=512 -print_funcs=0 \
    -artifact_prefix="$dir/artifacts/" "$dir/corpus" "fuzz/corpus/$t" >"$dir/fuzz.log" 2>&1 || true
  rm -rf "$dir/tmp"
  # Fork mode prints "#EXECS: cov: .. exec/s: .. oom/timeout/crash: O/T/C time: ..".
  last=$(grep -E '^#[0-9]+: cov:' "$dir/fuzz.log" | tail -1 || true)
  execs=$(sed -E 's/^#([0-9]+):.*/\1/' <<<"$last")
  read -r ooms timeouts crashes < <(sed -E 's|.*oom/timeout/crash: ([0-9]+)/([0-9]+)/([0-9]+).*|\1 \2 \3|' <<<"$last")
  files=$(find "$dir/artifacts" -type f | wc -l)
  printf 'fuzz %-10s %10s executions in %ss: %s crashes, %s timeouts, %s out-of-memory (%s files in %s)\n' \
    "$t" "${execs:-0}" "$SECONDS_PER_TARGET" "${crashes:-?}" "${timeouts:-?}" "${ooms:-?}" "$files" "$dir/artifacts"
  if ! grep -q "INFO: Seed:" "$dir/fuzz.log"; then
    echo "fuzz $t: the target did not start; see $dir/fuzz.log" >&2
    tail -5 "$dir/fuzz.log" >&2
    status=1
  elif [[ ${CURV_FUZZ_FAIL:-0} == 1 && ($crashes != 0 || $timeouts != 0) ]]; then
    status=1
  fi
done
exit $status
