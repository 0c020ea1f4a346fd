#!/usr/bin/env bash
# Builds and runs the standalone kernel test (native/test/kernel_test.cc: every KernelTable entry and the
# packed GEMM against float64) for each target, independently of Node-API:
#   x86-64    native g++, every x86 back end the CPU has (avx512, avx2) and the generic one;
#   aarch64   aarch64-linux-gnu-g++, run under qemu-aarch64 -L /usr/aarch64-linux-gnu (NEON + generic);
#   wasm32    clang++-16 --target=wasm32-wasi -msimd128, run under Node's WASI (SIMD128 + generic; single-threaded
#             stand-in for the thread pool, native/test/threadpool_single.cc, since wasi has no threads);
#   wasm32-relaxed  the same with -mrelaxed-simd (vfma as f32x4.relaxed_madd; run-wasi.mjs turns on Node 20's flag).
# Usage: scripts/native-kernel-test.sh [x86-64] [aarch64] [wasm32] [wasm32-relaxed]   (default: all four)
# Exit status: 0 all requested targets built and passed; 1 a build or test failed; 3 nothing failed but a
# target was skipped because its toolchain is missing. With CI set (or --require-all) a missing toolchain
# is a failure (exit 1). Toolchains (Debian): g++, g++-aarch64-linux-gnu, qemu-user, clang-16, lld-16, wasi-libc,
# libc++-16-dev-wasm32, libc++abi-16-dev-wasm32, libclang-rt-16-dev-wasm32 (see .ci/run).
# Objects are cached in native/test/build/<target>/ and rebuilt when a source or header changes.
# KERNEL_TEST_JOBS (default 2) bounds parallel compiles; KERNEL_TEST_ARGS is passed to each test binary;
# AARCH64_CXX, QEMU_AARCH64 and WASM_CXX override the cross tools.
set -uo pipefail
cd "$(dirname "$0")/.."

require_all=0
[ -n "${CI:-}" ] && require_all=1
targets=()
for a in "$@"; do
  case "$a" in
    --require-all) require_all=1 ;;
    x86-64 | x86 | x86_64) targets+=(x86-64) ;;
    aarch64 | arm64) targets+=(aarch64) ;;
    wasm32 | wasm) targets+=(wasm32) ;;
    wasm32-relaxed | wasm-relaxed) targets+=(wasm32-relaxed) ;;
    *) echo "usage: $0 [--require-all] [x86-64] [aarch64] [wasm32] [wasm32-relaxed]" >&2; exit 2 ;;
  esac
