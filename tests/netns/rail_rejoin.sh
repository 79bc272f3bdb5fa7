#!/usr/bin/env bash
# Rail rejoin over TCP: as rail_cut.sh, rail 1 is cut mid-transfer (the client's end of its
# veth goes down); 1.5 s after the client has logged it down, the link comes back. The client must
# dial the rail again and the listener take it back ("is back" logged once on each side),
# and rail 1 must carry bytes again before the transfer ends, every byte intact.
# Usage: rail_rejoin.sh RAIL_PEER_BINARY. Exits 77 (skipped, never passed) without
# namespaces or tbf.
set -uo pipefail
peer=$1
out=$(mktemp -d)
spid=
. "$(dirname "$0")/rails_lib.sh"
two_rails braidJ rj 229 400 400
export BRAID_TIMEOUT_MS=2000 BRAID_SOCKET_IFNAME=rj BRAID_LOG_LEVEL=info
start_peers "$peer" 80 8
sleep 1
ip -n "$B" link set rj1 down
t0=$(date +%s%N)
for _ in $(seq 100); do  # until the client gave the rail up (10 s at most)
  grep -q "rail 1 (.*) is down" "$out/client.txt" && break
  sleep 0.1
done
t1=$(date +%s%N)
sleep 1.5  # a few rejoin attempts fail first (the back-off)
ip -n "$B" link set rj1 up
wait_peers
[ $crc -eq 0 ] && [ $src -eq 0 ] ||
  { echo "FAIL: the transfer did not survive the cut (client $crc, server $src)"; exit 1; }
grep -q "server says intact" "$out/client.txt" || { echo "FAIL: no intact verdict"; exit 1; }
for side in client server; do
  n=$(grep -c "rail 1 (.*) is back" "$out/$side.txt")
  [ "$n" -eq 1 ] || { echo "FAIL: the $side logged rail 1 back $n times (once expected)"; exit 1; }
done
line=$(grep "^stats rail 1 state" "$out/client.txt")
after=$(echo "$line" | sed -n 's/.*since-rejoin \([0-9]*\).*/\1/p')
[ -n "$after" ] && [ "$after" -gt 0 ] ||
  { echo "FAIL: rail 1 carried nothing after it came back ($line)"; exit 1; }
grep -q "^stats rail 1 event .* down: " "$out/client.txt" && grep -q "^stats rail 1 event .* up: " "$out/client.txt" ||
  { echo "FAIL: the rail's stats lack its down and up events"; exit 1; }
echo "PASS: rail 1 went down $(( (t1 - t0) / 1000000 )) ms after the cut, came back and carried $after bytes again; all intact"
