#!/usr/bin/env bash
# perf/bench_nccl_plugin.sh — what the NCCL plugin's shim costs: 4 MiB messages through the
# plugin API (tests/nccl/plugin_harness.cc bench: the v11 table, isend/irecv/test, a window
# of 8 as NCCL's steps) against braid's own braid_send_bw at the same size and depth, on the
# same transport and rails, interleaved in one session. Prints each round and the median of
# the per-round ratios plugin / braid_send_bw (target >= 0.95: overhead <= 5%).
# A benchmark, not a test: exit 0 when every run worked.
#
# usage: perf/bench_nccl_plugin.sh [BUILD_DIR] [--rounds N] [--iters N] [--port P]
#   The transport follows the environment, as for any braid program: BRAID_SOCKET_IFNAME=lo
#   (TCP on loopback, the default here when nothing is set), or BRAID_TRANSPORT=verbs in the
#   Soft-RoCE VM (tests/softroce/run_in_vm.sh -- perf/bench_nccl_plugin.sh ...).
set -euo pipefail
build="${BRAID_BUILD_DIR:-./build}"
rounds=5
iters=300
port=18700
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) rounds="$2"; shift 2 ;;
    --iters) iters="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    -*) echo "usage: $0 [BUILD_DIR] [--rounds N] [--iters N] [--port P]" >&2; exit 2 ;;
    *) build="$1"; shift ;;
  esac
done
if [ -z "${BRAID_SOCKET_IFNAME:-}" ] && [ -z "${BRAID_TRANSPORT:-}" ]; then
  export BRAID_SOCKET_IFNAME=lo
fi
h="$build/tests/braid_nccl_plugin_harness"
p="$build/plugins/libnccl-net-braid.so"
bw="$build/perf/braid_send_bw"
for f in "$h" "$p" "$bw"; do [ -e "$f" ] || { echo "missing $f: build first" >&2; exit 1; }; done
size=4194304
host=127.0.0.1
[ "${BRAID_TRANSPORT:-}" = verbs ] && host=$(ip -4 -o addr show eth0 2>/dev/null | awk '{print $4}' | cut -d/ -f1 | head -1)
[ -n "$host" ] || host=127.0.0.1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ratios=()
echo "transport: ${BRAID_TRANSPORT:-auto}, rails ${BRAID_SOCKET_IFNAME:-default}; $size-byte messages, $iters per run, window 8"
for r in $(seq 1 "$rounds"); do
  "$bw" -p $((port + r)) -s 4M -n "$iters" -t 8 >"$tmp/srv" 2>&1 &
  srv=$!
  sleep 0.3
  "$bw" -p $((port + r)) -s 4M -n "$iters" -t 8 "$host" >"$tmp/cli" 2>&1
  wait $srv
  own=$(awk '$1 == 4194304 {print $4}' "$tmp/srv" | tail -1)
  plug=$("$h" bench --plugin "$p" --size $size --iters "$iters" --window 8 2>/dev/null |
         sed -n 's/.*: \([0-9.]*\) MB\/s.*/\1/p')
  [ -n "$own" ] && [ -n "$plug" ] || { echo "round $r: a run failed"; cat "$tmp/srv" "$tmp/cli"; exit 1; }
  ratio=$(awk -v a="$plug" -v b="$own" 'BEGIN {printf "%.3f", a / b}')
  ratios+=("$ratio")
  echo "round $r: braid_send_bw $own MB/s (receiver), plugin $plug MB/s (receiver): ratio $ratio"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}')
echo "plugin / braid_send_bw at 4 MiB: median ratio $median over $rounds rounds (target >= 0.95)"
