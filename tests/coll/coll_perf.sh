#!/usr/bin/env bash
# braid_coll_perf under braidrun, 3 ranks on loopback: nccl-tests' layout (the parameter
# line, one line per rank, the three header lines, 13 columns per row, the footer), every
# collective checked with every type and op at small sizes ("Out of bounds values : 0 OK"),
# the -J file parses and agrees with the table, the braid_<collective>_perf symlinks work,
# and a bad command line exits 2.
#
#   tests/coll/coll_perf.sh PERF_DIR
set -uo pipefail
perf="${1:?usage: coll_perf.sh PERF_DIR}"
export BRAID_SOCKET_IFNAME="${BRAID_SOCKET_IFNAME:-lo}"
failures=0
checks=0
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

for f in braidrun braid_coll_perf braid_all_reduce_perf braid_sendrecv_perf; do
  [[ -x "$perf/$f" ]] || { echo "FAIL: $perf/$f is not built"; exit 1; }
done

# shape NAME FILE NRANKS NROWS TEST: the layout of one run's output.
shape() {
  local name="$1" file="$2" nranks="$3" nrows="$4" test="$5"
  head -1 "$file" | grep -Eq '^# nThread 1 nGpus 1 minBytes [0-9]+ maxBytes [0-9]+ step: [0-9]+\((factor|bytes)\) warmup iters: [0-9]+ iters: [0-9]+ agg iters: 1 validation: [01] graph: 0$' ||
    fail "$name: parameter line: $(head -1 "$file")"
  local ranks
  ranks=$(grep -E '^#  Rank +[0-9]+ Group +0 Pid +[0-9]+ on +[^ ]+ transport [a-z]+ rails [^ ]+$' "$file" |
          awk '{print $3}' | tr '\n' ' ')
  local want=""
  for ((r = 0; r < nranks; r++)); do want+="$r "; done
  [[ "$ranks" == "$want" ]] || fail "$name: rank lines for '$ranks', '$want' expected"
  grep -Eq '^# +out-of-place +in-place *$' "$file" || fail "$name: no out-of-place/in-place line"
  grep -Eq '^# +size +count +type +redop +root +time +algbw +busbw +#wrong +time +algbw +busbw +#wrong$' "$file" ||
    fail "$name: no column-name line"
  grep -Eq '^# +\(B\) +\(elements\) +\(us\) +\(GB/s\) +\(GB/s\) +\(us\) +\(GB/s\) +\(GB/s\) *$' "$file" ||
    fail "$name: no units line"
  local rows bad
  rows=$(grep -vc '^#' "$file")
  [[ "$rows" == "$nrows" ]] || fail "$name: $rows rows, $nrows expected"
  bad=$(grep -v '^#' "$file" | awk 'NF != 13 || $1 !~ /^[0-9]+$/ || $2 !~ /^[0-9]+$/ || $5 !~ /^-?[0-9]+$/ || $6 !~ /^[0-9.]+$/ || $10 !~ /^[0-9.]+$/ || ($9 !~ /^[0-9]+$/ && $9 != "N/A")' | head -3)
  [[ -z "$bad" ]] || fail "$name: malformed rows: $bad"
  grep -qx '# Out of bounds values : 0 OK' "$file" || fail "$name: $(grep 'Out of bounds' "$file" || echo 'no Out of bounds line')"
  grep -Eq '^# Avg bus bandwidth    : [0-9.e+-]+ ?$' "$file" || fail "$name: no Avg bus bandwidth line"
  [[ $(tail -1 "$file") == "# Collective test concluded: $test" ]] || fail "$name: last line: $(tail -1 "$file")"
}

# run NAME LOGFILE ARGS...: braidrun -n 3 ARGS, exit 0 expected.
run() {
  local name="$1" file="$2"
  shift 2
  checks=$((checks + 1))
  timeout -k 5 180 "$perf/braidrun" -n 3 --timeout 170 "$@" >"$file" 2>"$out/err"
  local rc=$?
  if [[ $rc != 0 ]]; then
    fail "$name: exit $rc"; tail -20 "$out/err"; tail -5 "$file"; return 1
  fi
}

