#!/usr/bin/env bash
# braid_send_bw's figures can be trusted: the sender's average (its own clock) agrees with
# the receiver's, each side's peak is at least its average, and over a link of known rate
# no figure exceeds that rate.
#
#   tests/perf/bw_figures.sh PERF_DIR loopback   server and client on lo
#   tests/perf/bw_figures.sh PERF_DIR netns      two network namespaces joined by a veth
#                                                pair shaped to 400 Mbit/s with tbf; exits
#                                                77 (skipped, never passed) where namespaces
#                                                cannot be made
#
# The netns run is the case that was wrong: 8 MiB x 16 messages with a tx depth of 16 (the
# warm-up as long as the timed part). Timing the sender from the post of its first timed
# message counted the warm-up's transfer, and its average read half the receiver's.
set -uo pipefail
perf="${1:?usage: bw_figures.sh PERF_DIR loopback|netns}"
mode="${2:?usage: bw_figures.sh PERF_DIR loopback|netns}"
out=$(mktemp -d)
A=braidbwA$$
B=braidbwB$$
spid=
cleanup() {
  [[ -n "$spid" ]] && kill "$spid" 2>/dev/null
  if [[ $mode == netns ]]; then
    ip netns del "$A" 2>/dev/null
    ip netns del "$B" 2>/dev/null
  fi
  rm -rf "$out"
}
trap cleanup EXIT
export BRAID_LOG_LEVEL="${BRAID_LOG_LEVEL:-error}"
port=$((30000 + RANDOM % 20000))

# run_pair NAME SERVER_PREFIX CLIENT_PREFIX HOST ARGS...: server, then client; both JSON.
run_pair() {
  local name="$1" sp="$2" cp="$3" host="$4"
  shift 4
  port=$((port + 1))
  # shellcheck disable=SC2086
  $sp timeout -k 5 120 "$perf/braid_send_bw" -p "$port" --json "$out/$name.server.json" \
    >"$out/$name.server.txt" 2>&1 &
  spid=$!
  # shellcheck disable=SC2086
  $cp timeout -k 5 120 "$perf/braid_send_bw" "$host" -p "$port" "$@" \
    --json "$out/$name.client.json" >"$out/$name.client.txt" 2>&1
  local crc=$?
  wait "$spid"
  local src=$?
  spid=
  if [[ $crc != 0 || $src != 0 ]]; then
    echo "FAIL: $name: exit codes client $crc server $src"
    cat "$out/$name.client.txt" "$out/$name.server.txt"
    return 1
  fi
  cat "$out/$name.client.txt" | grep -E '^ [0-9]|receiver:'
}

# check NAME TOLERANCE [LINK_BYTES_PER_SEC]: the JSON reports agree.
check() {
  python3 - "$out/$1.client.json" "$out/$1.server.json" "$2" "${3:-0}" "$1" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
s = json.load(open(sys.argv[2]))
tol, link, name = float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
MB = 1048576.0
bad = []
for cr, sr in zip(c["results"], s["results"]):
    size = cr["bytes"]
    ca, cp = cr["bw_average_mb_per_sec"] * MB, cr["bw_peak_mb_per_sec"] * MB
    sa, sp = sr["bw_average_mb_per_sec"] * MB, sr["bw_peak_mb_per_sec"] * MB
    print("%s %d B: sender avg %.1f peak %.1f, receiver avg %.1f peak %.1f MB/s"
          % (name, size, ca / MB, cp / MB, sa / MB, sp / MB))
    if cr.get("measured_at") != "sender" or sr.get("measured_at") != "receiver":
        bad.append("measured_at: client %r, server %r" % (cr.get("measured_at"), sr.get("measured_at")))
    if abs(cr.get("receiver_bw_average_mb_per_sec", -1) * MB - sa) > 1e-6 * sa + 1:
        bad.append("the client's copy of the receiver's average differs from the server's")
    if abs(ca - sa) > tol * sa:
        bad.append("%d B: sender average %.1f and receiver average %.1f MB/s differ by more than %d%%"
                   % (size, ca / MB, sa / MB, tol * 100))
    for side, a, p in (("sender", ca, cp), ("receiver", sa, sp)):
        if p < a * (1 - 1e-9):
            bad.append("%d B: %s peak %.1f below its average %.1f" % (size, side, p / MB, a / MB))
        if p > 10 * a * (1 + 1e-9):
            bad.append("%d B: %s peak %.1f above ten times its average" % (size, side, p / MB))
        if link and max(a, p) > link * 1.05:
            bad.append("%d B: %s figure %.1f MB/s above the link's %.1f MB/s"
                       % (size, side, max(a, p) / MB, link / MB))
        if link and a < link * 0.5:
            bad.append("%d B: %s average %.1f MB/s below half the link's %.1f MB/s"
                       % (size, side, a / MB, link / MB))
    if cp > 1.5 * sp:
        bad.append("%d B: sender peak %.1f above 1.5 x the receiver's %.1f" % (size, cp / MB, sp / MB))
for b in bad:
    print("FAIL: " + b)
sys.exit(1 if bad else 0)
PY
}

