#!/usr/bin/env python3
"""Figures from a braid tool's --timeline file (perf/timeline.h), for the rail benchmarks.

  rails_timeline.py competing TIMELINE START_MS END_MS IPERF3_JSON FAST SLOW
      An iperf3 flow ran on the fast rail from START_MS to END_MS (Unix ms, the clock of the
      host that wrote TIMELINE). Prints: fast rail's share of the bytes before (%), braid's
      rate before (Mbit/s), the share and rate from 1 s after the start to the end, iperf3's
      rate (as iperf3 measured it), the capacity left to braid (FAST + SLOW - iperf3) and
      braid's rate over it.
  rails_timeline.py cut TIMELINE RAIL CUT_MS UP_MS RATE
      RAIL was cut at CUT_MS and its link came back at UP_MS (Unix ms). Prints: the stall
      (the longest time from the cut to the link's return in which no byte was delivered,
      at the samples' 100 ms resolution), the detection time (cut to the rail's "down"
      event; -1: none), the rejoin time (link back to its "up" event; -1: none), the rail's
      share of the bytes from 1 s after the rejoin (%), the cut and return in the
      timeline's own ms, and the time from the cut to the return spent in samples below
      half of RATE Mbit/s, one rail's rate (coarse when a message is several samples long:
      bytes count when a message's part on a rail completes).
"""
import json
import sys


def load(path):
    lines = [json.loads(l) for l in open(path) if l.strip()]
    t0 = next((l["start_unix_ms"] for l in lines if "start_unix_ms" in l), 0)
    return t0, [l for l in lines if "rails" in l], [l for l in lines if "event" in l]


def rate(sample):
    return sum(r["bytes"] for r in sample["rails"]) * 8 / (sample["interval_ms"] / 1000) / 1e6


def competing(path, start, end, iperf3, fast, slow):
    t0, samples, _ = load(path)
    lo, hi = float(start) - t0, float(end) - t0
    try:
        ip = json.load(open(iperf3))["end"]["sum_received"]["bits_per_second"] / 1e6
    except Exception:
        ip = 0.0

    def window(a, b):
        by = [0, 0]
        ms = 0.0
        for s in samples:
            if a <= s["t_ms"] < b:
                for r in s["rails"][:2]:
                    by[r["rail"]] += r["bytes"]
                ms += s.get("interval_ms", 100)
        tot = by[0] + by[1]
        return (by[0] / tot if tot else 0), (tot * 8 / (ms / 1000) / 1e6 if ms else 0)

    s0, r0 = window(0, lo)
    s1, r1 = window(lo + 1000, hi)
    left = float(fast) + float(slow) - ip
    print("%.1f %.1f %.1f %.1f %.1f %.1f %.2f" % (100 * s0, r0, 100 * s1, r1, ip, left,
                                                  r1 / left if left > 0 else 0))


def cut(path, rail, cut_ms, up_ms, one_rail):
    t0, samples, events = load(path)
    rail = int(rail)
    c, u, one = float(cut_ms) - t0, float(up_ms) - t0, float(one_rail)
    mine = [e for e in events if e.get("rail") == rail]
    down = next((e["t_ms"] for e in mine
                 if e["event"].startswith("rail %d down" % rail) and e["t_ms"] >= c), None)
    back = next((e["t_ms"] for e in mine
                 if e["event"].startswith("rail %d up" % rail) and e["t_ms"] >= u), None)
    slow = sum(s["interval_ms"] for s in samples
               if s["t_ms"] - s["interval_ms"] >= c and s["t_ms"] <= u and rate(s) < one / 2)
    # Stall: the longest stretch without a delivery, from the cut until one after the return.
    stall, last = 0.0, c
    for s in samples:
        if s["t_ms"] <= c or sum(r["bytes"] for r in s["rails"]) == 0:
            continue
        stall = max(stall, s["t_ms"] - s["interval_ms"] - last)
        last = s["t_ms"]
        if last >= u:
            break
    else:
        stall = max(stall, u - last)
    after = [s for s in samples if back is not None and s["t_ms"] - s["interval_ms"] >= back + 1000]
    mine_bytes = sum(r["bytes"] for s in after for r in s["rails"] if r["rail"] == rail)
    tot = sum(r["bytes"] for s in after for r in s["rails"])
    print("%.0f %s %s %.1f %.0f %.0f %.0f" % (stall, "%.0f" % (down - c) if down is not None else "-1",
                                              "%.0f" % (back - u) if back is not None else "-1",
                                              100 * mine_bytes / tot if tot else 0, c, u, slow))


if __name__ == "__main__":
    cmds = {"competing": (competing, 6), "cut": (cut, 5)}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds or len(sys.argv) != cmds[sys.argv[1]][1] + 2:
        sys.exit(__doc__)
    fn, _ = cmds[sys.argv[1]]
    fn(*sys.argv[2:])
