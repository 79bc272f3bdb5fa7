#!/usr/bin/env bash
# perf/bench_coll.sh — braid's allreduce against Gloo and Open MPI, and the machine's bound, in
# one run: float32 sum, N ranks (4) on this host over TCP loopback, every power of two from
# --min to --max bytes (4 KiB .. 64 MiB). A benchmark, not a test.
#   bound   iperf3 over 127.0.0.1 with one stream per core (-P $(nproc)), receiver GB/s:
#           what loopback TCP moves with every core busy
#   braid   braidrun -n N braid_coll_perf all_reduce -b MIN -e MAX -f 2 -c CHECK -n ITERS
#           -w WARMUP -J ... (BRAID_SOCKET_IFNAME=lo); busbw of the out-of-place half
#   gloo    Gloo's benchmark binary, built from its public source into the cache (never
#           vendored): allreduce_ring, allreduce_ring_chunked, allreduce_halving_doubling,
#           one launch per algorithm and size (FileStore rendezvous, --transport tcp
#           --tcp-device lo --no-verify --nanos), --gloo-time of back-to-back iterations each
#           timed; busbw from the median (p50) iteration and from its mean bandwidth column;
#           "gloo best" = the best algorithm per size
#   openmpi perf/mpi_allreduce_bench.c built with mpicc into the cache, run with mpirun
#           --mca pml ob1 --mca btl tcp,self (TCP loopback, no shared memory), nccl-tests'
#           timing: WARMUP calls, then ITERS back-to-back, each clocked; mean and median call
#           averaged over ranks (braid_coll_perf reports both too)
# busbw = bytes / time * 2(N-1)/N in GB/s (1e9 B/s), as nccl-tests. With --rounds R every
# tool runs R times; each figure is the median over rounds. --interleave size (the default)
# runs the three tools back to back on each size in turn (one launch per tool and size),
# the order turned by one each round and reversed in even rounds, so that a slow spell of a
# shared machine (they last seconds to minutes) falls on all three alike; --interleave
# round runs each tool's whole sweep in turn (bound, braid, gloo, openmpi, bound, ...).
# Per size and statistic (median call against median call, mean against mean): braid /
# best peer (max of gloo best and openmpi), and braid / bound; a size meets its target
# (>= 1.3x the best peer from 1 MiB up, >= 1.0x below) when both ratios do. Progress (one
# line per tool and size) goes to stderr, the table to stdout.
# Exit 0 when every tool ran, 1 when one failed (the others are still reported), 2 on a bad
# command line or a missing prerequisite.
# Binding (--bind, default core) is the same for every tool: rank r on the r-th CPU of the
# script's own set, modulo their count (braidrun --bind-to core; mpirun --map-by core
# --bind-to core:overload-allowed; taskset for each Gloo rank). Unbound, ranks that outnumber
# the cores are placed by the scheduler, which can keep three busy-polling ranks on one core
# for milliseconds: a property of the run, not of the library. --bind none runs all unbound.
#
# usage: perf/bench_coll.sh [BUILD_DIR] [--json FILE] [--csv FILE] [--plot FILE.png]
#          [--rounds R] [--ranks N] [--min BYTES] [--max BYTES] [--iters N] [--warmup N]
#          [--check N] [--gloo-time MS] [--gloo-algos LIST] [--iperf-time S] [--port P]
#          [--cache DIR] [--raw DIR] [--bind core|none] [--interleave size|round]
#   BUILD_DIR     braid build directory (default: $BRAID_BUILD_DIR, else ./build)
#   --json FILE   medians, every round's figures, machine and versions (default: none)
#   --csv FILE    the table as CSV (default: FILE of --json with .csv, else none)
#   --plot FILE   PNG of busbw vs size, via perf/plot_coll.py (python3 with matplotlib)
#   --rounds R    interleaved repetitions, medians reported (1)
#   --ranks N     ranks of every tool (4)
#   --min/--max   smallest and largest size, K/M/G suffixes binary (4K, 64M)
#   --iters N     timed calls per size for braid and Open MPI (20)
#   --warmup N    untimed calls per size for braid and Open MPI (5)
#   --check N     braid_coll_perf -c: checked calls per size, after the timed ones (0)
#   --gloo-time   Gloo's --iteration-time in ms: at least this much of samples per size (1000)
#   --gloo-algos  comma-separated Gloo benchmarks
#                 (allreduce_ring,allreduce_ring_chunked,allreduce_halving_doubling)
#   --iperf-time  seconds of iperf3 per round (5)
#   --port P      iperf3's port (18700)
#   --cache DIR   where Gloo and the MPI benchmark are built ($BRAID_BENCH_CACHE, else
#                 /var/cache/braid-bench)
#   --raw DIR     keep every tool's raw output there (default: a temporary dir, removed)
#   --bind B      core: every tool's rank r on CPU r mod CPUs (default); none: unbound
#   --interleave  size: tools back to back per size, order turned each round and reversed
#                 in even rounds (default);
#                 round: each tool's whole sweep in turn
# Environment: GLOO_SRC = Gloo's source: a source tree, a git work tree or a bare git dir
# (cloned from); unset: git clone https://github.com/facebookincubator/gloo. GLOO_REF = the
# commit or tag to build (default: the source's HEAD). Missing tools (mpicc, mpirun, iperf3,
# matplotlib) are installed with apt-get when running as root.
set -euo pipefail

