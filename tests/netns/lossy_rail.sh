#!/usr/bin/env bash
# A rail that drops packets: two 400 Mbit/s rails, rail 1's tbf queue cut to 20 kB so
# that it drops (its TCP retransmits), braid_send_bw 8 MiB x 32, 4 in flight, adaptive,
# with --stats, --json and --timeline. Rail 1 must show retransmits in its counters and a
# congestion signal of 0.5 or more in some 100 ms sample, rail 0 none, and rail 1 must
# carry less than a third of the bytes. Usage: lossy_rail.sh PERF_DIR. Exits 77 (skipped,
# never passed) without namespaces or tbf.
set -uo pipefail
tool=$1/braid_send_bw
out=$(mktemp -d)
spid=
. "$(dirname "$0")/rails_lib.sh"
two_rails braidL rk 235 400 400
ip netns exec "$B" tc qdisc change dev rk1 root tbf rate 400mbit burst 32kb limit 20000
export BRAID_LOG_LEVEL=warn
port=$((30000 + RANDOM % 20000))
ip netns exec "$A" timeout -k 5 120 "$tool" -p "$port" --rails rk >"$out/server.txt" 2>&1 &
spid=$!
ip netns exec "$B" timeout -k 5 120 "$tool" 10.235.0.1 -p "$port" --rails rk -s 8M -n 32 -t 4 --stats \
  --json "$out/client.json" --timeline "$out/t.jsonl" >"$out/client.txt" 2>&1
crc=$?
wait "$spid"; src=$?
spid=
if [ $crc -ne 0 ] || [ $src -ne 0 ]; then
  echo "FAIL: the run failed (client $crc, server $src)"; cat "$out/client.txt" "$out/server.txt"; exit 1
fi
python3 - "$out/client.json" "$out/t.jsonl" <<'PY'
import json, sys
rails = json.load(open(sys.argv[1]))["rails"]
samples = [l for l in (json.loads(x) for x in open(sys.argv[2]) if x.strip()) if "rails" in l]
peak = [max(s["rails"][i]["congestion"] for s in samples) for i in range(2)]
share1 = rails[1]["share"]
print("rail 0: counters %s, peak congestion %.2f" % (rails[0]["counters"], peak[0]))
print("rail 1: counters %s, peak congestion %.2f, share %.1f%%" % (rails[1]["counters"], peak[1], 100 * share1))
ok = True
if rails[1]["counters"].get("retransmits", 0) == 0:
    print("FAIL: rail 1 dropped packets but counts no retransmits"); ok = False
if peak[1] < 0.5:
    print("FAIL: rail 1's congestion signal never reached 0.5"); ok = False
if peak[0] >= 0.5:
    print("FAIL: rail 0 (no drops) shows congestion"); ok = False
if share1 >= 1 / 3:
    print("FAIL: the lossy rail carried %.1f%% of the bytes (under a third expected)" % (100 * share1)); ok = False
print("PASS" if ok else "")
sys.exit(0 if ok else 1)
PY
