#!/usr/bin/env bash
# The perf tools on the host, no RDMA needed: bad command lines print the usage and exit 2
# for every tool; --help documents the verbs flags; the one-sided tools over TCP fail on
# both sides with the API's kUnsupported error and exit 1 (never a crash, never a hang).
#
#   tests/perf/tools_cli.sh PERF_DIR
set -uo pipefail
perf="${1:?usage: tools_cli.sh PERF_DIR}"
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
  case "$tool" in
    *_bw) usage_exit "$tool" -t 0; usage_exit "$tool" -t 5000 ;;
    *) usage_exit "$tool" -t 4 ;;  # latency tools have no tx depth
  esac
  timeout -k 2 10 "$perf/$tool" --help >"$out/help" 2>&1
  rc=$?
  checks=$((checks + 1))
  [[ $rc == 0 ]] || fail "$tool --help: exit $rc"
  for flag in --ib-dev --ib-port --gid-index --qp --transport --yield --validate --json; do
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

echo "== $checks checks, $failures failed"
[[ $failures == 0 ]]