build="${BRAID_BUILD_DIR:-./build}"
json=""
csv=""
plot=""
rounds=1
ranks=4
minarg=4K
maxarg=64M
iters=20
warmup=5
check=0
gloo_time=1000
gloo_algos="allreduce_ring,allreduce_ring_chunked,allreduce_halving_doubling"
iperf_time=5
port=18700
cache="${BRAID_BENCH_CACHE:-/var/cache/braid-bench}"
rawdir=""
bind=core
interleave=size
usage_err() { echo "bench_coll.sh: $*" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --json|--csv|--plot|--rounds|--ranks|--min|--max|--iters|--warmup|--check|--gloo-time|\
    --gloo-algos|--iperf-time|--port|--cache|--raw|--bind|--interleave)
      [[ $# -ge 2 ]] || usage_err "$1 takes a value (see --help)" ;;&
    --json) json="$2"; shift 2 ;;
    --csv) csv="$2"; shift 2 ;;
    --plot) plot="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --ranks) ranks="$2"; shift 2 ;;
    --min) minarg="$2"; shift 2 ;;
    --max) maxarg="$2"; shift 2 ;;
    --iters) iters="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --check) check="$2"; shift 2 ;;
    --gloo-time) gloo_time="$2"; shift 2 ;;
    --gloo-algos) gloo_algos="$2"; shift 2 ;;
    --iperf-time) iperf_time="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    --cache) cache="$2"; shift 2 ;;
    --raw) rawdir="$2"; shift 2 ;;
    --bind) bind="$2"; shift 2 ;;
    --interleave) interleave="$2"; shift 2 ;;
    -h|--help) sed -n '2,66p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) usage_err "unknown option $1 (see --help)" ;;
    *) build="$1"; shift ;;
  esac
done
for v in rounds ranks iters warmup gloo_time iperf_time port; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || usage_err "--${v//_/-} takes a positive count"
done
[[ "$check" =~ ^[0-9]+$ ]] || usage_err "--check takes a count"
[[ "$bind" == core || "$bind" == none ]] || usage_err "--bind: core or none"
[[ "$interleave" == size || "$interleave" == round ]] || usage_err "--interleave: size or round"
[[ $ranks -ge 2 ]] || usage_err "--ranks: at least 2"

