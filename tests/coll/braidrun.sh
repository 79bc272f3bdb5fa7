#!/usr/bin/env bash
# braidrun, the one-host launcher: each rank gets BRAID_RANK / BRAID_WORLD_SIZE /
# BRAID_LOCAL_RANK / BRAID_STORE (ranks 0..n-1 exactly, one store for all); --tag-output
# prefixes lines; the first failing rank's code is braidrun's and its siblings are killed
# within seconds; --timeout exits 124 naming the ranks left; a missing program exits 127; a
# bad command line exits 2; a rank killed by a signal gives 128+N; SIGTERM to braidrun
# reaches the ranks; --store file makes a directory the ranks see and removes it; --bind-to
# core pins rank r to the r-th CPU braidrun may use.
#
#   tests/coll/braidrun.sh PERF_DIR
# The ranks' shell snippets are single-quoted on purpose: they expand in each rank.
# shellcheck disable=SC2016
set -uo pipefail
perf="${1:?usage: braidrun.sh PERF_DIR}"
braidrun="$perf/braidrun"
failures=0
checks=0
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
check() { checks=$((checks + 1)); }
now() { date +%s%3N; }  # milliseconds
elapsed() { echo $(($(now) - $1)); }
# less_than MS SECONDS
less_than() { (($1 < $2 * 1000)); }

[[ -x "$braidrun" ]] || { echo "FAIL: $braidrun is not built"; exit 1; }

# 1. The environment of 3 ranks.
check
timeout -k 2 20 "$braidrun" -n 3 sh -c \
  'echo "rank=$BRAID_RANK size=$BRAID_WORLD_SIZE local=$BRAID_LOCAL_RANK store=$BRAID_STORE"' \
  >"$out/env" 2>"$out/err"
rc=$?
if [[ $rc != 0 ]]; then
  fail "braidrun -n 3 sh -c echo: exit $rc"; cat "$out/err"
else
  ranks=$(sed -n 's/^rank=\([0-9]*\) .*/\1/p' "$out/env" | sort -n | tr '\n' ' ')
  [[ "$ranks" == "0 1 2 " ]] || fail "ranks seen: '$ranks', '0 1 2 ' expected"
  [[ $(grep -c ' size=3 ' "$out/env") == 3 ]] || fail "BRAID_WORLD_SIZE is not 3 everywhere: $(cat "$out/env")"
  [[ $(awk '{split($1,a,"=");split($3,b,"="); if (a[2]!=b[2]) print}' "$out/env" | wc -l) == 0 ]] ||
    fail "BRAID_LOCAL_RANK differs from BRAID_RANK: $(cat "$out/env")"
  stores=$(sed -n 's/.* store=//p' "$out/env" | sort -u)
  [[ $(echo "$stores" | wc -l) == 1 && "$stores" =~ ^127\.0\.0\.1:[0-9]+$ ]] ||
    fail "BRAID_STORE is not one 127.0.0.1:PORT: '$stores'"
fi

# 1b. The store's port lies below the ephemeral range, where no outgoing connection of
# another process can take it between braidrun's pick and rank 0's bind (it did, under
# ctest -j2: "cannot serve the TCP store on 0.0.0.0:N: already in use").
check
low=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range)
for i in 1 2 3 4 5; do
  p=$(timeout -k 2 20 "$braidrun" -n 1 sh -c 'echo "${BRAID_STORE##*:}"' 2>&1)
  if ! [[ "$p" =~ ^[0-9]+$ ]] || ((p < 10000 || p >= low)); then
    fail "store port '$p' is not in [10000, $low) (below net.ipv4.ip_local_port_range)"
    break
  fi
done

# 2. --tag-output: every line of stdout and stderr carries its rank.
check
timeout -k 2 20 "$braidrun" -n 2 --tag-output sh -c 'echo out$BRAID_RANK; echo err$BRAID_RANK >&2' \
  >"$out/tag" 2>"$out/tagerr"
rc=$?
[[ $rc == 0 ]] || fail "--tag-output: exit $rc"
for r in 0 1; do
  grep -qx "\[$r\] out$r" "$out/tag" || fail "--tag-output: no '[$r] out$r' on stdout: $(cat "$out/tag")"
  grep -qx "\[$r\] err$r" "$out/tagerr" || fail "--tag-output: no '[$r] err$r' on stderr: $(cat "$out/tagerr")"
