#!/usr/bin/env python3
"""perf/plot_coll.py — the PNG of perf/bench_coll.sh: allreduce busbw vs size.

    python3 perf/plot_coll.py RESULT.json OUT.png [--linear]

RESULT.json is bench_coll.sh --json. Four lines: braid, Gloo (best algorithm per size),
Open MPI (ob1 + tcp) and the bound (iperf3 with one stream per core, flat). x: bytes, log2;
y: busbw in GB/s (1e9 B/s), log10 unless --linear. Needs matplotlib (Debian:
python3-matplotlib).
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402


def human(b, _pos=None):
    b = int(b)
    if b >= 1 << 20:
        return f"{b >> 20}M"
    if b >= 1 << 10:
        return f"{b >> 10}K"
    return str(b)


def main(argv):
    args = [a for a in argv[1:] if not a.startswith("--")]
    if len(args) != 2 or any(a not in ("--linear",) for a in argv[1:] if a.startswith("--")):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    src, out = args
    doc = json.load(open(src))
    rows = doc["rows"]
    xs = [r["bytes"] for r in rows]

    def series(key):
        pts = [(r["bytes"], r[key]) for r in rows if r.get(key) is not None]
        return [p[0] for p in pts], [p[1] for p in pts]

    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=120)
    # Each tool's median call (Gloo reports only that per iteration; braid and Open MPI
    # clock every call too); files from before braid had a p50 show its mean.
    p50 = any(r.get("braid_busbw_p50") is not None for r in rows)
    for key, label, style in (
        ("braid_busbw_p50" if p50 else "braid_busbw", "braid" + (" (p50)" if p50 else ""),
         dict(color="tab:red", marker="o", linewidth=2.2)),
        ("gloo_best_busbw", "Gloo (best algorithm per size, p50)",
         dict(color="tab:blue", marker="s")),
        ("openmpi_busbw_p50" if p50 else "openmpi_busbw",
         "Open MPI 4.1 ob1 + tcp" + (" (p50)" if p50 else ""), dict(color="tab:green", marker="^")),
    ):
        x, y = series(key)
        if x:
            ax.plot(x, y, label=label, **style)
    bound = doc.get("bound_gbps")
    if bound:
        ax.plot([xs[0], xs[-1]], [bound, bound], color="black", linestyle="--",
                label=f"bound: iperf3 -P {doc['machine']['nproc']} loopback ({bound:.2f} GB/s)")
    ax.set_xscale("log", base=2)
    if "--linear" not in argv:
        ax.set_yscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(human))
    ax.set_xticks(xs)
    ax.tick_params(axis="x", labelrotation=45)
    ax.set_xlabel("message size (bytes)")
    ax.set_ylabel("busbw (GB/s = 1e9 B/s)")
    m = doc.get("machine", {})
    ax.set_title(f"allreduce float32 sum, {doc['ranks']} ranks, TCP loopback — "
                 f"{m.get('nproc', '?')} cores, median of {doc['rounds']} round(s)",
                 fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    fig.tight_layout()
    fig.savefig(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
