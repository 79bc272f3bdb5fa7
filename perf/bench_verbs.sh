#!/usr/bin/env bash
# perf/bench_verbs.sh — braid's verbs tools against perftest on the same device, in one run.
# Runs INSIDE a machine with an RDMA device; on the project's machines that is the Soft-RoCE
# VM, started from the host with:
#
#   tests/softroce/run_in_vm.sh -- perf/bench_verbs.sh build
#
# Per round, interleaved so that both sides of every ratio see the same load (perftest
# first in odd rounds, braid first in even ones):
#   1. ib_write_bw vs braid_write_bw at 64 KiB and 1 MiB  -> BW average [MB/sec], client side
#   2. ib_send_lat vs braid_send_lat at 8 bytes           -> t_typical [usec] (the median)
# then ratios braid/perftest: bandwidth target >= 0.95, typical latency target <= 1.15.
# Figures are medians over rounds; each ratio is the median of the per-round ratios.
#
# Polling: perftest busy-polls (its default). braid runs once per mode of --mode: "busy"
# (spin on Request::test, as perftest), "yield" (--yield: sched_yield() between polls) and,
# if asked, "event" (-e). Busy polling on both ends can starve Soft-RoCE's kernel work on a
# 2-vCPU VM, so both figures are reported. Every perftest server starts before its client,
# the client is retried until the server listens, and every command is bounded by timeout.
# perftest runs with -n (its duration mode reports 0 under emulation).
# Pinning: every server runs on CPU 0 and every client on CPU 1 (taskset), perftest and
# braid alike, as perftest's own docs advise for latency: two busy pollers left to the
# scheduler may share a vCPU or migrate, which is noise, not a property of either tool.
# --no-pin turns it off (and it is off on a one-CPU machine).
#
# A benchmark, not a test: exit 0 when every step ran, 1 when one failed, 2 on a bad
# command line or when no RDMA device is there.
#
# usage: perf/bench_verbs.sh [BUILD_DIR] [--rounds N] [--json FILE] [--mode busy|yield|event|both|all]
#                            [--dev DEV] [--gid-index N] [--host IP] [--port P]
#                            [--mib N] [--lat-iters N] [--tx-depth N] [--no-pin]
#                            [--compare OTHER_BUILD_DIR]
#   BUILD_DIR    braid build directory (default: $BRAID_BUILD_DIR, else ./build)
#   --rounds     repeat everything N times, interleaved, report medians (default 3)
#   --json       also write every figure (and each round's) to FILE
#   --mode       braid polling modes: both = busy + yield (default), all = + event
#   --dev        RDMA device (default rxe0); --gid-index its GID index (default: the RoCE
#                v2 IPv4-mapped one, read from sysfs)
#   --host       address the clients connect to (default: $BRAID_VM_IP0, else 10.77.0.1)
#   --port       first of the TCP ports used (default 18700)
#   --mib        MiB moved per bandwidth run: -n = MIB/size (default 128)
#   --lat-iters  iterations of each latency run (default 5000)
#   --no-pin     leave servers and clients to the scheduler
#   --tx-depth   writes in flight, the same for both tools (default 16, braid's default)
#   --compare DIR  also run DIR's braid_send_lat (another braid build: the previous commit,
#                say) in every round, right after this build's, and print this build's
#                latency over DIR's: an A/B of two builds under the same load
set -euo pipefail

build="${BRAID_BUILD_DIR:-./build}"
json=""
rounds=3
modes="busy yield"
dev=rxe0
gid=""  # default: the RoCE v2 IPv4-mapped GID of --dev, found in sysfs
host="${BRAID_VM_IP0:-10.77.0.1}"
port=18700
mib=128
latIters=5000
pin=1
txDepth=16
cmp=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --json) json="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --mode)
      case "$2" in busy|yield|event) modes="$2" ;; both) modes="busy yield" ;;
        all) modes="busy yield event" ;;
        *) echo "bench_verbs.sh: --mode busy, yield, event, both or all" >&2; exit 2 ;; esac
      shift 2 ;;
    --dev) dev="$2"; shift 2 ;;
    --gid-index) gid="$2"; shift 2 ;;
    --host) host="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --mib) mib="$2"; shift 2 ;;
    --lat-iters) latIters="$2"; shift 2 ;;
    --tx-depth) txDepth="$2"; shift 2 ;;
    --no-pin) pin=0; shift ;;
    --compare) cmp="$2"; shift 2 ;;
    -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    -*) echo "bench_verbs.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) build="$1"; shift ;;
  esac
