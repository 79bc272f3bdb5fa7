#!/usr/bin/env bash
# A rail whose rate drops mid-transfer: two namespaces, two veth rails whose client egress
# is shaped to 400 and 100 Mbit/s; braid_send_bw (8 MiB messages, 16 in flight,
# BRAID_STRIPE_POLICY=adaptive, --timeline) runs for about 6 s and, 2.5 s in, the fast
# rail is reshaped to 25 Mbit/s. From the sender's 100 ms samples: before the drop the
# fast rail carries most of the bytes (>= 65%, ideal 80%); from 1 s after it, at most 40%
# (ideal 20%). Byte shares, not speeds: nothing here is timed beyond "within a second".
# Usage: rate_drop.sh PERF_DIR. Exits 77 (skipped, never passed) without namespaces or tbf.
set -uo pipefail
perf=$1
command -v python3 >/dev/null || { echo "SKIP: python3 missing"; exit 77; }
out=$(mktemp -d)
spid=
. "$(dirname "$0")/rails_lib.sh"
two_rails braidD rd 237 400 100
export BRAID_LOG_LEVEL=error BRAID_STRIPE_POLICY=adaptive
port=$((30000 + RANDOM % 20000))
ip netns exec "$A" timeout -k 5 120 "$perf/braid_send_bw" -p "$port" --rails rd >"$out/server.txt" 2>&1 &
spid=$!
# 16 + 34 x 4 MiB: about 2.5 s at 500 Mbit/s, then about 3 s at 150.
ip netns exec "$B" timeout -k 5 120 "$perf/braid_send_bw" 10.237.0.1 -p "$port" --rails rd \
  -s 4M -n 34 -t 16 --timeline "$out/timeline.jsonl" >"$out/client.txt" 2>&1 &
cpid=$!
sleep 2.5
reshape 0 50
drop_ms=$(python3 -c 'import json,sys; ls=[json.loads(l) for l in open(sys.argv[1]) if l.strip()]; print(ls[-1]["t_ms"] if ls else 0)' "$out/timeline.jsonl")
wait "$cpid"; crc=$?
wait "$spid"; src=$?
spid=
if [ $crc -ne 0 ] || [ $src -ne 0 ]; then
  cat "$out/client.txt" "$out/server.txt"; echo "FAIL: braid_send_bw exited client $crc server $src"; exit 1
fi
python3 - "$out/timeline.jsonl" "$drop_ms" <<'PY'
import json, sys
samples = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
samples = [s for s in samples if "rails" in s]
drop = float(sys.argv[2])
def share(lo, hi):
    b0 = b1 = 0
    for s in samples:
        if lo <= s["t_ms"] < hi:
            b0 += s["rails"][0]["bytes"]
            b1 += s["rails"][1]["bytes"]
    return (b0 / (b0 + b1) if b0 + b1 else None), b0 + b1
before, nb = share(0, drop - 100)
after, na = share(drop + 1000, 1e12)
print("fast rail's share of the bytes: %s before the drop (%d bytes), %s from 1 s after it (%d bytes); drop at %.0f ms"
      % ("%.1f%%" % (100 * before) if before is not None else "-", nb,
         "%.1f%%" % (100 * after) if after is not None else "-", na, drop))
bad = []
if before is None or nb < (32 << 20):
    bad.append("too little data before the drop to judge")
elif before < 0.65:
    bad.append("before the drop the 400 Mbit/s rail carried only %.1f%%" % (100 * before))
if after is None or na < (8 << 20):
    bad.append("too little data after the drop to judge")
elif after > 0.45:
    bad.append("a second after its drop to 50 Mbit/s the rail still carried %.1f%%" % (100 * after))
for b in bad:
    print("FAIL: " + b)
sys.exit(1 if bad else 0)
PY
rc=$?
[ $rc -eq 0 ] && echo "PASS"
exit $rc