# to_bytes 4K -> 4096 (binary suffixes, as braid_coll_perf's -b/-e).
to_bytes() {
  local s="$1" n mult=1
  case "$s" in
    *[kK]) mult=1024; n="${s%?}" ;;
    *[mM]) mult=$((1024 * 1024)); n="${s%?}" ;;
    *[gG]) mult=$((1024 * 1024 * 1024)); n="${s%?}" ;;
    *) n="$s" ;;
  esac
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || usage_err "bad size $s"
  echo $((n * mult))
}
minb=$(to_bytes "$minarg")
maxb=$(to_bytes "$maxarg")
[[ $minb -ge 4 && $maxb -ge $minb ]] || usage_err "need 4 <= --min <= --max"
sizes=()
for ((s = minb; s <= maxb; s *= 2)); do sizes+=("$s"); done
IFS=, read -r -a algos <<<"$gloo_algos"
[[ ${#algos[@]} -ge 1 ]] || usage_err "--gloo-algos is empty"
if [[ -z "$csv" && -n "$json" ]]; then csv="${json%.json}.csv"; fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
braidrun="$build/perf/braidrun"
collperf="$build/perf/braid_coll_perf"
for t in "$braidrun" "$collperf"; do
  [[ -x "$t" ]] || usage_err "$t not found: build braidrun and braid_coll_perf first, or pass the build dir"
done

progress() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# Prerequisites: install what is missing when we can (Debian packages).
apt_install() {
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
    usage_err "missing $* (install the Debian packages, or run as root to let this script do it)"
  fi
  progress "installing $* with apt-get"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >/dev/null 2>&1; then
    apt-get update >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >/dev/null ||
      usage_err "apt-get install $* failed"
  fi
}
need_pkgs=()
have_mpicc() {  # Debian's mpicc wrapper exists with openmpi-bin; mpi.h comes with -dev
  local inc
  command -v mpicc >/dev/null || return 1
  inc="$(mpicc -showme:incdirs 2>/dev/null | awk '{print $1}')" || return 1
  [[ -n "$inc" && -e "$inc/mpi.h" ]]
}
have_mpicc || need_pkgs+=(libopenmpi-dev)
command -v mpirun >/dev/null || need_pkgs+=(openmpi-bin)
command -v iperf3 >/dev/null || need_pkgs+=(iperf3)
for t in git cmake make; do command -v "$t" >/dev/null || need_pkgs+=("$t"); done
command -v python3 >/dev/null || need_pkgs+=(python3)
if [[ ${#need_pkgs[@]} -gt 0 ]]; then apt_install "${need_pkgs[@]}"; fi
# A python3 that has matplotlib (pyenv's may not; Debian's gets python3-matplotlib).
pyplot=""
if [[ -n "$plot" ]]; then
  for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null && "$p" -c 'import matplotlib' 2>/dev/null; then pyplot="$p"; break; fi
  done
  if [[ -z "$pyplot" ]]; then
    apt_install python3-matplotlib
    /usr/bin/python3 -c 'import matplotlib' 2>/dev/null || usage_err "no python3 with matplotlib"
    pyplot=/usr/bin/python3
  fi
fi

mkdir -p "$cache" || usage_err "cannot create the cache dir $cache (set BRAID_BENCH_CACHE or --cache)"
cache="$(cd "$cache" && pwd)"
if [[ -n "$rawdir" ]]; then
  mkdir -p "$rawdir"
  raw="$(cd "$rawdir" && pwd)"
else
  raw="$(mktemp -d)"
fi
# The plot is drawn from the JSON: without --json it goes to the raw dir.
if [[ -n "$plot" && -z "$json" ]]; then json="$raw/bench_coll.json"; fi
pids=()  # the processes in flight now (never ones already waited for)
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [[ -z "$rawdir" ]]; then rm -rf "$raw"; fi
}
trap cleanup EXIT

# ------------------------------------------------------------------ Gloo, built from source
gloo_url="https://github.com/facebookincubator/gloo"
gloo_fetch() {  # -> a git repository (bare or not) or a plain source tree on stdout
  if [[ -n "${GLOO_SRC:-}" ]]; then
    [[ -d "$GLOO_SRC" ]] || usage_err "GLOO_SRC=$GLOO_SRC is not a directory"
    echo "$GLOO_SRC"
    return
  fi
  if [[ ! -d "$cache/gloo.git" ]]; then
    progress "cloning $gloo_url"
    git clone --quiet --bare "$gloo_url" "$cache/gloo.git.tmp" >&2 ||
      usage_err "cannot clone $gloo_url (no network? set GLOO_SRC to a local copy)"
    mv "$cache/gloo.git.tmp" "$cache/gloo.git"
  fi
  echo "$cache/gloo.git"
}
gloo_src_in="$(gloo_fetch)"
if git -C "$gloo_src_in" rev-parse --git-dir >/dev/null 2>&1; then
  gloo_rev="$(git -C "$gloo_src_in" rev-parse "${GLOO_REF:-HEAD}^{commit}")" ||
    usage_err "no commit ${GLOO_REF:-HEAD} in $gloo_src_in"
  gloo_dir="$cache/gloo-${gloo_rev:0:12}"
  if [[ ! -f "$gloo_dir/src/CMakeLists.txt" ]]; then
    progress "checking out Gloo ${gloo_rev:0:12} from $gloo_src_in"
    rm -rf "$gloo_dir/src"
    git clone --quiet --no-checkout "$gloo_src_in" "$gloo_dir/src" >&2
    git -C "$gloo_dir/src" -c advice.detachedHead=false checkout --quiet "$gloo_rev"
  fi
  gloo_source="$gloo_dir/src"
else
  [[ -f "$gloo_src_in/CMakeLists.txt" && -d "$gloo_src_in/gloo" ]] ||
    usage_err "$gloo_src_in is neither a git repository nor a Gloo source tree"
  gloo_source="$(cd "$gloo_src_in" && pwd)"
  gloo_rev="tree:$gloo_source"
  gloo_dir="$cache/gloo-tree-$(printf '%s' "$gloo_source" | cksum | cut -d' ' -f1)"
fi
gloo_bin="$gloo_dir/build/gloo/benchmark/benchmark"
if [[ ! -x "$gloo_bin" ]]; then
  progress "building Gloo's benchmark ($gloo_rev) in $gloo_dir/build (a few minutes)"
  mkdir -p "$gloo_dir"
  cmake -S "$gloo_source" -B "$gloo_dir/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_BENCHMARK=ON \
    -DUSE_REDIS=OFF -DUSE_IBVERBS=OFF -DUSE_LIBUV=OFF -DUSE_MPI=OFF >"$gloo_dir/cmake.log" 2>&1 ||
    { tail -20 "$gloo_dir/cmake.log" >&2; usage_err "Gloo's cmake failed ($gloo_dir/cmake.log)"; }
  cmake --build "$gloo_dir/build" --target benchmark -j "$(nproc)" >"$gloo_dir/build.log" 2>&1 ||
    { tail -20 "$gloo_dir/build.log" >&2; usage_err "Gloo's build failed ($gloo_dir/build.log)"; }
fi

# The CPUs this script may use (rank r of every tool goes to cpus[r % n] with --bind core).
IFS=, read -r -a cpus <<<"$(python3 -c 'import os; print(",".join(map(str, sorted(os.sched_getaffinity(0)))))')"

# ------------------------------------------------------------------ the MPI benchmark
mpi_src="$here/mpi_allreduce_bench.c"
mpi_bin="$cache/mpi_allreduce_bench"
if [[ ! -x "$mpi_bin" || "$mpi_src" -nt "$mpi_bin" ]]; then
  progress "compiling $mpi_src with mpicc"
  mpicc -O2 -o "$mpi_bin" "$mpi_src" || usage_err "mpicc failed"
fi
if [[ $bind == core ]]; then mpi_bind=(--map-by core --bind-to core:overload-allowed); else mpi_bind=(--bind-to none); fi
mpirun_cmd=(mpirun --oversubscribe "${mpi_bind[@]}" -n "$ranks" --mca pml ob1 --mca btl "tcp,self"
  --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo)
if [[ $(id -u) -eq 0 ]]; then mpirun_cmd+=(--allow-run-as-root); fi

# ------------------------------------------------------------------ the runs
export BRAID_SOCKET_IFNAME=lo
vals="$raw/values.txt"
: >"$vals"
failed=()
load0="$(loadavg)"
t_start=$(date +%s)
progress "bench_coll: $ranks ranks, ${#sizes[@]} sizes ($minb..$maxb B), $rounds round(s), $(nproc) cores, load $load0"

run_bound() {  # round
  local r="$1" log="$raw/iperf3.r$1"
  iperf3 -s -1 -B 127.0.0.1 -p "$port" >"$log.server.txt" 2>&1 &
  local sp=$!
  pids=("$sp")
  sleep 0.5
  if iperf3 -c 127.0.0.1 -p "$port" -t "$iperf_time" -P "$(nproc)" -J >"$log.json" 2>&1; then
    wait "$sp" 2>/dev/null || true
    pids=()
    local gbs
    gbs=$(python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print('%.4f' % (j['end']['sum_received']['bits_per_second'] / 8e9))" "$log.json")
    echo "$r bound 0 busbw $gbs" >>"$vals"
    progress "round $r bound: iperf3 -P $(nproc) over 127.0.0.1: $gbs GB/s"
  else
    kill "$sp" 2>/dev/null || true
    wait "$sp" 2>/dev/null || true
    pids=()
    failed+=("iperf3 round $r")
    progress "round $r bound: iperf3 FAILED:"; tail -5 "$log.json" >&2
  fi
}

run_braid() {  # round [MIN MAX]
  local r="$1" lo="${2:-$minb}" hi="${3:-$maxb}" rc=0
  local log="$raw/braid.r$1"
  [[ $# -ge 3 ]] && log="$raw/braid.r$1.s$lo"
  local cmd=("$braidrun" -n "$ranks" --bind-to "$bind" "$collperf" all_reduce -b "$lo" -e "$hi" -f 2
    -c "$check" -n "$iters" -w "$warmup" -J "$log.json")
  echo "BRAID_SOCKET_IFNAME=lo ${cmd[*]}" >"$raw/braid.cmd"
  "${cmd[@]}" 2>&1 | tee "$log.txt" | while read -r b _ _ _ _ t _ bus wrong _ _ busip _; do
    if [[ "$b" =~ ^[0-9]+$ ]]; then
      progress "round $r braid $b B: $t us, busbw $bus GB/s (in-place $busip), wrong $wrong"
    fi
  done || rc=$?
  if [[ $rc -ne 0 || ! -s "$log.json" ]]; then
    failed+=("braid round $r (rc $rc)")
    progress "round $r braid FAILED (rc $rc): ${cmd[*]}"; tail -20 "$log.txt" >&2
  fi
  if [[ -s "$log.json" ]]; then
    [[ -n "$braid_json" ]] || braid_json="$log.json"
    python3 - "$log.json" "$r" >>"$vals" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
for row in j["rows"]:
    o, i = row["out_of_place"], row["in_place"]
    print(sys.argv[2], "braid", row["size"], "busbw", o["busbw"])
    print(sys.argv[2], "braid", row["size"], "time_us", o["time_us"])
    if "busbw_p50" in o:
        print(sys.argv[2], "braid", row["size"], "busbw_p50", o["busbw_p50"])
        print(sys.argv[2], "braid", row["size"], "p50_us", o["time_p50_us"])
    print(sys.argv[2], "braid", row["size"], "busbw_inplace", i["busbw"])
    if o["wrong"] is not None:
        print(sys.argv[2], "braid", row["size"], "wrong", o["wrong"] + (i["wrong"] or 0))
PY
  fi
}

run_gloo() {  # round [SIZE...]
  local r="$1" algo size elems rk tag rc line p50 bw try p
  shift
  local -a szs=("$@")
  [[ ${#szs[@]} -gt 0 ]] || szs=("${sizes[@]}")
  local rdv="$raw/gloo-rdv"
  mkdir -p "$rdv"
  for algo in "${algos[@]}"; do
    for size in "${szs[@]}"; do
      elems=$((size / 4))
      # Gloo's benchmark decides on each rank alone when --iteration-time is reached
      # (runner.cc: "totalNanos > minIterationTimeNanos" is not agreed on), so when one
      # iteration takes about as long as what is left, one rank may stop while another
      # starts a new batch: "Connection closed by peer". A fresh launch is tried then.
      for try in 1 2 3; do
        tag="gloo.r$r.$algo.$size.t$try"
        local gp=()
        rc=0
        for ((rk = 0; rk < ranks; rk++)); do
          local pin=()
          if [[ $bind == core ]]; then pin=(taskset -c "${cpus[$((rk % ${#cpus[@]}))]}"); fi
          timeout 300 "${pin[@]}" "$gloo_bin" --size "$ranks" --rank "$rk" --shared-path "$rdv" \
            --prefix "$tag.$$" --transport tcp --tcp-device lo --elements "$elems" \
            --iteration-time "${gloo_time}ms" --no-verify --nanos "$algo" \
            >"$raw/$tag.rank$rk.txt" 2>&1 &
          gp+=("$!")
        done
        pids=("${gp[@]}")
        for p in "${gp[@]}"; do wait "$p" || rc=$?; done
        pids=()
        # rank 0's row: size elements min p50 p99 max bandwidth(GiB/s, algbw mean) iterations
        line=$(awk -v e="$elems" 'NF == 8 && $1 ~ /^[0-9]+$/ && $2 == e' "$raw/$tag.rank0.txt" | tail -1)
        if [[ $rc -eq 0 && -n "$line" ]]; then break; fi
        progress "round $r gloo $algo $size B: launch $try failed (rc $rc):"
        tail -2 "$raw/$tag.rank0.txt" >&2
      done
      if [[ $rc -ne 0 || -z "$line" ]]; then
        failed+=("gloo $algo $size round $r (rc $rc)")
        progress "round $r gloo $algo $size B FAILED after 3 launches"
        continue
      fi
      read -r _ _ _ p50 _ _ bw _ <<<"$line"
      python3 - "$r" "$algo" "$size" "$p50" "$bw" "$ranks" >>"$vals" <<'PY'
import sys
r, algo, size, p50_ns, bw_gib, n = sys.argv[1:7]
size, p50_ns, bw_gib, n = int(size), float(p50_ns), float(bw_gib), int(n)
f = 2 * (n - 1) / n
print(r, "gloo_" + algo, size, "p50_us", p50_ns / 1e3)
print(r, "gloo_" + algo, size, "busbw", size / p50_ns * f)          # bytes/ns = GB/s
print(r, "gloo_" + algo, size, "busbw_mean", bw_gib * 2**30 / 1e9 * f)
PY
      progress "round $r gloo $algo $size B: $(awk -v t="$p50" -v s="$size" -v n="$ranks" \
        'BEGIN { printf "p50 %.1f us, busbw(p50) %.4f GB/s", t / 1e3, s / t * 2 * (n - 1) / n }')"
    done
  done
}

run_mpi() {  # round [MIN MAX]
  local r="$1" lo="${2:-$minb}" hi="${3:-$maxb}" rc=0
  local log="$raw/openmpi.r$1"
  [[ $# -ge 3 ]] && log="$raw/openmpi.r$1.s$lo"
  "${mpirun_cmd[@]}" "$mpi_bin" "$lo" "$hi" "$iters" "$warmup" 2>&1 | tee "$log.txt" |
    while read -r b _ t _ bus wrong _; do
      if [[ "$b" =~ ^[0-9]+$ ]]; then
        progress "round $r openmpi $b B: $t us, busbw $bus GB/s, wrong $wrong"
      fi
    done || rc=$?
  if [[ $rc -ne 0 ]]; then
    failed+=("openmpi round $r (rc $rc)")
    progress "round $r openmpi FAILED (rc $rc):"; tail -10 "$log.txt" >&2
  fi
  awk -v r="$r" '$1 ~ /^[0-9]+$/ && NF >= 6 {
    print r, "openmpi", $1, "busbw", $5; print r, "openmpi", $1, "time_us", $3;
    print r, "openmpi", $1, "wrong", $6 }
    $1 ~ /^[0-9]+$/ && NF >= 8 { print r, "openmpi", $1, "p50_us", $7;
    print r, "openmpi", $1, "busbw_p50", $8 }' "$log.txt" >>"$vals"
}

braid_json=""
tools=(braid gloo openmpi)
for ((r = 1; r <= rounds; r++)); do
  progress "round $r/$rounds (load $(loadavg))"
  run_bound "$r"
  if [[ $interleave == round ]]; then
    run_braid "$r"
    run_gloo "$r"
    run_mpi "$r"
    continue
  fi
  # Round r turns the order by r-1 and runs it backwards in even rounds: each tool takes
  # each place, and follows a different tool from round to round.
  order=()
  for ((k = 0; k < ${#tools[@]}; k++)); do order+=("${tools[$(((k + r - 1) % ${#tools[@]}))]}"); done
  if ((r % 2 == 0)); then
    order=("${order[2]}" "${order[1]}" "${order[0]}")
  fi
  for size in "${sizes[@]}"; do
    for t in "${order[@]}"; do
      case "$t" in
        braid) run_braid "$r" "$size" "$size" ;;
        gloo) run_gloo "$r" "$size" ;;
        openmpi) run_mpi "$r" "$size" "$size" ;;
      esac
    done
  done
done
load1="$(loadavg)"
elapsed=$(($(date +%s) - t_start))

# ------------------------------------------------------------------ the summary
cpu_model="$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
mpi_version="$(mpirun --version 2>/dev/null | head -1)"
iperf_version="$(iperf3 --version 2>/dev/null | head -1)"
if [[ $interleave == size ]]; then
  braid_cmd="$(sed -e 's/-b [0-9]* -e [0-9]*/-b SIZE -e SIZE/' -e 's/-J [^ ]*/-J FILE/' \
    "$raw/braid.cmd") (one launch per size)"
  mpi_cmd="${mpirun_cmd[*]} $mpi_bin SIZE SIZE $iters $warmup (one launch per size)"
else
  braid_cmd="$(cat "$raw/braid.cmd")"
  mpi_cmd="${mpirun_cmd[*]} $mpi_bin $minb $maxb $iters $warmup"
fi
python3 - "$vals" "$json" "$csv" "$ranks" "$rounds" "$gloo_algos" "$load0" "$load1" "$(nproc)" \
  "$cpu_model" "$gloo_rev" "$mpi_version" "$iperf_version" "$elapsed" "$braid_cmd" \
  "$mpi_cmd" "$iters" "$warmup" "$gloo_time" \
  "$iperf_time" "$braid_json" "$bind" "$interleave" <<'PY'
import csv, json, os, statistics, sys
(vals, out_json, out_csv, ranks, rounds, algos, load0, load1, cores, cpu, gloo_rev, mpi_v,
 iperf_v, elapsed, braid_cmd, mpi_cmd, iters, warmup, gloo_time, iperf_time,
 braid_json, binding, interleave) = sys.argv[1:24]
algos = algos.split(",")
per = {}  # (tool, size, key) -> {round: value}
for line in open(vals):
    r, tool, size, key, v = line.split()
    per.setdefault((tool, int(size), key), {})[int(r)] = float(v)
def med(tool, size, key):
    d = per.get((tool, size, key))
    return statistics.median(d.values()) if d else None
sizes = sorted({s for (t, s, k) in per if t != "bound"})
bound = med("bound", 0, "busbw")
braid_version = None
if os.path.exists(braid_json):
    braid_version = json.load(open(braid_json)).get("braid_version")
def best_of(d):
    d = {a: v for a, v in d.items() if v is not None}
    a = max(d, key=d.get) if d else None
    return a, (d[a] if a else None)
def ratio_of(b, peers):
    peers = [v for v in peers if v is not None]
    return (b / max(peers)) if b is not None and peers else None, (max(peers) if peers else None)
rows = []
for s in sizes:
    # Like against like: each tool's median call (Gloo's statistic) and each tool's mean
    # call (nccl-tests' and Open MPI's); a size meets its target only on both.
    g = {a: med("gloo_" + a, s, "busbw") for a in algos}                 # p50
    gm = {a: med("gloo_" + a, s, "busbw_mean") for a in algos}           # mean
    gbest_algo, gbest = best_of(g)
    gbest_mean_algo, gbest_mean = best_of(gm)
    b, m = med("braid", s, "busbw"), med("openmpi", s, "busbw")          # means
    b50, m50 = med("braid", s, "busbw_p50"), med("openmpi", s, "busbw_p50")
    ratio_mean, best_mean = ratio_of(b, (gbest_mean, m))
    ratio_p50, best_p50 = ratio_of(b50, (gbest, m50))
    need = 1.3 if s >= 1 << 20 else 1.0
    ratios = [x for x in (ratio_p50, ratio_mean) if x is not None]
    ratio = min(ratios) if ratios else None
    rows.append({
        "bytes": s, "braid_busbw": b, "braid_busbw_p50": b50,
        "braid_busbw_inplace": med("braid", s, "busbw_inplace"),
        "braid_time_us": med("braid", s, "time_us"), "braid_p50_us": med("braid", s, "p50_us"),
        "gloo_best_busbw": gbest, "gloo_best_algo": gbest_algo,
        "gloo_best_busbw_mean": gbest_mean, "gloo_best_mean_algo": gbest_mean_algo,
        "gloo_busbw": g, "gloo_busbw_mean": gm,
        "gloo_p50_us": {a: med("gloo_" + a, s, "p50_us") for a in algos},
        "openmpi_busbw": m, "openmpi_busbw_p50": m50,
        "openmpi_time_us": med("openmpi", s, "time_us"), "openmpi_p50_us": med("openmpi", s, "p50_us"),
        "best_peer_busbw_p50": best_p50, "best_peer_busbw_mean": best_mean, "bound": bound,
        "braid_over_best_peer_p50": ratio_p50, "braid_over_best_peer_mean": ratio_mean,
        "braid_over_best_peer": ratio,
        "braid_over_bound": b50 / bound if b50 is not None and bound else None,
        "best_peer_over_bound": best_p50 / bound if best_p50 is not None and bound else None,
        "target_ratio": need,
        "meets_target": (ratio >= need) if ratio is not None else None,
    })
def f(v, d=3):
    return "-" if v is None else f"{v:.{d}f}"
def human(s):
    return f"{s >> 20} MiB" if s >= 1 << 20 else f"{s >> 10} KiB"
print(f"== bench_coll: allreduce float32 sum, {ranks} ranks, TCP loopback, medians over "
      f"{rounds} round(s); busbw GB/s (1e9 B/s); bound = iperf3 -P {cores}: {f(bound)} GB/s")
print(f"   binding: {binding} (the same for every tool); interleaving: {interleave}")
print("   p50: each tool's median call; mean: each tool's mean call; peer = the better of Gloo's "
      "best algorithm and Open MPI")
hdr = (f"{'size':>8} {'braid p50':>9} {'gloo p50':>8} {'(algo)':<26} {'ompi p50':>8} "
       f"{'/peer':>6} {'braid mean':>10} {'gloo mean':>9} {'ompi mean':>9} {'/peer':>6} "
       f"{'p50/bound':>9} {'target':>10}")
print(hdr)
for x in rows:
    t = "-" if x["meets_target"] is None else ("ok" if x["meets_target"] else "MISS")
    print(f"{human(x['bytes']):>8} {f(x['braid_busbw_p50']):>9} {f(x['gloo_best_busbw']):>8} "
          f"{(x['gloo_best_algo'] or '-'):<26} {f(x['openmpi_busbw_p50']):>8} "
          f"{f(x['braid_over_best_peer_p50'], 2):>6} {f(x['braid_busbw']):>10} "
          f"{f(x['gloo_best_busbw_mean']):>9} {f(x['openmpi_busbw']):>9} "
          f"{f(x['braid_over_best_peer_mean'], 2):>6} {f(x['braid_over_bound']):>9} "
          f"{'>=' + str(x['target_ratio']) + ' ' + t:>10}")
met = [x for x in rows if x["meets_target"]]
print(f"targets met at {len(met)} of {len(rows)} sizes (>= 1.3x best peer from 1 MiB, "
      f">= 1.0x below, on both statistics); load {load0} -> {load1}; {elapsed} s")
wrong = {t: sum(v for (tt, s, k), d in per.items() if tt == t and k == "wrong" for v in d.values())
         for t in ("braid", "openmpi")}
doc = {
    "benchmark": "allreduce float32 sum", "ranks": int(ranks), "rounds": int(rounds),
    "transport": "TCP loopback (127.0.0.1)", "units": "busbw GB/s (1e9 B/s), 2(n-1)/n factor",
    "binding": binding, "interleave": interleave,
    "machine": {"nproc": int(cores), "cpu_model": cpu, "load_before": load0, "load_after": load1},
    "elapsed_s": int(elapsed),
    "versions": {"braid": braid_version, "gloo": gloo_rev, "openmpi": mpi_v, "iperf3": iperf_v},
    "commands": {"braid": braid_cmd, "openmpi": mpi_cmd,
                 "gloo": ("taskset -c CPU(R) " if binding == "core" else "") +
                         f"benchmark --size {ranks} --rank R --shared-path DIR --prefix P "
                         f"--transport tcp --tcp-device lo --elements BYTES/4 "
                         f"--iteration-time {gloo_time}ms --no-verify --nanos ALGO",
                 "bound": f"iperf3 -c 127.0.0.1 -t {iperf_time} -P {cores} -J"},
    "method": {"braid": f"out-of-place, {iters} back-to-back calls after {warmup} warm-up, each "
                        "clocked: mean and median call, each averaged over ranks "
                        "(braid_coll_perf -a 1)",
               "openmpi": f"{iters} back-to-back calls after {warmup} warm-up, each clocked: "
                          "mean and median call, each averaged over ranks",
               "gloo": "median (p50) per-iteration latency on rank 0, iterations back-to-back "
                       f"for >= {gloo_time} ms after 5 warm-up; busbw_mean = from Gloo's "
                       "bandwidth column (mean)",
               "best_peer": "max(gloo best algorithm, openmpi) per size and statistic",
               "targets": "braid/best_peer >= 1.3 for sizes >= 1 MiB, >= 1.0 below, on the "
                          "medians (p50 vs p50) and on the means (mean vs mean) alike; "
                          "braid_over_best_peer is the smaller of the two"},
    "bound_gbps": bound,
    "wrong_elements": wrong,
    "rows": rows,
    "per_round": [{"round": r, "tool": t, "bytes": s, "key": k, "value": v}
                  for (t, s, k), d in sorted(per.items()) for r, v in sorted(d.items())],
}
if out_json:
    with open(out_json, "w") as fh:
        json.dump(doc, fh, indent=2)
    print(f"wrote {out_json}")
if out_csv:
    with open(out_csv, "w", newline="") as fh:
        w = csv.writer(fh)
        cols = ["bytes", "braid_busbw_p50", "gloo_best_busbw", "gloo_best_algo",
                "openmpi_busbw_p50", "braid_over_best_peer_p50", "braid_busbw",
                "gloo_best_busbw_mean", "openmpi_busbw", "braid_over_best_peer_mean", "bound",
                "braid_over_best_peer", "braid_over_bound", "target_ratio", "meets_target"]
        w.writerow(cols + [f"gloo_{a}_busbw" for a in algos])
        for x in rows:
            w.writerow([x[c] for c in cols] + [x["gloo_busbw"][a] for a in algos])
    print(f"wrote {out_csv}")
PY

if [[ -n "$plot" ]]; then
  "$pyplot" "$here/plot_coll.py" "$json" "$plot" || failed+=("plot")
fi

if [[ -n "$rawdir" ]]; then echo "raw output in $raw"; fi
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "bench_coll.sh: failed: ${failed[*]}" >&2
  exit 1
fi