done
for n in "$rounds" "$mib" "$latIters" "$txDepth" "$port"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "bench_verbs.sh: '$n' is not a positive count" >&2; exit 2; }
done
if [[ -z "$gid" ]]; then
  gid=$("$(dirname "$0")/../tests/softroce/gid_index.sh" "$dev") ||
    { echo "bench_verbs.sh: $dev has no RoCE v2 IPv4-mapped GID; pass --gid-index" >&2; exit 2; }
fi
[[ "$gid" =~ ^[0-9]+$ ]] || { echo "bench_verbs.sh: --gid-index takes a number" >&2; exit 2; }

wbw="$build/perf/braid_write_bw"
slat="$build/perf/braid_send_lat"
cslat="${cmp:+$cmp/perf/braid_send_lat}"
for t in "$wbw" "$slat" $cslat; do
  [[ -x "$t" ]] || { echo "bench_verbs.sh: $t not found: build first, or pass the build dir" >&2; exit 2; }
done
for t in ib_write_bw ib_send_lat python3 timeout; do
  command -v "$t" >/dev/null || { echo "bench_verbs.sh: $t is not installed" >&2; exit 2; }
done
if [[ ! -d "/sys/class/infiniband/$dev" ]]; then
  echo "bench_verbs.sh: no RDMA device $dev here. On a machine without RDMA run it in the" >&2
  echo "Soft-RoCE VM: tests/softroce/run_in_vm.sh -- perf/bench_verbs.sh $build" >&2
  exit 2
fi

srvPin=() cliPin=()
if [[ $pin == 1 && $(nproc) -ge 2 ]] && command -v taskset >/dev/null; then
  srvPin=(taskset -c 0) cliPin=(taskset -c 1)
fi

tmp="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# jnum FILE KEY: the first "KEY": number of a tool's JSON report (results[0] for one size).
# awk, not python3: a python3 start costs seconds under emulation.
jnum() {
  awk -v k="\"$2\":" '$1 == k { v = $2; sub(/,$/, "", v); printf "%.2f\n", v; f = 1; exit }
    END { if (!f) exit 1 }' "$1"
}
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
mode_flags() { case "$1" in yield) echo "--yield" ;; event) echo "-e" ;; *) echo "" ;; esac; }
fail() {
  echo "bench_verbs.sh: $1 failed:" >&2
  shift
  for f in "$@"; do [[ -f "$f" ]] && { echo "--- $f" >&2; tail -20 "$f" >&2; }; done
  exit 1
}
nextport() { port=$((port + 1)); }

# perftest NAME ARGS...: server first (bounded), then the client, retried until the server
# listens (a client started too early fails at once and leaves the server waiting); when a
# client got through to the server and then failed, server and client start over (3 tries).
perftest() {
  local name="$1"; shift
  local attempt
  for attempt in 1 2 3; do
    local p=$port
    nextport
    timeout -k 5 300 "${srvPin[@]}" "$@" -p "$p" >"$tmp/$name.server.txt" 2>&1 &
    local sp=$!
    pids+=("$sp")
    local ok=0
    for _ in $(seq 1 30); do
      sleep 0.5
      if timeout -k 5 300 "${cliPin[@]}" "$@" -p "$p" "$host" >"$tmp/$name.client.txt" 2>&1; then
        ok=1
        break
      fi
      kill -0 "$sp" 2>/dev/null || break  # the server gave up: nothing to retry against
      # The server took a client that then failed: it will not listen again. Start over.
      grep -q "remote address" "$tmp/$name.server.txt" && break
    done
    if [[ $ok == 1 ]]; then
      wait "$sp" || true  # perftest servers may exit non-zero after a late client
      return 0
    fi
    kill "$sp" 2>/dev/null || true
    wait "$sp" 2>/dev/null || true
    echo "   ($name: attempt $attempt failed, $( ((attempt < 3)) && echo "starting over" || echo "giving up"))"
  done
  fail "$name" "$tmp/$name.client.txt" "$tmp/$name.server.txt"
}