# 1. all_reduce, 8 B .. 1 MiB by 4: 9 rows, checked, with a JSON report.
if run "all_reduce" "$out/ar" "$perf/braid_coll_perf" all_reduce -b 8 -e 1M -f 4 -c 1 -J "$out/ar.json"; then
  shape "all_reduce" "$out/ar" 3 9 all_reduce_perf
  python3 - "$out/ar.json" "$out/ar" <<'EOF' || fail "all_reduce: the JSON report does not match the table"
import json, sys
d = json.load(open(sys.argv[1]))
rows = [l.split() for l in open(sys.argv[2]) if not l.startswith('#')]
assert d["collective"] == "all_reduce" and d["test"] == "all_reduce_perf", d["collective"]
assert d["nranks"] == 3 and [r["rank"] for r in d["ranks"]] == [0, 1, 2]
assert all(r["pid"] > 0 and r["host"] for r in d["ranks"])
assert d["parameters"]["minbytes"] == 8 and d["parameters"]["maxbytes"] == 1 << 20
assert len(d["rows"]) == len(rows) == 9, (len(d["rows"]), len(rows))
for j, t in zip(d["rows"], rows):
    assert j["size"] == int(t[0]) and j["count"] == int(t[1]) and j["type"] == t[2], (j, t)
    assert j["op"] == t[3] and j["root"] == int(t[4]), (j, t)
    for half in ("out_of_place", "in_place"):
        h = j[half]
        assert h["wrong"] == 0 and h["time_us"] > 0 and h["busbw"] >= 0, h
assert d["ok"] is True and d["out_of_bounds"] == 0
assert d["avg_busbw"] >= 0
EOF
fi

# 2. Every collective, every type and every op (the reducing ones), small sizes.
for coll in all_reduce all_gather reduce_scatter broadcast reduce alltoall sendrecv; do
  case "$coll" in
    all_reduce | reduce_scatter | reduce) rows=$((2 * 10 * 5)) ;;
    *) rows=$((2 * 10)) ;;
  esac
  if run "$coll -d all -o all" "$out/$coll" "$perf/braid_coll_perf" "$coll" -b 64 -e 4K -f 64 \
         -d all -o all -n 2 -w 1 -c 2; then
    shape "$coll -d all -o all" "$out/$coll" 3 "$rows" "${coll}_perf"
  fi
done

# 3. Rooted collectives with every root in turn (-r -1), and -i steps.
if run "broadcast -r -1" "$out/bc" "$perf/braid_coll_perf" broadcast -b 1K -e 3K -i 1K -r -1 -d int8; then
  shape "broadcast -r -1" "$out/bc" 3 9 broadcast_perf
  roots=$(grep -v '^#' "$out/bc" | awk '{print $5}' | sort -u | tr '\n' ' ')
  [[ "$roots" == "0 1 2 " ]] || fail "broadcast -r -1: roots '$roots'"
fi

# 4. The symlink forms, -c 0 (#wrong N/A), -a 3.
if run "braid_all_reduce_perf" "$out/sl" "$perf/braid_all_reduce_perf" -b 8 -e 64 -f 8 -c 0 -a 3; then
  shape "braid_all_reduce_perf" "$out/sl" 3 2 all_reduce_perf
  [[ $(grep -v '^#' "$out/sl" | awk '$9 == "N/A" && $13 == "N/A"' | wc -l) == 2 ]] ||
    fail "-c 0: #wrong is not N/A"
fi
if run "braid_sendrecv_perf" "$out/sr" "$perf/braid_sendrecv_perf" -b 4K -e 4K; then
  shape "braid_sendrecv_perf" "$out/sr" 3 1 sendrecv_perf
fi

# 5. Bad command lines: exit 2, nothing on stdout.
for args in "" "nope" "all_reduce -b 1X" "all_reduce -b 2M -e 1M" "all_reduce -o nope" \
            "all_reduce -d nope" "all_reduce -g 2" "all_reduce -a 4"; do
  checks=$((checks + 1))
  # shellcheck disable=SC2086
  timeout -k 2 10 "$perf/braid_coll_perf" $args >"$out/stdout" 2>"$out/err"
  rc=$?
  [[ $rc == 2 ]] || fail "braid_coll_perf $args: exit $rc, 2 expected"
  [[ -s "$out/stdout" ]] && fail "braid_coll_perf $args: wrote to stdout"
done

if [[ $failures -gt 0 ]]; then
  echo "$failures failures in $checks runs"
  exit 1
fi
echo "all $checks runs passed"
