#!/usr/bin/env bash
# perf/callgrind_send_lat.sh — counts the instructions of braid's small-message path: runs a
# braid_send_lat server normally and its client under callgrind, over verbs, inside a
# machine with an RDMA device (here: the Soft-RoCE VM). Instruction counts do not depend on
# the host's load, unlike the latencies bench_verbs.sh reports, so this is how to see what
# a change to the hot path costs or saves.
#
#   tests/softroce/run_in_vm.sh -- perf/callgrind_send_lat.sh build OUT.callgrind
#   callgrind_annotate --tree=caller OUT.callgrind | less    # per call: divide by -n
#
# usage: perf/callgrind_send_lat.sh [BUILD_DIR] [OUT_FILE] [-n ITERS] [--dev DEV]
# A diagnostic, not a test: exit 0 when both sides ran, 1 otherwise, 2 on a bad command line.
set -euo pipefail
build=./build out=./send_lat.callgrind iters=3000 dev=rxe0 pos=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    -n) iters="$2"; shift 2 ;;
    --dev) dev="$2"; shift 2 ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    -*) echo "callgrind_send_lat.sh: unknown option $1" >&2; exit 2 ;;
    *) if ((pos == 0)); then build="$1"; else out="$1"; fi; pos=$((pos + 1)); shift ;;
  esac
done
command -v valgrind >/dev/null || { echo "callgrind_send_lat.sh: valgrind is not installed" >&2; exit 2; }
tool="$build/perf/braid_send_lat"
[[ -x "$tool" ]] || { echo "callgrind_send_lat.sh: $tool not found" >&2; exit 2; }
gid=$("$(dirname "$0")/../tests/softroce/gid_index.sh" "$dev")
host="${BRAID_VM_IP0:-10.77.0.1}" port=$((19200 + RANDOM % 500))
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# The client under valgrind is some 50x slower: generous timeouts on both sides.
timeout -k 5 600 "$tool" -d "$dev" -x "$gid" -s 8 -n "$iters" -p "$port" --timeout 120000 \
  >"$log" 2>&1 &
sp=$!
sleep 0.5
rc=0
timeout -k 5 600 valgrind --tool=callgrind --callgrind-out-file="$out" "$tool" -d "$dev" \
  -x "$gid" -s 8 -n "$iters" -p "$port" --timeout 120000 "$host" || rc=1
wait "$sp" || { echo "callgrind_send_lat.sh: the server failed:" >&2; tail -5 "$log" >&2; rc=1; }
[[ $rc == 0 ]] && echo "wrote $out ($iters round trips): callgrind_annotate --tree=caller $out"
exit $rc
