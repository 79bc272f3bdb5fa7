#!/usr/bin/env bash
# The README's demo: braid_send_bw server and client on loopback, every size from 2 B to
# 8 MiB, each message's contents validated. Usage: examples/demo.sh [BUILD_DIR]
set -euo pipefail
build=${1:-build}
bw=$build/perf/braid_send_bw
[ -x "$bw" ] || { echo "demo: $bw not found; build first (cmake --build $build)" >&2; exit 1; }
export BRAID_SOCKET_IFNAME=${BRAID_SOCKET_IFNAME:-lo}
port=$((20000 + RANDOM % 20000))
echo "demo: braid_send_bw server and client on loopback (port $port, rails: $BRAID_SOCKET_IFNAME)"
timeout 600 "$bw" -p "$port" -a --validate >/tmp/braid-demo-server.$$ 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f /tmp/braid-demo-server.$$' EXIT
rc=0
timeout 600 "$bw" 127.0.0.1 -p "$port" -a --validate || rc=$?
wait $server || rc=${rc:-$?}
echo "--- server side (receiver) ---"
cat /tmp/braid-demo-server.$$
exit $rc
