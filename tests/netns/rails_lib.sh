# Sourced by the two-rail namespace tests: two hosts (network namespaces A and B) joined
# by two veth rails IF0 and IF1 (subnets 10.NET.0.0/24 and 10.NET+1.0.0/24, A .1, B .2),
# each rail's B egress shaped with tbf. Exits 77 (skipped, never passed) where that cannot
# be made. The caller sets `spid` (a server to kill) and `out` (a directory) if it uses them.
#
#   two_rails PREFIX IF NET MBIT0 MBIT1     e.g. two_rails braidD rd 237 400 100
#   reshape RAIL MBIT                       B's egress on rail RAIL to MBIT Mbit/s
#   start_peers PEER N MIB [DEPTH]          rail_peer server in A, client in B (to A's rail
#                                           0 address), in the background: spid, cpid;
#                                           output in $out/server.txt and $out/client.txt
#   wait_peers                              waits for both: crc, src; prints both outputs
rails_cleanup() {
  [ -n "${spid:-}" ] && kill "$spid" 2>/dev/null
  ip netns del "$A" 2>/dev/null
  ip netns del "$B" 2>/dev/null
  [ -n "${out:-}" ] && rm -rf "$out"
}

two_rails() {
  [ "$(id -u)" -eq 0 ] || { echo "SKIP: network namespaces need root"; exit 77; }
  command -v ip >/dev/null && command -v tc >/dev/null || { echo "SKIP: iproute2 missing"; exit 77; }
  A=${1}A$$
  B=${1}B$$
  IF=$2
  NET=$3
  trap rails_cleanup EXIT
  ip netns add "$A" || { echo "SKIP: cannot create a network namespace"; exit 77; }
  ip netns add "$B"
  for r in 0 1; do
    ip link add "$IF$r" netns "$A" type veth peer name "$IF$r" netns "$B"
    ip -n "$A" addr add "10.$(($3 + r)).0.1/24" dev "$IF$r"
    ip -n "$B" addr add "10.$(($3 + r)).0.2/24" dev "$IF$r"
    ip -n "$A" link set "$IF$r" up
    ip -n "$B" link set "$IF$r" up
  done
  ip -n "$A" link set lo up
  ip -n "$B" link set lo up
  ip netns exec "$B" tc qdisc add dev "${IF}0" root tbf rate "$4mbit" burst 256kb latency 50ms ||
    { echo "SKIP: tbf is not available"; exit 77; }
  ip netns exec "$B" tc qdisc add dev "${IF}1" root tbf rate "$5mbit" burst 256kb latency 50ms
  local n
  for _ in $(seq 100); do  # braid uses running interfaces only
    n=$( (ip -n "$A" -o link show; ip -n "$B" -o link show) | grep -c "$IF[01].*state UP" || true)
    [ "$n" -eq 4 ] && break
    sleep 0.05
  done
}

reshape() {
  ip netns exec "$B" tc qdisc change dev "$IF$1" root tbf rate "$2mbit" burst 256kb latency 50ms
}

start_peers() {
  local port=$((30000 + RANDOM % 20000))
  ip netns exec "$A" "$1" server "$port" >"$out/server.txt" 2>&1 &
  spid=$!
  ip netns exec "$B" "$1" client "10.$NET.0.1" "$port" "$2" "$3" "${4:-1}" >"$out/client.txt" 2>&1 &
  cpid=$!
}

wait_peers() {
  wait "$cpid"; crc=$?
  wait "$spid"; src=$?
  spid=
  echo "--- client"; cat "$out/client.txt"; echo "--- server"; cat "$out/server.txt"
}
