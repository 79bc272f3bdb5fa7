#!/usr/bin/env bash
# Two hosts in network namespaces joined by two veth rails (one shaped with tbf), braid
# striping validated messages over both. Usage: two_rails.sh RAIL_PEER_BINARY
# Exits 77 (skipped, never passed) where namespaces cannot be made (not root, no iproute2).
set -euo pipefail
peer=$1
[ "$(id -u)" -eq 0 ] || { echo "SKIP: network namespaces need root"; exit 77; }
command -v ip >/dev/null || { echo "SKIP: iproute2 missing"; exit 77; }
A=braidA$$; B=braidB$$
cleanup() {
  [ -n "${spid:-}" ] && kill "$spid" 2>/dev/null || true
  ip netns del "$A" 2>/dev/null || true
  ip netns del "$B" 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$A" || { echo "SKIP: cannot create a network namespace"; exit 77; }
ip netns add "$B"
ip link add r0a netns "$A" type veth peer name r0b netns "$B"
ip link add r1a netns "$A" type veth peer name r1b netns "$B"
ip -n "$A" addr add 10.231.0.1/24 dev r0a
ip -n "$B" addr add 10.231.0.2/24 dev r0b
ip -n "$A" addr add 10.232.0.1/24 dev r1a
ip -n "$B" addr add 10.232.0.2/24 dev r1b
for ns in "$A" "$B"; do
  ip -n "$ns" link set lo up
  for l in $(ip -n "$ns" -o link show type veth | awk -F': ' '{print $2}' | cut -d@ -f1); do
    ip -n "$ns" link set "$l" up
  done
done
# Wait until every veth is operationally up (braid only uses running interfaces;
# the kernel sets that a moment after carrier).
for i in $(seq 100); do
  n=$( (ip -n "$A" -o link show type veth; ip -n "$B" -o link show type veth) | grep -c "state UP" || true)
  [ "$n" -eq 4 ] && break
  sleep 0.05
done
# Rail 1 is slower than rail 0: both must still carry data, and every byte must arrive.
ip netns exec "$A" tc qdisc add dev r1a root tbf rate 800mbit burst 256kb latency 50ms
ip netns exec "$B" tc qdisc add dev r1b root tbf rate 800mbit burst 256kb latency 50ms
port=$((30000 + RANDOM % 20000))
ip netns exec "$A" env BRAID_SOCKET_IFNAME=r "$peer" server "$port" &
spid=$!
out=$(ip netns exec "$B" env BRAID_SOCKET_IFNAME=r "$peer" client 10.231.0.1 "$port" 8 16)
echo "$out"
wait "$spid"; spid=
rails=$(echo "$out" | grep -c '^rail ')
[ "$rails" -eq 2 ] || { echo "FAIL: expected 2 rails, got $rails"; exit 1; }
total=$(echo "$out" | awk '/^rail /{s+=$4} END{print s}')
echo "$out" | awk -v t="$total" '/^rail /{ if ($4 < t/20) { print "FAIL: rail " $2 " carried only " $4 " of " t " bytes"; bad=1 } } END { exit bad }'
echo "PASS: $total bytes striped over 2 rails, all intact"
