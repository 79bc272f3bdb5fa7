#!/usr/bin/env bash
# The perf tools on the host, no RDMA needed: bad command lines print the usage and exit 2
# for every tool (a plan beyond the control messages' limits included); --help documents the
# verbs flags; the one-sided tools over TCP fail on both sides with the API's kUnsupported
# error and exit 1 (never a crash, never a hang); --stats and --timeline describe the rails
# of a loopback run (plot_rails.py plots the timeline); a client with no server retries quietly
# (debug level only) and then names the address it tried and what to check.
#
#   tests/perf/tools_cli.sh PERF_DIR
set -uo pipefail
perf="${1:?usage: tools_cli.sh PERF_DIR}"
perf_src="$(cd "$(dirname "$0")/../../perf" && pwd)"  # the scripts (plot_rails.py)
failures=0
checks=0
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# usage_exit TOOL ARGS...: exit 2 with the usage on stderr, nothing on stdout.
usage_exit() {
  local tool="$1"
  shift
  timeout -k 2 10 "$perf/$tool" "$@" >"$out/stdout" 2>"$out/stderr"
  local rc=$?
  checks=$((checks + 1))
  if [[ $rc != 2 ]]; then
    fail "$tool $*: exit $rc, 2 expected"; cat "$out/stderr"
  elif ! grep -qi "usage" "$out/stderr" && ! grep -q "$tool:" "$out/stderr"; then
    fail "$tool $*: no usage or message on stderr"
  elif [[ -s "$out/stdout" ]]; then
    fail "$tool $*: wrote to stdout"
  fi
}

all=(braid_send_bw braid_send_lat braid_write_bw braid_read_bw braid_write_lat)
for tool in "${all[@]}"; do
  [[ -x "$perf/$tool" ]] || { fail "$perf/$tool is not built"; continue; }
  usage_exit "$tool" --no-such-flag
  usage_exit "$tool" -s 0
  usage_exit "$tool" -s 12Q
  usage_exit "$tool" -q 0
  usage_exit "$tool" -q 17
  usage_exit "$tool" -x -2
  usage_exit "$tool" -i 1              # a port without -d
  usage_exit "$tool" -d rxe0 -i 0
  usage_exit "$tool" -d rxe0,rxe1      # -d is one device
  usage_exit "$tool" -d rxe0 --transport tcp
  usage_exit "$tool" --transport ib
  usage_exit "$tool" -e --yield
  usage_exit "$tool" --busy --yield
  usage_exit "$tool" a.example b.example
  usage_exit "$tool" -s 4G            # above the largest message (2 GiB)
  usage_exit "$tool" -n 100000001
  case "$tool" in
    # 4096 buffers of 1 GiB with --validate: above the 16 GiB per side.
    *_bw) usage_exit "$tool" -t 0; usage_exit "$tool" -t 5000
          usage_exit "$tool" -s 1G -t 4096 --validate ;;
    *) usage_exit "$tool" -t 4 ;;  # latency tools have no tx depth
  esac
  timeout -k 2 10 "$perf/$tool" --help >"$out/help" 2>&1
  rc=$?
  checks=$((checks + 1))
  [[ $rc == 0 ]] || fail "$tool --help: exit $rc"
  flags=(--ib-dev --ib-port --gid-index --qp --transport --yield --validate --json --stats)
  [[ $tool == *_bw ]] && flags+=(--timeline)  # the bandwidth tools only
  for flag in "${flags[@]}"; do
    grep -q -- "$flag" "$out/help" || fail "$tool --help does not mention $flag"
  done
  grep -q "not built" "$out/help" && fail "$tool --help still says verbs is not built"
done

# One-sided tools over TCP: the API's kUnsupported on both sides, exit 1.
export BRAID_SOCKET_IFNAME=lo BRAID_LOG_LEVEL=error
port=$((19300 + RANDOM % 500))
for tool in braid_write_bw braid_read_bw braid_write_lat; do
  port=$((port + 1))
  timeout -k 2 30 "$perf/$tool" --transport tcp -p "$port" >"$out/srv.txt" 2>&1 &
  sp=$!
  timeout -k 2 30 "$perf/$tool" 127.0.0.1 --transport tcp -p "$port" -n 10 >"$out/cli.txt" 2>&1
  crc=$?
  wait "$sp"
  src=$?
  checks=$((checks + 1))
  if [[ $crc != 1 || $src != 1 ]]; then
    fail "$tool over TCP: exit codes client $crc server $src, 1 expected"; cat "$out/cli.txt" "$out/srv.txt"
    continue
  fi
  for f in cli srv; do
    grep -q "error: unsupported: .*one-sided writes and reads need verbs rails on both sides" "$out/$f.txt" ||
      { fail "$tool over TCP ($f): no kUnsupported message"; cat "$out/$f.txt"; }
  done
done

# --stats: a table per rail on both sides, and "rails" in the JSON with each rail's bytes.
port=$((port + 1))
timeout -k 2 30 "$perf/braid_send_bw" -p "$port" --stats >"$out/srv.txt" 2>&1 &
sp=$!
timeout -k 2 30 "$perf/braid_send_bw" 127.0.0.1 -p "$port" -s 1M -n 20 --stats \
  --json "$out/stats.json" >"$out/cli.txt" 2>&1
crc=$?
wait "$sp"
src=$?
checks=$((checks + 1))
if [[ $crc != 0 || $src != 0 ]]; then
  fail "--stats: exit codes client $crc server $src"; cat "$out/cli.txt" "$out/srv.txt"
