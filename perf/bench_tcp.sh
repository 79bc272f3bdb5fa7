#!/usr/bin/env bash
# perf/bench_tcp.sh — braid over TCP on loopback against its two floors, in one run:
#   1. iperf3, one stream (-t DURATION)                      -> Gbit/s (receiver)
#   2. braid_send_bw, 4 MiB messages, about as long          -> Gbit/s (receiver)
#   3. tcp_pingpong, 8 bytes (blocking sockets, TCP_NODELAY) -> median half round trip
#      (also with -b, busy polling, for reference: not the target's floor)
#   4. braid_send_lat, 8 bytes                                -> median (t_typical)
# then the ratios braid/iperf3 (target >= 0.90) and braid/pingpong (target <= 1.30).
# Steps 2 and 4 run once per polling mode: "busy" (perftest's default: the tools spin on
# Request::test) and "event" (-e: Request::wait, which spins BRAID_SPIN_US then sleeps in
# epoll). With --rounds N the steps run N times, interleaved, so that braid and its floor
# see the same machine load; figures are medians over rounds and each ratio is the median
# of the per-round ratios. A benchmark, not a test: exit 0 when every step ran, 1 when one
# failed, 2 on a bad command line.
#
# usage: perf/bench_tcp.sh [BUILD_DIR] [--json FILE] [--duration S] [--port P]
#                          [--mode busy|event|both] [--socks N] [--rounds N]
#   BUILD_DIR   braid build directory (default: $BRAID_BUILD_DIR, else ./build)
#   --json      also write every figure (and each round's) to FILE
#   --duration  seconds of iperf3, and about as long for braid_send_bw (default 5)
#   --port      first of the ports used, PORT..PORT+6 (default 18600)
#   --mode      polling modes of the braid tools (default both)
#   --socks     TCP data sockets per rail for braid (default: BRAID_SOCKET_NSOCKS)
#   --rounds    repeat everything N times, interleaved, and report medians (default 1)
set -euo pipefail

build="${BRAID_BUILD_DIR:-./build}"
json=""
duration=5
port=18600
modes="busy event"
rounds=1
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --json) json="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --mode)
      case "$2" in busy|event) modes="$2" ;; both) modes="busy event" ;;
        *) echo "bench_tcp.sh: --mode busy, event or both" >&2; exit 2 ;; esac
      shift 2 ;;
    --socks) extra+=(--socks "$2"); shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    -h|--help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "bench_tcp.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) build="$1"; shift ;;
  esac
done
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "bench_tcp.sh: --rounds takes a count" >&2; exit 2; }

bw="$build/perf/braid_send_bw"
lat="$build/perf/braid_send_lat"
pp="$build/perf/tcp_pingpong"
for t in "$bw" "$lat" "$pp"; do
  [[ -x "$t" ]] || { echo "bench_tcp.sh: $t not found: build first, or pass the build dir" >&2; exit 2; }
done
command -v iperf3 >/dev/null || { echo "bench_tcp.sh: iperf3 is not installed" >&2; exit 2; }
command -v python3 >/dev/null || { echo "bench_tcp.sh: python3 is needed to read JSON" >&2; exit 2; }

export BRAID_SOCKET_IFNAME=lo
tmp="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