failures=0
case "$mode" in
  loopback)
    export BRAID_SOCKET_IFNAME=lo
    # Runs of a few hundred ms at least: the sender's two acknowledgements arrive a
    # fraction of a millisecond late, and a loaded 2-core host adds scheduling noise.
    run_pair lo_1m "" "" 127.0.0.1 -s 1M -n 1000 || failures=$((failures + 1))
    check lo_1m 0.25 || failures=$((failures + 1))
    run_pair lo_64k "" "" 127.0.0.1 -s 64K -n 8000 || failures=$((failures + 1))
    check lo_64k 0.25 || failures=$((failures + 1))
    # -n equal to the tx depth: the warm-up as long as the timed part.
    run_pair lo_short "" "" 127.0.0.1 -s 4M -n 64 -t 64 || failures=$((failures + 1))
    check lo_short 0.35 || failures=$((failures + 1))
    ;;
  netns)
    [[ $(id -u) == 0 ]] || { echo "SKIP: network namespaces need root"; exit 77; }
    command -v ip >/dev/null && command -v tc >/dev/null || { echo "SKIP: iproute2 missing"; exit 77; }
    command -v python3 >/dev/null || { echo "SKIP: python3 missing"; exit 77; }
    ip netns add "$A" 2>/dev/null || { echo "SKIP: cannot create a network namespace"; exit 77; }
    ip netns add "$B" || { echo "SKIP: cannot create a second network namespace"; exit 77; }
    ip link add bw0 netns "$A" type veth peer name bw0 netns "$B" ||
      { echo "SKIP: cannot create a veth pair"; exit 77; }
    ip -n "$A" addr add 10.233.0.1/24 dev bw0
    ip -n "$B" addr add 10.233.0.2/24 dev bw0
    for ns in "$A" "$B"; do
      ip -n "$ns" link set lo up
      ip -n "$ns" link set bw0 up
    done
    # The data flows from B (client) to A (server): shape B's egress.
    rate_mbit=400
    ip netns exec "$B" tc qdisc add dev bw0 root tbf rate ${rate_mbit}mbit burst 256kb latency 50ms ||
      { echo "SKIP: tbf is not available"; exit 77; }
    for i in $(seq 100); do
      n=$( (ip -n "$A" -o link show bw0; ip -n "$B" -o link show bw0) | grep -c "state UP" || true)
      [[ $n -eq 2 ]] && break
      sleep 0.05
    done
    link=$((rate_mbit * 1000000 / 8))
    export BRAID_SOCKET_IFNAME=bw0
    run_pair shaped "ip netns exec $A" "ip netns exec $B" 10.233.0.1 -s 8M -n 16 -t 16 ||
      failures=$((failures + 1))
    # Same bytes, same link: the two averages within 10%.
    check shaped 0.10 "$link" || failures=$((failures + 1))
    ;;
  *)
    echo "usage: bw_figures.sh PERF_DIR loopback|netns" >&2
    exit 2
    ;;
esac
[[ $failures == 0 ]] || { echo "== $failures failed"; exit 1; }
echo "PASS: sender and receiver agree; every peak is at least its average$([[ $mode == netns ]] && echo ' and below the link rate')"