done

# 3. A rank exiting 3: braidrun exits 3 and kills a sibling sleeping 60 s within seconds.
check
t=$(now)
timeout -k 2 30 "$braidrun" -n 3 sh -c \
  'if [ "$BRAID_RANK" = 1 ]; then sleep 0.3; exit 3; fi; exec sleep 60' >/dev/null 2>"$out/err"
rc=$?
took=$(elapsed "$t")
[[ $rc == 3 ]] || fail "a rank exiting 3: braidrun exited $rc"
less_than "$took" 6 || fail "a rank exiting 3: the sleeping siblings took ${took} ms to go"
grep -q "rank 1 (pid [0-9]*) exited with code 3" "$out/err" ||
  fail "a rank exiting 3: no 'rank 1 (pid P) exited with code 3' in: $(cat "$out/err")"

# 4. A sibling that ignores SIGTERM gets SIGKILL 3 s later.
check
t=$(now)
timeout -k 2 30 "$braidrun" -n 2 sh -c \
  'if [ "$BRAID_RANK" = 0 ]; then sleep 0.3; exit 5; fi; trap "" TERM; exec sleep 60' \
  >/dev/null 2>"$out/err"
rc=$?
took=$(elapsed "$t")
[[ $rc == 5 ]] || fail "SIGTERM ignored: braidrun exited $rc, 5 expected"
less_than "$took" 8 || fail "SIGTERM ignored: the sibling took ${took} ms to be killed"

# 5. --timeout 1 on sleep 30: 124 within a few seconds, naming the ranks.
check
t=$(now)
timeout -k 2 30 "$braidrun" -n 2 --timeout 1 sleep 30 >/dev/null 2>"$out/err"
rc=$?
took=$(elapsed "$t")
[[ $rc == 124 ]] || fail "--timeout 1: exit $rc, 124 expected"
less_than "$took" 5 || fail "--timeout 1: took ${took} ms"
grep -q "ranks still running: 0 (pid [0-9]*) 1 (pid [0-9]*)" "$out/err" ||
  fail "--timeout 1: the message does not name ranks 0 and 1: $(cat "$out/err")"

# 6. A program that does not exist: 127 and a message.
check
timeout -k 2 20 "$braidrun" -n 2 /no/such/program >/dev/null 2>"$out/err"
rc=$?
[[ $rc == 127 ]] || fail "a missing program: exit $rc, 127 expected"
grep -q "cannot execute '/no/such/program'" "$out/err" || fail "a missing program: $(cat "$out/err")"

# 7. A rank killed by SIGKILL: 137, and the signal named.
check
timeout -k 2 20 "$braidrun" -n 2 sh -c 'if [ "$BRAID_RANK" = 1 ]; then kill -9 $$; fi; sleep 30' \
  >/dev/null 2>"$out/err"
rc=$?
[[ $rc == 137 ]] || fail "a rank killed by SIGKILL: exit $rc, 137 expected"
grep -q "rank 1 (pid [0-9]*) was killed by signal SIGKILL" "$out/err" ||
  fail "a rank killed by SIGKILL: $(cat "$out/err")"

# 8. Bad command lines: the usage and 2.
for args in "" "-n 0 true" "-n x true" "-n 2" "-n 2 --store nfs true" "-n 2 --timeout -1 true" \
            "-n 2 --bogus true"; do
  check
  # shellcheck disable=SC2086
  timeout -k 2 10 "$braidrun" $args >"$out/stdout" 2>"$out/err"
  rc=$?
  [[ $rc == 2 ]] || fail "braidrun $args: exit $rc, 2 expected"
  grep -q "usage: braidrun" "$out/err" || fail "braidrun $args: no usage on stderr"
done
# Everything after the program is the program's, flags included.
check
res=$(timeout -k 2 10 "$braidrun" -n 1 echo -n --timeout x 2>&1)
[[ "$res" == "--timeout x" ]] || fail "the program's own flags were not passed untouched: '$res'"

