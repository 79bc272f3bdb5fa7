#!/usr/bin/env bash
# Liveness without application progress, between two network namespaces joined by a veth
# rail (BRAID_TIMEOUT_MS=1000 on both sides):
#  1. the client stops calling braid and is SIGSTOPped for 4 s (4 timeouts): it must stay
#     connected and its message sent afterwards must arrive;
#  2. then the link is cut (both veth ends down, as a pulled cable or a dead host): a receive
#     waiting on each side must fail with an error within 15 s, not hang for its 120 s bound.
# Usage: dead_host.sh LIVENESS_PEER_BINARY. Exits 77 (skipped, never passed) where namespaces
# cannot be made (not root, no iproute2).
set -uo pipefail
peer=$1
[ "$(id -u)" -eq 0 ] || { echo "SKIP: network namespaces need root"; exit 77; }
command -v ip >/dev/null || { echo "SKIP: iproute2 missing"; exit 77; }
A=braidLA$$; B=braidLB$$
work=$(mktemp -d)
cleanup() {
  for p in ${spid:-} ${cpid:-}; do kill -CONT "$p" 2>/dev/null; kill "$p" 2>/dev/null; done
  exec 3>&- 2>/dev/null
  ip netns del "$A" 2>/dev/null || true
  ip netns del "$B" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add "$A" || { echo "SKIP: cannot create a network namespace"; exit 77; }
ip netns add "$B"
ip link add lv0a netns "$A" type veth peer name lv0b netns "$B"
ip -n "$A" addr add 10.233.0.1/24 dev lv0a
ip -n "$B" addr add 10.233.0.2/24 dev lv0b
for ns in "$A" "$B"; do ip -n "$ns" link set lo up; done
ip -n "$A" link set lv0a up
ip -n "$B" link set lv0b up
for i in $(seq 100); do
  n=$( (ip -n "$A" -o link show lv0a; ip -n "$B" -o link show lv0b) | grep -c "state UP" || true)
  [ "$n" -eq 2 ] && break
  sleep 0.05
done

# wait_for FILE PATTERN SECONDS
wait_for() {
  for _ in $(seq $(( $3 * 20 ))); do grep -q -- "$2" "$1" && return 0; sleep 0.05; done
  return 1
}

port=$((30000 + RANDOM % 20000))
export BRAID_TIMEOUT_MS=1000 BRAID_SOCKET_IFNAME=lv0
ip netns exec "$A" "$peer" server "$port" >"$work/server" 2>&1 &
spid=$!
mkfifo "$work/go"
ip netns exec "$B" "$peer" client 10.233.0.1 "$port" <"$work/go" >"$work/client" 2>&1 &
cpid=$!
exec 3>"$work/go"   # opened after the client so its open of the fifo does not block us

show() { echo "--- server"; cat "$work/server"; echo "--- client"; cat "$work/client"; }
if ! wait_for "$work/client" "client: ready" 30; then
  show; echo "FAIL: the client did not connect"; exit 1
fi
# 1. Quiet for 4 timeouts: blocked on stdin, and stopped outright for most of it.
kill -STOP "$cpid"
sleep 4
kill -CONT "$cpid"
echo go >&3
if ! wait_for "$work/server" "the quiet peer's message arrived" 20 ||
   ! wait_for "$work/client" "client: sent after being quiet; endpoint ok" 20; then
  show; echo "FAIL: a peer quiet for 4 x BRAID_TIMEOUT_MS was not kept"; exit 1
fi
# 2. Pull the cable.
sleep 0.5
ip -n "$A" link set lv0a down
ip -n "$B" link set lv0b down
t0=$(date +%s)
rc_s=0; rc_c=0
for _ in $(seq 300); do  # 15 s
  kill -0 "$spid" 2>/dev/null || kill -0 "$cpid" 2>/dev/null || break
  sleep 0.05
done
if kill -0 "$spid" 2>/dev/null || kill -0 "$cpid" 2>/dev/null; then
  show; echo "FAIL: a receive over a cut link was still waiting after $(( $(date +%s) - t0 )) s"; exit 1
fi
wait "$spid"; rc_s=$?; spid=
wait "$cpid"; rc_c=$?; cpid=
show
[ $rc_s -eq 0 ] || { echo "FAIL: server exited $rc_s"; exit 1; }
[ $rc_c -eq 0 ] || { echo "FAIL: client exited $rc_c"; exit 1; }
for f in server client; do
  grep -q "receive failed after" "$work/$f" || { echo "FAIL: the $f did not see the link die"; exit 1; }
done
echo "PASS: a quiet peer was kept for 4 timeouts; a cut link failed both sides within $(( $(date +%s) - t0 )) s"
