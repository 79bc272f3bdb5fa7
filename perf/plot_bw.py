#!/usr/bin/env python3
"""Plot a bandwidth curve from the --json file of a braid_send_bw -a run.

usage: perf/plot_bw.py RUN.json [MORE.json ...] [-o curve.png] [--gbits]

Each file becomes one curve of average bandwidth (and a dashed peak curve) against the
message size. Needs matplotlib; without it the script says so and exits 0 (skipped), so
scripts may call it unconditionally.
"""
import argparse
import json
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="JSON files written by braid_send_bw --json")
    ap.add_argument("-o", "--output", default="bw_curve.png", help="image to write")
    ap.add_argument("--gbits", action="store_true", help="Gb/sec instead of MB/sec")
    args = ap.parse_args()

    curves = []
    for path in args.runs:
        try:
            with open(path) as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            print(f"plot_bw.py: cannot read {path}: {e}", file=sys.stderr)
            return 1
        rows = doc.get("results", [])
        if not rows or "bw_average_mb_per_sec" not in rows[0]:
            print(f"plot_bw.py: {path} has no bandwidth rows (is it a braid_send_bw --json "
                  "file?)", file=sys.stderr)
            return 1
        key = "gbit_per_sec" if args.gbits else "mb_per_sec"
        label = f"{doc.get('role', '?')} {path}"
        curves.append((label,
                       [r["bytes"] for r in rows],
                       [r[f"bw_average_{key}"] for r in rows],
                       [r[f"bw_peak_{key}"] for r in rows]))

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot_bw.py: matplotlib is not installed: skipping the plot "
              "(pip install matplotlib, or apt-get install python3-matplotlib)")
        for label, sizes, avg, _ in curves:
            print(f"  {label}: " + ", ".join(f"{s}:{a:.1f}" for s, a in zip(sizes, avg)))
        return 0

    fig, ax = plt.subplots(figsize=(9, 5))
    for label, sizes, avg, peak in curves:
        line, = ax.plot(sizes, avg, marker="o", label=f"{label} (average)")
        ax.plot(sizes, peak, linestyle="--", color=line.get_color(), alpha=0.6,
                label=f"{label} (peak)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("message size [bytes]")
    ax.set_ylabel("bandwidth [Gb/sec]" if args.gbits else "bandwidth [MB/sec]")
    ax.set_title("braid_send_bw")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(args.output, dpi=120)
    print(f"plot_bw.py: wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