# braid NAME TOOL ARGS...: the braid tools retry their own connect for 5 s.
braid() {
  local name="$1" tool="$2"; shift 2
  local p=$port
  nextport
  timeout -k 5 300 "${srvPin[@]}" "$tool" -p "$p" "$@" --json "$tmp/$name.server.json" \
    >"$tmp/$name.server.txt" 2>&1 &
  local sp=$!
  pids+=("$sp")
  sleep 0.3
  timeout -k 5 300 "${cliPin[@]}" "$tool" "$host" -p "$p" "$@" --json "$tmp/$name.client.json" \
    >"$tmp/$name.client.txt" 2>&1 || fail "$name" "$tmp/$name.client.txt" "$tmp/$name.server.txt"
  wait "$sp" || fail "$name (server)" "$tmp/$name.server.txt"
}

# The row of SIZE in a perftest table: field N.
prow() { awk -v s="$2" -v n="$3" '$1 == s && NF >= 5 { v = $n } END { if (v == "") exit 1; print v }' "$1"; }

vals="$tmp/values.txt"
: >"$vals"
load0="$(loadavg)"
echo "== bench_verbs: $dev GID $gid via $host, build $build, $(nproc) cpus, load $load0"
echo "   modes: $modes, rounds: $rounds, $mib MiB per bandwidth run, tx depth $txDepth, $latIters round trips per latency run"
echo "   pinning: ${srvPin[*]:-none} (servers), ${cliPin[*]:-none} (clients)"
vf=(-d "$dev" -x "$gid")
bw_perftest() {  # SIZE N
  perftest "ib_write_bw_$1" ib_write_bw "${vf[@]}" -s "$1" -n "$2" -t "$txDepth"
  v=$(prow "$tmp/ib_write_bw_$1.client.txt" "$1" 4) ||
    fail "reading ib_write_bw's row" "$tmp/ib_write_bw_$1.client.txt"
  printf "%-40s: %8s MB/s\n" "ib_write_bw $1 x $2" "$v"
  echo "$r perftest_bw_$1 $v" >>"$vals"
}
bw_braid() {  # SIZE N
  for m in $modes; do
    braid "write_bw_${1}_$m" "$wbw" "${vf[@]}" -s "$1" -n "$2" -t "$txDepth" $(mode_flags "$m")
    v=$(jnum "$tmp/write_bw_${1}_$m.client.json" bw_average_mb_per_sec) ||
      fail "reading braid_write_bw's JSON" "$tmp/write_bw_${1}_$m.client.json"
    printf "%-40s: %8s MB/s\n" "braid_write_bw $1 x $2 [$m]" "$v"
    echo "$r braid_bw_${1}_$m $v" >>"$vals"
  done
}
lat_perftest() {
  perftest ib_send_lat ib_send_lat "${vf[@]}" -s 8 -n "$latIters"
  v=$(prow "$tmp/ib_send_lat.client.txt" 8 5) || fail "reading ib_send_lat's row" "$tmp/ib_send_lat.client.txt"
  printf "%-40s: %8s us typical\n" "ib_send_lat 8 B x $latIters" "$v"
  echo "$r perftest_lat $v" >>"$vals"
}
lat_braid() {
  for m in $modes; do
    braid "send_lat_$m" "$slat" "${vf[@]}" -s 8 -n "$latIters" $(mode_flags "$m")
    v=$(jnum "$tmp/send_lat_$m.client.json" t_typical_usec) ||
      fail "reading braid_send_lat's JSON" "$tmp/send_lat_$m.client.json"
    printf "%-40s: %8s us typical\n" "braid_send_lat 8 B x $latIters [$m]" "$v"
    echo "$r braid_lat_$m $v" >>"$vals"
    [[ -n "$cmp" ]] || continue
    braid "cmp_send_lat_$m" "$cslat" "${vf[@]}" -s 8 -n "$latIters" $(mode_flags "$m")
    v=$(jnum "$tmp/cmp_send_lat_$m.client.json" t_typical_usec) ||
      fail "reading the compared braid_send_lat's JSON" "$tmp/cmp_send_lat_$m.client.json"
    printf "%-40s: %8s us typical\n" "braid_send_lat 8 B x $latIters [$m, cmp]" "$v"
    echo "$r cmp_lat_$m $v" >>"$vals"
  done
}
# Odd rounds run perftest first, even rounds braid first: the host's load drifts during a
# run (it rose round after round in most runs), and a fixed order would hand that drift
# to one side of every ratio.
for ((r = 1; r <= rounds; r++)); do
  echo "-- round $r (load $(loadavg))"
  for size in 65536 1048576; do
    n=$((mib * 1048576 / size)); [ "$n" -ge 5 ] || n=5  # perftest takes -n 5 at least
    if ((r % 2)); then bw_perftest "$size" "$n"; bw_braid "$size" "$n"
    else bw_braid "$size" "$n"; bw_perftest "$size" "$n"; fi
  done
  if ((r % 2)); then lat_perftest; lat_braid; else lat_braid; lat_perftest; fi