done
[ ${#targets[@]} -eq 0 ] && targets=(x86-64 aarch64 wasm32 wasm32-relaxed)
jobs_max=${KERNEL_TEST_JOBS:-2}
read -r -a test_args <<< "${KERNEL_TEST_ARGS:-}"

# as native/binding.gyp (-O2 instead of -O3 to keep the builds short; -ffp-contract=off keeps results identical)
common_flags=(-std=c++17 -O2 -fno-math-errno -fno-trapping-math -ffp-contract=off -Wall -Wno-unused-function)
gcc_flags=(-Wno-maybe-uninitialized -Wno-uninitialized -pthread)
lib_srcs=(native/src/gemm.cc native/src/rowops.cc native/src/attention.cc native/src/isa/avx512.cc native/src/isa/avx2.cc
  native/src/isa/neon.cc native/src/isa/wasm.cc native/src/isa/generic.cc)
# newest shared header: a change rebuilds every object
newest_header=$(ls -t native/src/*.h native/src/simd/*.h native/src/kernels/*.h native/src/kernels/*.inc | head -n 1)

summary=()
failed=0
missing=0

# build TARGET CXX FLAGS... -- SOURCES... : compiles each source to native/test/build/TARGET/*.o (cached), links
# native/test/build/TARGET/kernel_test (LINK_OUT overrides the name), LINK_FLAGS appended at link time.
build() {
  local target=$1 cxx=$2
  shift 2
  local flags=()
  while [ "$1" != "--" ]; do flags+=("$1"); shift; done
  shift
  local dir=native/test/build/$target
  mkdir -p "$dir"
  local stamp="$cxx ${flags[*]}"
  if [ ! -f "$dir/flags" ] || [ "$(cat "$dir/flags")" != "$stamp" ]; then
    rm -f "$dir"/*.o
    printf '%s' "$stamp" > "$dir/flags"
  fi
  local objs=() srcs=() logs=() src obj log
  for src in "$@"; do
    obj=$dir/$(basename "${src%.cc}").o
    objs+=("$obj")
    if [ -f "$obj" ] && [ "$obj" -nt "$src" ] && [ "$obj" -nt "$newest_header" ] && [ "$obj" -nt "$dir/flags" ]; then continue; fi
    log=$obj.log
    while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n || true; done
    rm -f "$obj.rc"
    ( "$cxx" "${flags[@]}" -c "$src" -o "$obj.tmp" > "$log" 2>&1 && mv "$obj.tmp" "$obj"; echo $? > "$obj.rc" ) &
    logs+=("$log")
    srcs+=("$src")
  done
  wait
  local ok=1 i
  for i in "${!logs[@]}"; do
    if [ "$(cat "${logs[$i]%.log}.rc" 2> /dev/null)" != 0 ]; then
      ok=0
      echo "--- compile failed: ${srcs[$i]} ($target)"
      cat "${logs[$i]}"
    elif [ -s "${logs[$i]}" ]; then
      cat "${logs[$i]}"  # warnings
    fi
  done
  [ $ok = 1 ] || return 1
  "$cxx" "${flags[@]}" "${objs[@]}" ${LINK_FLAGS:-} -o "$dir/${LINK_OUT:-kernel_test}" 2>&1 || return 1
}

# run_target NAME BUILD_CMD... :: RUN_CMD... : builds, runs, records the result
run_target() {
  local name=$1
  shift
  local bcmd=() rcmd=()
  while [ "$1" != "::" ]; do bcmd+=("$1"); shift; done
  shift
  rcmd=("$@")
  echo "=== $name: build"
  local t0=$SECONDS
  if ! "${bcmd[@]}"; then
    summary+=("$name: BUILD FAILED")
    failed=1
    return
  fi
  local tb=$((SECONDS - t0))
  echo "=== $name: run: ${rcmd[*]}"
  local out rc
  out=$("${rcmd[@]}" 2>&1)
  rc=$?
  printf '%s\n' "$out"
  local ran
  ran=$(printf '%s\n' "$out" | sed -n 's/.*back ends run: //p' | tail -n 1)
  if [ $rc -eq 0 ]; then
    summary+=("$name: passed (back ends: ${ran:-?}; build ${tb}s, run $((SECONDS - t0 - tb))s)")
  else
    summary+=("$name: FAILED (exit $rc; back ends: ${ran:-none reported})")
    failed=1
  fi
}

skip_target() {
  local name=$1 why=$2
  missing=1
  if [ $require_all = 1 ]; then
    summary+=("$name: FAILED: toolchain missing ($why)")
    failed=1
  else
    summary+=("$name: SKIPPED: toolchain missing ($why)")
  fi
}

have() { command -v "$1" > /dev/null 2>&1; }
wasm_packages="clang-16 lld-16 wasi-libc libc++-16-dev-wasm32 libc++abi-16-dev-wasm32 libclang-rt-16-dev-wasm32"
# Debian's libc++-16-dev-wasm32 headers, which clang 16's driver does not search by itself (as scripts/build-wasm.mjs)
wasm_include=(-nostdinc++ -isystem /usr/include/wasm32-wasi/c++/v1 -Wno-unused-command-line-argument)
# true when CXX links a C++ program (libc++) for wasm32-wasi
wasm_links() {
  local probe=native/test/build/wasm-probe.wasm rc
  mkdir -p native/test/build
  printf '#include <vector>\nint main() { return std::vector<int>(2).at(1); }\n' |
    "$1" --target=wasm32-wasi "${wasm_include[@]}" -fno-exceptions -x c++ - -o "$probe" > /dev/null 2>&1
  rc=$?
  rm -f "$probe"
  return $rc
}

for target in "${targets[@]}"; do
  case "$target" in
    x86-64)
      if [ "$(uname -m)" != x86_64 ]; then
        skip_target x86-64 "host is $(uname -m), not x86-64"
      elif ! have g++; then
        skip_target x86-64 "no g++"
      else
        LINK_FLAGS=-pthread run_target x86-64 build x86-64 g++ "${common_flags[@]}" "${gcc_flags[@]}" -- \
          native/test/kernel_test.cc native/src/threadpool.cc "${lib_srcs[@]}" :: native/test/build/x86-64/kernel_test "${test_args[@]}"
      fi
      ;;
    aarch64)
      a64_cxx=${AARCH64_CXX:-aarch64-linux-gnu-g++}
      qemu=${QEMU_AARCH64:-qemu-aarch64}
      if ! have "$a64_cxx"; then
        skip_target aarch64 "no $a64_cxx: apt-get install g++-aarch64-linux-gnu"
      elif ! have "$qemu"; then
        skip_target aarch64 "no $qemu: apt-get install qemu-user"
      else
        LINK_FLAGS=-pthread run_target aarch64 build aarch64 "$a64_cxx" "${common_flags[@]}" "${gcc_flags[@]}" -- \
          native/test/kernel_test.cc native/src/threadpool.cc "${lib_srcs[@]}" :: \
          "$qemu" -L /usr/aarch64-linux-gnu native/test/build/aarch64/kernel_test "${test_args[@]}"
      fi
      ;;
    wasm32 | wasm32-relaxed)
      wasm_cxx=${WASM_CXX:-clang++-16}
      simd=(-msimd128)
      [ "$target" = wasm32-relaxed ] && simd+=(-mrelaxed-simd)
      if ! have "$wasm_cxx"; then
        skip_target "$target" "no $wasm_cxx: apt-get install $wasm_packages"
      elif ! have wasm-ld; then
        skip_target "$target" "no wasm-ld: apt-get install lld"
      elif ! wasm_links "$wasm_cxx"; then
        skip_target "$target" "$wasm_cxx cannot link for wasm32-wasi: apt-get install $wasm_packages"
      else
        LINK_OUT=kernel_test.wasm LINK_FLAGS=-Wl,-z,stack-size=1048576 run_target "$target" build "$target" "$wasm_cxx" \
          --target=wasm32-wasi "${simd[@]}" "${wasm_include[@]}" -fno-exceptions "${common_flags[@]}" -- \
          native/test/kernel_test.cc native/test/threadpool_single.cc "${lib_srcs[@]}" :: \
          node --no-warnings native/test/run-wasi.mjs "native/test/build/$target/kernel_test.wasm" "${test_args[@]}"
      fi
      ;;
  esac
done

echo "=== native kernel test summary"
printf '  %s\n' "${summary[@]}"
if [ $failed = 1 ]; then exit 1; fi
if [ $missing = 1 ]; then exit 3; fi
exit 0
