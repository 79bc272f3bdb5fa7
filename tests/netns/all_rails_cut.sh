#!/usr/bin/env bash
# The last path: two namespaces joined by two veth rails (400 Mbit/s each), rail_peer sends
# validated 8 MiB messages with BRAID_TIMEOUT_MS=1000; 1 s in, rail 1 is cut (the endpoint
# goes on over rail 0), then rail 0 too. The client's request must fail (no hang) within a
# few timeouts, and its error must name both rails with what each one died of.
# Usage: all_rails_cut.sh RAIL_PEER_BINARY. Exits 77 (skipped, never passed) without
# namespaces or tbf.
set -uo pipefail
peer=$1
out=$(mktemp -d)
spid=
. "$(dirname "$0")/rails_lib.sh"
two_rails braidZ rz 229 400 400
export BRAID_TIMEOUT_MS=1000 BRAID_SOCKET_IFNAME=rz BRAID_LOG_LEVEL=warn
start_peers "$peer" 400 8 4
sleep 1
ip -n "$B" link set rz1 down
for _ in $(seq 100); do grep -q "rail 1 (.*) is down" "$out/client.txt" && break; sleep 0.05; done
grep -q "rail 1 (.*) is down" "$out/client.txt" || { echo "FAIL: rail 1 was not given up"; cat "$out/client.txt"; exit 1; }
ip -n "$B" link set rz0 down
t0=$(date +%s)
wait_peers
[ $crc -ne 0 ] || { echo "FAIL: the client succeeded with every rail cut"; exit 1; }
err=$(grep "rail_peer: send:" "$out/client.txt" | head -1)
[ -n "$err" ] || { echo "FAIL: the client's send did not fail with an error"; cat "$out/client.txt"; exit 1; }
echo "$err" | grep -q "failed before it: rail 1 (rz1" ||
  { echo "FAIL: the error does not name rail 1 and its cause: $err"; exit 1; }
echo "$err" | grep -q -E "rz0|rail 0|control" ||
  { echo "FAIL: the error does not name the last path (rail 0): $err"; exit 1; }
echo "PASS: both rails cut: the send failed $(( $(date +%s) - t0 )) s after the last cut, naming each rail: $err"
