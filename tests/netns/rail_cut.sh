#!/usr/bin/env bash
# Rail failover over TCP: two namespaces joined by two veth rails (the client's egress
# shaped to 400 Mbit/s each, so the transfer lasts a few seconds), rail_peer sends 24
# validated 8 MiB messages, 4 in flight, with BRAID_TIMEOUT_MS=2000; 1 s in, rail 1 is cut
# (the client's end of its veth goes down). The transfer must complete with every byte
# intact over rail 0, the client must log the rail down once with its cause, and rail 1
# must have stopped carrying bytes. Usage: rail_cut.sh RAIL_PEER_BINARY. Exits 77 (skipped,
# never passed) without namespaces or tbf.
set -uo pipefail
peer=$1
out=$(mktemp -d)
spid=
. "$(dirname "$0")/rails_lib.sh"
two_rails braidC rc 227 400 400
export BRAID_TIMEOUT_MS=2000 BRAID_SOCKET_IFNAME=rc BRAID_LOG_LEVEL=warn
start_peers "$peer" 24 8 4
sleep 1
ip -n "$B" link set rc1 down
t0=$(date +%s)
wait_peers
[ $crc -eq 0 ] && [ $src -eq 0 ] ||
  { echo "FAIL: the transfer did not survive the cut (client $crc, server $src)"; exit 1; }
grep -q "server says intact" "$out/client.txt" || { echo "FAIL: no intact verdict"; exit 1; }
n=$(grep -c "rail 1 (.*) is down" "$out/client.txt")
[ "$n" -eq 1 ] || { echo "FAIL: the client logged rail 1 down $n times (once expected)"; exit 1; }
echo "PASS: 24 x 8 MiB intact across a cut of rail 1 ($(( $(date +%s) - t0 )) s after the cut)"