# 9. SIGTERM to braidrun reaches the ranks: 143 (128 + SIGTERM), quickly.
check
timeout -k 2 20 "$braidrun" -n 2 sleep 30 >/dev/null 2>"$out/err" &
pid=$!
sleep 0.5
t=$(now)
kill -TERM "$pid"
wait "$pid"
rc=$?
took=$(elapsed "$t")
[[ $rc == 143 ]] || fail "SIGTERM to braidrun: exit $rc, 143 expected"
less_than "$took" 3 || fail "SIGTERM to braidrun: took ${took} ms"

# 10. --store file: a fresh directory the ranks see, gone afterwards.
check
TMPDIR="$out" timeout -k 2 20 "$braidrun" -n 2 --store file sh -c \
  'd=${BRAID_STORE#file:}; test -d "$d" && touch "$d/key$BRAID_RANK" && echo "$d"' \
  >"$out/file" 2>"$out/err"
rc=$?
[[ $rc == 0 ]] || { fail "--store file: exit $rc"; cat "$out/err"; }
dirs=$(sort -u "$out/file")
if [[ $(echo "$dirs" | wc -l) != 1 || "$dirs" != "$out"/braidrun.* ]]; then
  fail "--store file: not one directory under TMPDIR: '$dirs'"
elif [[ -e "$dirs" ]]; then
  fail "--store file: $dirs is still there after braidrun exited"
fi

# 11. --bind-to core: rank r runs on the r-th CPU of braidrun's own set (modulo its size),
# also when that set is narrowed by taskset; --bind-to none leaves the set as it is;
# --report-bindings says so per rank; a bad value is a usage error.
# Ranks that share stdout write each line in one write(2): an unbuffered Python
# (PYTHONUNBUFFERED=1, as on CI) writes print()'s text and its newline apart, and two
# ranks' lines then interleave ("0,10,1" and "").
cpus_of() { python3 -c 'import os; print(",".join(map(str, sorted(os.sched_getaffinity(0)))))'; }
mine=$(cpus_of)
IFS=, read -r -a cpu <<<"$mine"
check
timeout -k 2 20 "$braidrun" -n 5 --bind-to core --report-bindings sh -c \
  'echo "$BRAID_RANK $(python3 -c "import os; print(\",\".join(map(str, sorted(os.sched_getaffinity(0)))))")"' \
  >"$out/bind" 2>"$out/err"
rc=$?
if [[ $rc != 0 ]]; then
  fail "--bind-to core: exit $rc"; cat "$out/err"
else
  for r in 0 1 2 3 4; do
    want=${cpu[$((r % ${#cpu[@]}))]}
    got=$(awk -v r="$r" '$1 == r {print $2}' "$out/bind")
    [[ "$got" == "$want" ]] || fail "--bind-to core: rank $r runs on CPUs '$got', '$want' expected (braidrun's: $mine)"
    grep -q "^braidrun: rank $r (pid [0-9]*) runs on CPU $want\$" "$out/err" ||
      fail "--report-bindings: no line for rank $r on CPU $want: $(cat "$out/err")"
  done
fi
check
last=${cpu[$((${#cpu[@]} - 1))]}
got=$(timeout -k 2 20 taskset -c "$last" "$braidrun" -n 3 --bind-to core sh -c \
  'python3 -c "import os; os.write(1, (str(sorted(os.sched_getaffinity(0))) + \"\\n\").encode())"' 2>&1 | sort -u)
[[ "$got" == "[$last]" ]] || fail "--bind-to core under taskset -c $last: ranks ran on '$got'"
check
got=$(timeout -k 2 20 "$braidrun" -n 2 --bind-to none sh -c \
  'python3 -c "import os; os.write(1, (\",\".join(map(str, sorted(os.sched_getaffinity(0)))) + \"\\n\").encode())"' 2>&1 | sort -u)
[[ "$got" == "$mine" ]] || fail "--bind-to none: ranks ran on '$got', braidrun's '$mine' expected"
check
timeout -k 2 20 "$braidrun" -n 2 --bind-to socket true >/dev/null 2>"$out/err"
rc=$?
[[ $rc == 2 ]] && grep -q "none or core expected" "$out/err" ||
  fail "--bind-to socket: exit $rc, 2 with 'none or core expected' expected: $(cat "$out/err")"

if [[ $failures -gt 0 ]]; then
  echo "$failures of $checks checks failed"
  exit 1
fi
echo "all $checks checks passed"
