#!/usr/bin/env bash
# Runs every libFuzzer target of a build (docs/fuzzing.md):
#   tests/fuzz/run_fuzzers.sh BUILD_DIR SECONDS
# SECONDS > 0: fuzzes each target for SECONDS, from its seeds (written by the target from
# the encoders) and its committed regressions (tests/fuzz/regressions/<target>/), into a
# fresh work corpus under BUILD_DIR/fuzz-work/<target>/. SECONDS = 0: only replays the seeds
# and the regressions once (what ctest runs).
# Prints each target's executions; exits 1 when any target crashed, leaked, timed out or
# broke a property, naming the input it saved (the crash artifact) and how to replay it.
set -uo pipefail
if [ $# -ne 2 ] || ! [[ $2 =~ ^[0-9]+$ ]]; then
  echo "usage: $0 BUILD_DIR SECONDS" >&2
  exit 2
fi
build=$(cd "$1" && pwd) || exit 2
secs=$2
here=$(cd "$(dirname "$0")" && pwd)
list="$build/tests/fuzz/targets.txt"
if [ ! -f "$list" ]; then
  echo "fuzz: $build has no fuzz targets (configure it with clang and BRAID_BUILD_FUZZERS=ON)" >&2
  exit 2
fi
# A finding stops a target at once and names itself; leaks count as findings.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}print_stacktrace=1:halt_on_error=1"

# A fresh work directory per run (replays use their own, so ctest can run beside a fuzz run).
work="$build/fuzz-work"
[ "$secs" -eq 0 ] && work="$build/fuzz-replay"
rm -rf "$work"
failed=()
while read -r t; do
  [ -n "$t" ] || continue
  bin="$build/tests/fuzz/braid_fuzz_$t"
  dir="$work/$t"
  mkdir -p "$dir/seeds" "$dir/corpus" "$dir/artifacts"
  if [ ! -x "$bin" ]; then
    echo "fuzz: $t: FAILED: $bin is not built (cmake --build $build --target braid_fuzzers)"
    failed+=("$t")
    continue
  fi
  if ! "$bin" --write-seeds="$dir/seeds" > "$dir/seeds.log" 2>&1; then
    echo "fuzz: $t: FAILED to write its seeds:"
    cat "$dir/seeds.log"
    failed+=("$t")
    continue
  fi
  inputs=("$dir/seeds")
  [ -d "$here/regressions/$t" ] && inputs+=("$here/regressions/$t")
  log="$dir/fuzz.log"
  if [ "$secs" -eq 0 ]; then
    mapfile -t files < <(find "${inputs[@]}" -type f ! -name '*.md' | sort)
    "$bin" -artifact_prefix="$dir/artifacts/" "${files[@]}" > "$log" 2>&1
    rc=$?
    summary="replayed ${#files[@]} inputs"
  else
    # The first directory takes the new inputs; the others are read only.
    "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=4352 \
      -print_final_stats=1 -artifact_prefix="$dir/artifacts/" \
      "$dir/corpus" "${inputs[@]}" > "$log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1)
    summary="${runs:-?} runs (${rate:-?} exec/s), ${cov:-cov: ?}, $(find "$dir/corpus" -type f | wc -l) new corpus inputs"
    [ $rc -eq 0 ] && summary="$summary in $secs s"
  fi
  if [ $rc -eq 0 ]; then
    echo "fuzz: $t: ok: $summary"
  else
    echo "fuzz: $t: FAILED (exit $rc): $summary"
    grep -E 'ERROR: |property violated|runtime error|SUMMARY: ' "$log" | head -8 | sed 's/^/  /'
    mapfile -t saved < <(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log")
    for a in "${saved[@]}"; do
      echo "  crash artifact: $a"
      echo "  replay: $bin $a"
    done
    [ ${#saved[@]} -gt 0 ] || echo "  (no artifact; full log: $log)"
    echo "  log: $log"
    failed+=("$t")
  fi
done < "$list"

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]}"
  exit 1
fi
echo "fuzz: every target passed"
