#!/usr/bin/env bash
# Adaptive striping over asymmetric rails: two network namespaces joined by two veth rails,
# the client's egress shaped to 400 and 100 Mbit/s with tbf, validated 8 MiB messages one
# at a time (rail_peer). The share of bytes on the slow rail must follow the rates (1/5;
# accepted 10..30%) with BRAID_STRIPE_POLICY=adaptive, and be half with roundrobin (a check
# that the test can tell them apart). Shares of bytes, not timings: nothing here is timed.
# Usage: asymmetric_rails.sh RAIL_PEER_BINARY. Exits 77 (skipped, never passed) where
# namespaces or tbf are not available.
set -uo pipefail
peer=$1
spid=
. "$(dirname "$0")/rails_lib.sh"
two_rails braidS as 235 400 100

port=$((30000 + RANDOM % 20000))
# share POLICY: prints the slow rail's share of the bytes in percent; fails on bad data.
share() {
  port=$((port + 1))
  ip netns exec "$A" env BRAID_SOCKET_IFNAME=as BRAID_STRIPE_POLICY="$1" "$peer" server "$port" >&2 &
  spid=$!
  local out
  out=$(ip netns exec "$B" env BRAID_SOCKET_IFNAME=as BRAID_STRIPE_POLICY="$1" "$peer" client \
        10.235.0.1 "$port" 24 8)
  local rc=$?
  wait "$spid" || rc=1
  spid=
  echo "$out" >&2
  [ $rc -eq 0 ] || { echo "FAIL: $1: the transfer failed" >&2; return 1; }
  echo "$out" | awk '/^rail /{b[$2]=$4; t+=$4} END{ if (t == 0) exit 1; printf "%.1f\n", 100 * b[1] / t }'
}
adaptive=$(share adaptive) || exit 1
roundrobin=$(share roundrobin) || exit 1
echo "slow rail's share of the bytes: adaptive ${adaptive}%, roundrobin ${roundrobin}% (rates 400:100, ideal 20%)"
awk -v a="$adaptive" 'BEGIN{ exit !(a >= 10 && a <= 30) }' ||
  { echo "FAIL: adaptive put ${adaptive}% on the 100 Mbit/s rail (expected 10..30%)"; exit 1; }
awk -v r="$roundrobin" 'BEGIN{ exit !(r >= 40 && r <= 60) }' ||
  { echo "FAIL: roundrobin put ${roundrobin}% on the slow rail (expected about half)"; exit 1; }
echo "PASS"
