#!/usr/bin/env bash
# Every perf tool as server + client over verbs (rxe0) with --validate, in ONE Soft-RoCE VM.
#
#   tests/softroce/tools_smoke.sh BUILD_DIR     (on the host: boots the VM; 77 = no VM)
#
# Per tool and size (one of them above 1 MiB): both sides exit 0, the verdicts say PASSED,
# the client's table has the row, the figure is non-zero, both JSON files parse and say
# transport "verbs". Then --inject-error must make every tool's validation FAIL with a
# non-zero exit, and braid_write_bw with -q 2 must stripe over two QPs. Every command is
# bounded by timeout; the whole VM run by run_in_vm.sh --timeout.
set -uo pipefail

if [[ "${BRAID_IN_VM:-}" != 1 ]]; then
  [[ $# -eq 1 && -d "$1/perf" ]] || { echo "usage: $0 BUILD_DIR" >&2; exit 2; }
  here=$(cd "$(dirname "$0")" && pwd)
  build=$(cd "$1" && pwd)
  exec "$here/run_in_vm.sh" --timeout 560 -- bash "$here/tools_smoke.sh" "$build"
fi

perf="$1/perf"
dev=rxe0
host="${BRAID_VM_IP0:-10.77.0.1}"
vf=(-d "$dev" -x "$("$(dirname "$0")/gid_index.sh" "$dev")")
out=$(mktemp -d)
port=18900
failures=0
checks=0
export BRAID_LOG_LEVEL="${BRAID_LOG_LEVEL:-warn}"

fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}
ok() { checks=$((checks + 1)); }
show() {
  for f in "$@"; do [[ -f "$f" ]] && { echo "--- $f"; tail -25 "$f"; }; done
}

# run NAME TOOL SERVER_ARGS -- CLIENT_ARGS: server first (bounded), then the client (which
# retries its connect for 5 s). Sets crc/src to the exit codes.
run() {
  local name="$1" tool="$2"
  shift 2
  local sargs=() cargs=()
  while [[ $# -gt 0 && "$1" != "--" ]]; do sargs+=("$1"); shift; done
  shift
  cargs=("$@")
  port=$((port + 1))
  timeout -k 5 120 "$perf/$tool" -p "$port" "${vf[@]}" "${sargs[@]}" \
    --json "$out/$name.server.json" >"$out/$name.server.txt" 2>&1 &
  local sp=$!
  sleep 0.2
  timeout -k 5 120 "$perf/$tool" "$host" -p "$port" "${vf[@]}" "${cargs[@]}" \
    --json "$out/$name.client.json" >"$out/$name.client.txt" 2>&1
  crc=$?
  wait "$sp"
  src=$?
}

# JSON checks are queued and run by one python3 at the end (a python3 start costs seconds
# under emulation): "FILE KEY" = the file parses like `python3 -m json.tool`, its transport
# is verbs and results[0][KEY] > 0 (KEY "-": no figure), "FILE !passed" = its validation
# failed, "FILE perqp" = results[0].bytes_sent_per_rail has two non-zero entries.
jsonq="$out/json-checks.txt"
: >"$jsonq"
json_ok() { echo "$1 ${2:--}" >>"$jsonq"; }

# valid_run TOOL SIZE ITERS [EXTRA...]: a validated run that must pass everywhere.
valid_run() {
  local tool="$1" size="$2" iters="$3"
  shift 3
  local name="${tool}_${size}"
  run "$name" "$tool" "$@" -- -s "$size" -n "$iters" --validate "$@"
  local c="$out/$name.client.txt" s="$out/$name.server.txt"
  if [[ $crc != 0 || $src != 0 ]]; then
    fail "$tool -s $size: exit codes client $crc server $src"; show "$c" "$s"; return
  fi
  ok
  grep -q "validation: PASSED" "$c" || { fail "$tool -s $size: no PASSED verdict on the client"; show "$c"; }
  # braid_read_bw's server has nothing to check (the client validates what it read).
  if [[ $tool != braid_read_bw ]]; then
    grep -q "validation: PASSED" "$s" || { fail "$tool -s $size: no PASSED verdict on the server"; show "$s"; }
  fi
  grep -Eq "^ $size +$iters " "$c" || { fail "$tool -s $size: no table row '$size $iters' on the client"; show "$c"; }
  local key=bw_average_mb_per_sec
  [[ $tool == *_lat ]] && key=t_typical_usec
  json_ok "$out/$name.client.json" "$key"
  json_ok "$out/$name.server.json"
  ok
  echo "ok [${SECONDS}s]: $tool -s $size -n $iters $*: $(grep -E "^ $size +$iters " "$c" | head -1 | tr -s ' ')"
}

# corrupt_run TOOL SIZE ITERS N: --inject-error N must fail the validation, exit non-zero.
corrupt_run() {
  local tool="$1" size="$2" iters="$3" n="$4"
  local name="${tool}_${size}_inject"
  run "$name" "$tool" --yield -- -s "$size" -n "$iters" --validate --inject-error "$n" --yield
  local c="$out/$name.client.txt"
  [[ $crc != 0 ]] || { fail "$tool --inject-error $n: client exit 0"; show "$c"; return; }
  grep -q "validation: FAILED" "$c" || { fail "$tool --inject-error $n: no FAILED verdict"; show "$c" "$out/$name.server.txt"; return; }
  json_ok "$out/$name.client.json" '!passed'
  ok
  echo "ok: $tool --inject-error $n: $(grep 'validation: FAILED' "$c" | cut -c1-100)"
}

echo "== tools smoke: $(ls /sys/class/infiniband | tr '\n' ' ')via $host"
# --yield everywhere: two busy pollers on the VM's 2 vCPUs crawl when the host is busy
# (this is a correctness test; perf/bench_verbs.sh measures the polling modes).
for tool in braid_send_bw braid_write_bw braid_read_bw; do
  valid_run $tool 4096 100 --yield
  valid_run $tool 2097152 20 --yield
done
for tool in braid_send_lat braid_write_lat; do
  valid_run $tool 8 200 --yield
  valid_run $tool 1572864 10 --yield
done

# With tx depth 16 the first 16 messages are warm-up: 30 + 16 = 46 in all. braid_write_bw
# checks the last write of each slot, so the corrupted one must be among the last 16.
corrupt_run braid_send_bw 4096 30 7
corrupt_run braid_read_bw 4096 30 7
corrupt_run braid_write_bw 4096 30 45
corrupt_run braid_send_lat 8 50 7
corrupt_run braid_write_lat 8 50 7

# Two RC QPs on the one rail. braid_send_bw: a 2 MiB rendezvous message is striped over
# both (EndpointStats counts each QP's bytes). braid_write_bw: the one-sided path over two
# QPs (EndpointStats does not count one-sided bytes per QP, so the header is the check).
name=braid_send_bw_q2
run "$name" braid_send_bw -q 2 --yield -- -q 2 -s 2097152 -n 10 --validate --yield
if [[ $crc != 0 || $src != 0 ]]; then
  fail "braid_send_bw -q 2: exit codes client $crc server $src"; show "$out/$name.client.txt" "$out/$name.server.txt"
else
  grep -q "2 QPs in use" "$out/$name.client.txt" || { fail "braid_send_bw -q 2: header does not say 2 QPs in use"; show "$out/$name.client.txt"; }
  grep -q "validation: PASSED" "$out/$name.server.txt" || fail "braid_send_bw -q 2: no PASSED verdict"
  json_ok "$out/$name.client.json" perqp
  ok
  echo "ok: braid_send_bw -q 2 -s 2097152: 2 QPs in use, PASSED"
fi
for tool in braid_write_bw braid_write_lat; do
  name=${tool}_q2
  run "$name" $tool -q 2 --yield -- -q 2 -s 1048576 -n 10 --validate --yield
  if [[ $crc == 0 && $src == 0 ]] && grep -q "2 QPs in use" "$out/$name.client.txt" &&
    grep -q "validation: PASSED" "$out/$name.client.txt"; then
    ok; echo "ok: $tool -q 2 -s 1048576: 2 QPs in use, PASSED"
  else
    fail "$tool -q 2"; show "$out/$name.client.txt" "$out/$name.server.txt"
  fi
done

# The queued JSON checks, in one python3.
jfail=$(python3 - "$jsonq" <<'PY'
import json, sys
bad = 0
n = 0
for line in open(sys.argv[1]):
    path, what = line.split()
    n += 1
    try:
        j = json.load(open(path))
        if j["config"]["transport"] != "verbs":
            raise ValueError("transport is %r, not verbs" % j["config"]["transport"])
        r = j["results"][0] if j["results"] else {}
        if what == "!passed":
            if j["validation"]["passed"]:
                raise ValueError("validation passed despite --inject-error")
        elif what == "perqp":
            q = r.get("bytes_sent_per_rail", [])
            if len(q) != 2 or min(q) == 0:
                raise ValueError("bytes per QP %r: both QPs must carry bytes" % (q,))
            print("ok: %s: bytes per QP %r" % (path.rsplit("/", 1)[-1], q))
        elif what != "-":
            if not float(r.get(what, 0)) > 0:
                raise ValueError("%s is %r" % (what, r.get(what)))
    except Exception as e:
        bad += 1
        print("FAIL: %s: %s" % (path, e))
print("ok: %d JSON reports parsed, %d bad" % (n, bad), file=sys.stderr)
sys.exit(1 if bad else 0)
PY
)
rc=$?
[[ -n "$jfail" ]] && echo "$jfail"
if [[ $rc != 0 ]]; then failures=$((failures + 1)); else checks=$((checks + 1)); fi

echo "== $checks checks passed, $failures failed"
[[ $failures == 0 ]] || exit 1
echo "PASS: every tool moved and validated data over verbs"