else
  for f in cli srv; do
    grep -q "^ Rails (this side's sends" "$out/$f.txt" || fail "--stats ($f): no rail table"
  done
  grep -qE "^ 0 +up +[1-9][0-9]* +100.0%" "$out/cli.txt" || { fail "--stats: the client's rail 0 did not carry every byte"; cat "$out/cli.txt"; }
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["rails"]; assert r[0]["bytes_sent"] > 0 and r[0]["state"] == "up" and r[0]["throughput_mb_per_sec"] > 0, r' \
    "$out/stats.json" || fail "--stats: the JSON has no rails with bytes, state and rate"
fi

# --timeline: JSON Lines while the run goes on (1000 MiB, 0.2 s to 1 s on loopback here:
# one 100 ms sample or more, then the last, shorter one): each sample's t_ms after the
# previous one's, a rails list with each rail's state, name and figures, and bytes adding up
# to the 1000 timed messages at least and to those and the 16 of the warm-up at most (the
# warm-up's may be counted too). The server writes one too (zero bytes: it sends no
# payload). perf/plot_rails.py draws it, or, without matplotlib, says it skipped, exit 0.
port=$((port + 1))
timeout -k 2 30 "$perf/braid_send_bw" -p "$port" --timeline "$out/srv.jsonl" >"$out/srv.txt" 2>&1 &
sp=$!
timeout -k 2 30 "$perf/braid_send_bw" 127.0.0.1 -p "$port" -s 1M -n 1000 \
  --timeline "$out/cli.jsonl" >"$out/cli.txt" 2>&1
crc=$?
wait "$sp"
src=$?
checks=$((checks + 1))
if [[ $crc != 0 || $src != 0 ]]; then
  fail "--timeline: exit codes client $crc server $src"; cat "$out/cli.txt" "$out/srv.txt"
else
  python3 - "$out/cli.jsonl" "$out/srv.jsonl" $((1000 << 20)) $((1016 << 20)) <<'PY' ||
import json, sys
def samples(path):
    lines = [json.loads(l) for l in open(path)]
    s = [l for l in lines if "rails" in l]
    for a, b in zip(s, s[1:]):
        assert b["t_ms"] > a["t_ms"], (a["t_ms"], b["t_ms"])
    for x in s:
        assert x["rails"] and x["t_ms"] >= 0 and x["interval_ms"] > 0, x
        for r in x["rails"]:
            assert r["state"] in ("up", "probing", "down") and r["name"], r
            assert r["bytes"] >= 0 and r["mbit_per_sec"] >= 0 and r["throughput_mb_per_sec"] >= 0, r
    return s
cli, srv = samples(sys.argv[1]), samples(sys.argv[2])
total = sum(r["bytes"] for x in cli for r in x["rails"])
assert len(cli) >= 2, f"{len(cli)} client samples, 2 or more expected"
assert sum(r["bytes"] for r in cli[0]["rails"]) > 0, cli[0]
assert int(sys.argv[3]) <= total <= int(sys.argv[4]), f"client: {total} bytes in the samples"
assert srv, "no server samples"
PY
    { fail "--timeline: bad timeline files"; head -c 2000 "$out/cli.jsonl"; head -c 600 "$out/srv.jsonl"; }
  if python3 -c "import matplotlib" 2>/dev/null; then
    python3 "$perf_src/plot_rails.py" "$out/cli.jsonl" -o "$out/rails.png" >"$out/plot.txt" 2>&1 &&
      [[ -s "$out/rails.png" ]] || { fail "plot_rails.py wrote no rails.png"; cat "$out/plot.txt"; }
  else
    python3 "$perf_src/plot_rails.py" "$out/cli.jsonl" -o "$out/rails.png" >"$out/plot.txt" 2>&1 &&
      grep -q "skipping the plot" "$out/plot.txt" || { fail "plot_rails.py without matplotlib"; cat "$out/plot.txt"; }
  fi
fi

# A client with nothing listening: retries for about 5 s, says nothing about each attempt
# unless BRAID_LOG_LEVEL=debug, then exits 1 naming the address and what to check.
port=$((port + 1))
for level in error debug; do
  BRAID_LOG_LEVEL=$level timeout -k 2 30 "$perf/braid_send_bw" 127.0.0.1 -p "$port" \
    >"$out/noserver.out" 2>"$out/noserver.err"
  rc=$?
  checks=$((checks + 1))
  if [[ $rc != 1 ]]; then
    fail "client without a server (log level $level): exit $rc, 1 expected"; cat "$out/noserver.err"
    continue
  fi
  grep -q "error: .*cannot connect to server 127.0.0.1 port $port (tried braid://127.0.0.1:$port" \
    "$out/noserver.err" || { fail "no final error naming the address tried"; cat "$out/noserver.err"; }
  grep -q "Check that the server runs ('braid_send_bw' without a host" "$out/noserver.err" ||
    { fail "the final error does not say what to check"; cat "$out/noserver.err"; }
  grep -qi "retry" "$out/noserver.out" && fail "the client reports its retries on stdout"
  n=$(grep -c "\[debug\] connect to braid://127.0.0.1:$port.*refused, retrying" "$out/noserver.err")
  if [[ $level == debug && $n -lt 2 ]]; then
    fail "BRAID_LOG_LEVEL=debug: $n retry lines, 2 or more expected"; cat "$out/noserver.err"
  elif [[ $level != debug && $n != 0 ]]; then
    fail "BRAID_LOG_LEVEL=$level: the retries are logged"
  fi
done

echo "== $checks checks, $failures failed"
[[ $failures == 0 ]]
