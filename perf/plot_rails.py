#!/usr/bin/env python3
"""Plot each rail's throughput over time from the --timeline file of a braid bandwidth tool.

usage: perf/plot_rails.py RUN.jsonl [-o rails.png] [--measured] [--title TEXT]

The file holds one JSON object per line (braid_send_bw/write_bw/read_bw --timeline FILE):
samples every 100 ms with each rail's bytes of the interval, and rail events ("rail 1
down"). Each rail becomes one line of Mbit/s against seconds; events are vertical lines
with their text. --measured adds the scheduler's measured rate of each rail (dashed).
Needs matplotlib; without it the script says so, prints a summary and exits 0 (skipped),
so scripts may call it unconditionally. A partly written last line (a run still going) is
ignored.
"""
import argparse
import json
import sys


def read_timeline(path):
    """(samples, events) of a timeline file; raises OSError or ValueError."""
    samples, events = [], []
    with open(path) as f:
        lines = f.read().split("\n")
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            if n == len(lines):  # the line being written while the run goes on
                continue
            raise ValueError(f"line {n} is not JSON")
        if "event" in obj:
            events.append(obj)
        elif "rails" in obj:
            samples.append(obj)
    return samples, events


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("timeline", help="JSON Lines file written by --timeline")
    ap.add_argument("-o", "--output", default="rails.png", help="image to write")
    ap.add_argument("--measured", action="store_true",
                    help="also plot the scheduler's measured rate of each rail (dashed)")
    ap.add_argument("--title", help="the plot's title (default: the file's name)")
    args = ap.parse_args()

    try:
        samples, events = read_timeline(args.timeline)
    except (OSError, ValueError) as e:
        print(f"plot_rails.py: cannot read {args.timeline}: {e}", file=sys.stderr)
        return 1
    if not samples:
        print(f"plot_rails.py: {args.timeline} has no samples (is it a --timeline file of a "
              "run that lasted 100 ms or more?)", file=sys.stderr)
        return 1

    # rail index -> (label, seconds, Mbit/s, measured Mbit/s)
    rails = {}
    for s in samples:
        t = s["t_ms"] / 1000.0
        for r in s["rails"]:
            i = r["rail"]
            if i not in rails:
                name = r.get("name") or ""
                rails[i] = (f"rail {i}" + (f" ({name})" if name else ""), [], [], [])
            _, xs, ys, ms = rails[i]
            xs.append(t)
            ys.append(r["mbit_per_sec"])
            # MiB/s -> Mbit/s
            ms.append(r.get("throughput_mb_per_sec", 0.0) * 1048576 * 8 / 1e6)

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot_rails.py: matplotlib is not installed: skipping the plot "
              "(pip install matplotlib, or apt-get install python3-matplotlib)")
        for i in sorted(rails):
            label, xs, ys, _ = rails[i]
            avg = sum(ys) / len(ys) if ys else 0.0
            print(f"  {label}: {len(ys)} samples, {avg:.1f} Mbit/s on average, "
                  f"{max(ys):.1f} at most")
        for e in events:
            print(f"  {e['t_ms'] / 1000.0:.3f} s: {e['event']}")
        return 0

    fig, ax = plt.subplots(figsize=(10, 5))
    for i in sorted(rails):
        label, xs, ys, ms = rails[i]
        line, = ax.plot(xs, ys, marker=".", label=label)
        if args.measured:
            ax.plot(xs, ms, linestyle="--", color=line.get_color(), alpha=0.6,
                    label=f"{label} measured")
    for e in events:
        t = e["t_ms"] / 1000.0
        ax.axvline(t, color="red", linestyle=":", alpha=0.8)
        text = e["event"] if len(e["event"]) <= 60 else e["event"][:57] + "..."
        ax.text(t, 1.0, f" {text}", transform=ax.get_xaxis_transform(), rotation=90,
                va="top", ha="left", fontsize="small", color="red",
                bbox=dict(facecolor="white", alpha=0.7, edgecolor="none", pad=1))
    ax.set_xlabel("time since the first timed message [s]")
    ax.set_ylabel("throughput [Mbit/s]")
    ax.set_title(args.title or f"per-rail throughput: {args.timeline}")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(args.output, dpi=120)
    print(f"plot_rails.py: wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