done

python3 - "$vals" "$json" "$modes" "$load0" "$(loadavg)" "$(nproc)" "$dev" "$mib" "$latIters" "$txDepth" "${#srvPin[@]}" <<'PY'
import json, statistics, sys
path, out, modes, load0, load1, cpus, dev, mib, lat_iters, tx, pinned = sys.argv[1:12]
modes = modes.split()
per = {}
for line in open(path):
    r, k, v = line.split()
    per.setdefault(k, {})[int(r)] = float(v)
rounds = sorted(per["perftest_lat"])
med = {k: statistics.median(v.values()) for k, v in per.items()}
def ratio(a, b):
    return statistics.median(per[a][r] / per[b][r] for r in rounds if per[b][r] > 0)
res = {"device": dev, "cpus": int(cpus), "load_before": load0, "load_after": load1,
       "rounds": len(rounds), "mib_per_bw_run": int(mib), "lat_iterations": int(lat_iters),
       "tx_depth": int(tx), "pinned": pinned != "0",
       "targets": {"bw_ratio_min": 0.95, "lat_ratio_max": 1.15},
       "bandwidth_mb_per_sec": {}, "latency_typical_usec": {}, "ratios": {},
       "per_round": {k: {str(r): v for r, v in d.items()} for k, d in per.items()}}
print(f"== summary: medians over {len(rounds)} round(s) (load now {load1})")
row = lambda name, text: print(f"{name:40s}: {text}")
ok = True
for size in (65536, 1048576):
    pb = med[f"perftest_bw_{size}"]
    row(f"ib_write_bw {size}", f"{pb:8.2f} MB/s")
    res["bandwidth_mb_per_sec"][f"ib_write_bw_{size}"] = pb
    for m in modes:
        b = med[f"braid_bw_{size}_{m}"]
        q = ratio(f"braid_bw_{size}_{m}", f"perftest_bw_{size}")
        verdict = "PASS" if q >= 0.95 else "MISS"
        row(f"braid_write_bw {size} [{m}]", f"{b:8.2f} MB/s  ratio {q:.3f} (>= 0.95: {verdict})")
        res["bandwidth_mb_per_sec"][f"braid_write_bw_{size}_{m}"] = b
        res["ratios"][f"write_bw_{size}_{m}"] = {"ratio": round(q, 4), "verdict": verdict}
pl = med["perftest_lat"]
row("ib_send_lat 8 B", f"{pl:8.2f} us typical")
res["latency_typical_usec"]["ib_send_lat_8"] = pl
for m in modes:
    b = med[f"braid_lat_{m}"]
    q = ratio(f"braid_lat_{m}", "perftest_lat")
    verdict = "PASS" if q <= 1.15 else "MISS"
    row(f"braid_send_lat 8 B [{m}]", f"{b:8.2f} us typical  ratio {q:.3f} (<= 1.15: {verdict})")
    res["latency_typical_usec"][f"braid_send_lat_8_{m}"] = b
    res["ratios"][f"send_lat_8_{m}"] = {"ratio": round(q, 4), "verdict": verdict}
    if f"cmp_lat_{m}" in med:  # --compare: the other build, and this one over it
        c = med[f"cmp_lat_{m}"]
        qc = ratio(f"cmp_lat_{m}", "perftest_lat")
        qa = ratio(f"braid_lat_{m}", f"cmp_lat_{m}")
        row(f"braid_send_lat 8 B [{m}, compared]", f"{c:8.2f} us typical  ratio {qc:.3f}")
        row(f"  this build / compared [{m}]", f"{qa:.3f} (< 1: this build is faster)")
        res["latency_typical_usec"][f"compared_send_lat_8_{m}"] = c
        res["ratios"][f"send_lat_8_{m}_vs_compared"] = {"ratio": round(qa, 4)}
if out:
    with open(out, "w") as f:
        json.dump(res, f, indent=2)
    print(f"wrote {out}")
PY