# jget FILE EXPR: a Python expression over the JSON document `j`.
jget() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }
calc() { python3 -c "print($1)"; }
mode_flag() { if [[ "$1" == event ]]; then echo "-e"; fi; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# run_pair NAME SERVER_CMD... -- CLIENT_CMD...: the server in the background, then the client.
run_pair() {
  local name="$1"; shift
  local server=() client=()
  while [[ "$1" != "--" ]]; do server+=("$1"); shift; done
  shift
  client=("$@")
  "${server[@]}" >"$tmp/$name.server.txt" 2>&1 &
  local sp=$!
  pids+=("$sp")
  if ! "${client[@]}" >"$tmp/$name.client.txt" 2>&1; then
    echo "bench_tcp.sh: $name failed:" >&2
    cat "$tmp/$name.client.txt" "$tmp/$name.server.txt" >&2
    exit 1
  fi
  wait "$sp" || { echo "bench_tcp.sh: $name server failed:" >&2; cat "$tmp/$name.server.txt" >&2; exit 1; }
}

load0="$(loadavg)"
echo "== bench_tcp: loopback, build $build, $(nproc) cores, load $load0, modes: $modes, rounds: $rounds"
vals="$tmp/values.txt"
: >"$vals"
msg=$((4 * 1024 * 1024))

for ((r = 1; r <= rounds; r++)); do
  if [[ $rounds -gt 1 ]]; then echo "-- round $r (load $(loadavg))"; fi
  # 1. iperf3, one stream.
  p=$port
  iperf3 -s -1 -p "$p" >"$tmp/iperf3.server.txt" 2>&1 &
  pids+=($!)
  sleep 0.5
  iperf3 -c 127.0.0.1 -p "$p" -t "$duration" -J >"$tmp/iperf3.json"
  wait "${pids[-1]}" 2>/dev/null || true
  iperf_gbps=$(jget "$tmp/iperf3.json" "'%.3f' % (j['end']['sum_received']['bits_per_second'] / 1e9)")
  printf "%-36s: %s Gbit/s\n" "iperf3 single stream" "$iperf_gbps"
  echo "$r iperf3_gbps $iperf_gbps" >>"$vals"

  # 2. braid_send_bw, 4 MiB: as many messages as iperf3 moved in its duration (>= 200).
  iters=$(calc "max(200, int($iperf_gbps * 1e9 / 8 * $duration / $msg))")
  for m in $modes; do
    p=$((p + 1))
    f=$(mode_flag "$m")
    run_pair "bw_$m" "$bw" -p "$p" $f "${extra[@]}" --json "$tmp/bw_$m.server.json" -- \
      "$bw" 127.0.0.1 -p "$p" -s 4M -n "$iters" $f "${extra[@]}" --json "$tmp/bw_$m.client.json"
    # The receiver's figure, like iperf3's sum_received.
    g=$(jget "$tmp/bw_$m.server.json" "'%.3f' % j['results'][0]['bw_average_gbit_per_sec']")
    gs=$(jget "$tmp/bw_$m.client.json" "'%.3f' % j['results'][0]['bw_average_gbit_per_sec']")
    printf "%-36s: %s Gbit/s (sender %s)\n" "braid_send_bw 4M x $iters [$m]" "$g" "$gs"
    echo "$r bw_${m}_gbps $g" >>"$vals"
    echo "$r bw_${m}_sender_gbps $gs" >>"$vals"
  done

  # 3. Plain TCP ping-pong, 8 bytes: blocking (the floor of the target) and busy polling
  #    (-b, the floor of braid's own busy polling; blocking pays for vCPU wake-ups on a VM).
  for k in blocking busy; do
    p=$((p + 1))
    f=""; if [[ $k == busy ]]; then f="-b"; fi
    run_pair "pingpong_$k" "$pp" -p "$p" -s 8 $f -- "$pp" 127.0.0.1 -p "$p" -s 8 -n 100000 $f
    pm=$(awk '{print $2}' "$tmp/pingpong_$k.client.txt")
    pa=$(awk '{print $4}' "$tmp/pingpong_$k.client.txt")
    printf "%-36s: median %s us, avg %s us\n" "tcp_pingpong 8 B [$k]" "$pm" "$pa"
    if [[ $k == blocking ]]; then
      echo "$r pingpong_median_us $pm" >>"$vals"
      echo "$r pingpong_avg_us $pa" >>"$vals"
    else
      echo "$r pingpong_busy_median_us $pm" >>"$vals"
    fi
  done

  # 4. braid_send_lat, 8 bytes.
  for m in $modes; do
    p=$((p + 1))
    f=$(mode_flag "$m")
    run_pair "lat_$m" "$lat" -p "$p" $f "${extra[@]}" -- \
      "$lat" 127.0.0.1 -p "$p" -s 8 -n 100000 $f "${extra[@]}" --json "$tmp/lat_$m.json"
    med=$(jget "$tmp/lat_$m.json" "'%.3f' % j['results'][0]['t_typical_usec']")
    avg=$(jget "$tmp/lat_$m.json" "'%.3f' % j['results'][0]['t_avg_usec']")
    printf "%-36s: median %s us, avg %s us\n" "braid_send_lat 8 B [$m]" "$med" "$avg"
    echo "$r lat_${m}_median_us $med" >>"$vals"
    echo "$r lat_${m}_avg_us $avg" >>"$vals"
  done
done

# Medians over rounds; each ratio is the median of its per-round ratios.
python3 - "$vals" "$json" "$modes" "$load0" "$(loadavg)" "$(nproc)" "$duration" "$msg" <<'PY'
import json, statistics, sys
path, out, modes, load0, load1, cores, duration, msg = sys.argv[1:9]
modes = modes.split()
per = {}
for line in open(path):
    r, k, v = line.split()
    per.setdefault(k, {})[int(r)] = float(v)
med = {k: statistics.median(v.values()) for k, v in per.items()}
rounds = sorted(per["iperf3_gbps"])
def row(name, text):
    print(f"{name:36s}: {text}")
print(f"== summary: medians over {len(rounds)} round(s) (load now {load1})")
row("iperf3 single stream", f"{med['iperf3_gbps']:.3f} Gbit/s")
row("tcp_pingpong 8 B [blocking]", f"median {med['pingpong_median_us']:.3f} us")
row("tcp_pingpong 8 B [busy]", f"median {med['pingpong_busy_median_us']:.3f} us")
res = {"cores": int(cores), "load_before": load0, "load_after": load1, "rounds": len(rounds),
       "duration_s": float(duration), "braid_send_bw_message_bytes": int(msg),
       "iperf3_gbit_per_sec": med["iperf3_gbps"],
       "tcp_pingpong_8b_median_usec": med["pingpong_median_us"],
       "tcp_pingpong_busy_8b_median_usec": med["pingpong_busy_median_us"],
       "targets": {"bw_ratio_min": 0.90, "lat_ratio_max": 1.30}, "modes": {},
       "per_round": {k: {str(r): v for r, v in d.items()} for k, d in per.items()}}
for m in modes:
    bwr = statistics.median(per[f"bw_{m}_gbps"][r] / per["iperf3_gbps"][r] for r in rounds)
    latr = statistics.median(per[f"lat_{m}_median_us"][r] / per["pingpong_median_us"][r]
                             for r in rounds)
    latb = statistics.median(per[f"lat_{m}_median_us"][r] / per["pingpong_busy_median_us"][r]
                             for r in rounds)
    bwok = "PASS" if bwr >= 0.90 else "MISS"
    latok = "PASS" if latr <= 1.30 else "MISS"
    row(f"braid_send_bw 4M [{m}]", f"{med[f'bw_{m}_gbps']:.3f} Gbit/s")
    row(f"braid_send_lat 8 B [{m}]", f"median {med[f'lat_{m}_median_us']:.3f} us")
    row(f"ratio braid/iperf3 [{m}]", f"{bwr:.3f} (target >= 0.90: {bwok})")
    row(f"ratio braid/pingpong [{m}]", f"{latr:.3f} (target <= 1.30: {latok})")
    row(f"ratio braid/busy pingpong [{m}]", f"{latb:.3f} (reference)")
    res["modes"][m] = {"bw_receiver_gbit_per_sec": med[f"bw_{m}_gbps"],
                       "bw_sender_gbit_per_sec": med[f"bw_{m}_sender_gbps"],
                       "lat_median_usec": med[f"lat_{m}_median_us"],
                       "lat_avg_usec": med[f"lat_{m}_avg_us"],
                       "ratio_bw": round(bwr, 4), "bw": bwok,
                       "ratio_lat": round(latr, 4), "lat": latok,
                       "ratio_lat_vs_busy_pingpong": round(latb, 4)}
if out:
    with open(out, "w") as f:
        json.dump(res, f, indent=2)
    print(f"wrote {out}")
PY
