#!/usr/bin/env bash
# Run a command inside a throw-away qemu VM (software emulation) that has Soft-RoCE devices
# rxe0 (on eth0) and rxe1 (on eth1). See README.md next to this file.
#
#   run_in_vm.sh [OPTIONS] -- CMD [ARGS...]
#   run_in_vm.sh --two [OPTIONS] -- CMD_VM1 [ARGS...] ::: CMD_VM2 [ARGS...]
#   run_in_vm.sh --two [OPTIONS] -- CMD [ARGS...]          (same command in both VMs)
#
# Options:
#   --timeout SEC       hard wall-clock bound for the whole run, boot included (default 600,
#                       env BRAID_SOFTROCE_TIMEOUT); qemu is killed when it expires -> exit 124
#   --boot-timeout SEC  bound for boot-to-command (default 180, env BRAID_SOFTROCE_BOOT_TIMEOUT)
#   --log FILE          also append the command's output (and harness messages) to FILE
#   --share DIR         extra writable directory at the same path inside the VM (repeatable);
#                       the current directory is always shared writable
#   --env NAME          pass one more environment variable through (repeatable)
#   --mem MIB           guest memory (default 3072 for one VM, 2048 each for --two)
#   --smp N             vCPUs (default 2 for one VM, 1 each for --two)
#   --two               two VMs joined by two point-to-point links (see README.md)
#
# Exit code: the command's own exit code (with --two: 0 only if both commands exited 0, else the
# first nonzero of VM1, VM2); 124 when --timeout expired; 125 when the VM died while the command
# ran; 77 when the VM could not be started at all (no qemu/kernel, boot failed or took longer than
# the boot bound): callers must treat 77 as SKIPPED, never as a pass.
#
# Inside the VM: host root read-only (9p), tmpfs on /tmp /run /var/tmp /dev/shm, the current
# directory and every --share writable at the same path, and so is every tree the command
# needs that lies under /tmp, /var/tmp, /run or /dev/shm on the host (this harness's
# checkout, each argument naming an existing path, each LD_LIBRARY_PATH entry); eth0 10.77.0.N/24 + rxe0, eth1
# 10.78.0.N/24 + rxe1 (N = 1, or 2 for the second VM). The command gets PATH, LD_LIBRARY_PATH,
# HOME, USER, LOGNAME, LANG, LC_ALL, TZ, TERM, every BRAID_*, RDMAV_*, IBV_*, GTEST_* variable,
# and BRAID_IN_VM=1 BRAID_VM_INDEX BRAID_VM_IP0/1 BRAID_VM_PEER_IP0/1.
#
# Environment knobs: BRAID_SOFTROCE_CACHE (kernel/initramfs cache, default
# /var/cache/braid-softroce), BRAID_SOFTROCE_NO_SETUP=1 (never run setup.sh automatically),
# BRAID_SOFTROCE_KEEP=1 (keep the work dir with console.log), BRAID_SOFTROCE_APPEND (extra
# kernel args), BRAID_SOFTROCE_QEMU_ARGS (extra qemu args), BRAID_SOFTROCE_ROOT_CACHE (9p cache
# mode of the read-only root, default loose; "none" disables).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${BRAID_SOFTROCE_CACHE:-/var/cache/braid-softroce}
TIMEOUT=${BRAID_SOFTROCE_TIMEOUT:-600}
BOOT_TIMEOUT=${BRAID_SOFTROCE_BOOT_TIMEOUT:-180}
LOG=
SHARES=()
EXTRA_ENV=()
TWO=0
MEM=
SMP=
# 9p cache mode of the read-only host root ("" = none): caching makes exec of host binaries
# much faster; the writable shares (cwd, --share) are never cached.
case "${BRAID_SOFTROCE_ROOT_CACHE-loose}" in
    ""|none) ROOT_CACHE=;;
    *) ROOT_CACHE=",cache=${BRAID_SOFTROCE_ROOT_CACHE-loose}";;
esac

msg() { printf 'softroce: %s\n' "$*" >&2; [ -n "$LOG" ] && printf 'softroce: %s\n' "$*" >>"$LOG"; return 0; }
skip() { msg "SKIP: $*"; exit 77; }
usage() { awk 'NR>1 && !/^#/{exit} NR>1{sub(/^# ?/,""); print}' "${BASH_SOURCE[0]}" >&2; exit 2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --timeout) TIMEOUT=${2:?}; shift 2;;
        --timeout=*) TIMEOUT=${1#*=}; shift;;
        --boot-timeout) BOOT_TIMEOUT=${2:?}; shift 2;;
        --boot-timeout=*) BOOT_TIMEOUT=${1#*=}; shift;;
        --log) LOG=${2:?}; shift 2;;
        --log=*) LOG=${1#*=}; shift;;
        --share) SHARES+=("${2:?}"); shift 2;;
        --share=*) SHARES+=("${1#*=}"); shift;;
        --env) EXTRA_ENV+=("${2:?}"); shift 2;;
        --env=*) EXTRA_ENV+=("${1#*=}"); shift;;
        --mem) MEM=${2:?}; shift 2;;
        --smp) SMP=${2:?}; shift 2;;
        --two) TWO=1; shift;;
        -h|--help) usage;;
        --) shift; break;;
        *) echo "run_in_vm.sh: unknown option '$1' (did you forget '--'?)" >&2; usage;;
    esac
done
[ $# -gt 0 ] || { echo "run_in_vm.sh: no command given" >&2; usage; }
case "$TIMEOUT$BOOT_TIMEOUT" in *[!0-9]*) echo "run_in_vm.sh: timeouts must be integers" >&2; exit 2;; esac
if [ -n "$LOG" ]; then
    mkdir -p "$(dirname "$LOG")" && : >>"$LOG" || { echo "run_in_vm.sh: cannot write $LOG" >&2; exit 2; }
    LOG=$(cd "$(dirname "$LOG")" && pwd)/$(basename "$LOG")
fi

CMD1=(); CMD2=()
if [ "$TWO" = 1 ]; then
    seen=0
    for a in "$@"; do
        if [ "$seen" = 0 ] && [ "$a" = ":::" ]; then seen=1; continue; fi
        if [ "$seen" = 0 ]; then CMD1+=("$a"); else CMD2+=("$a"); fi
    done
    [ "$seen" = 1 ] || CMD2=("${CMD1[@]}")
    [ ${#CMD1[@]} -gt 0 ] && [ ${#CMD2[@]} -gt 0 ] || { echo "run_in_vm.sh: empty command around ':::'" >&2; exit 2; }
    NVM=2; : "${MEM:=2048}"; : "${SMP:=1}"
else
    CMD1=("$@"); NVM=1; : "${MEM:=3072}"; : "${SMP:=2}"
fi

T0=${EPOCHREALTIME/./}; T0=${T0:0:13}   # ms
now_ms() { local t=${EPOCHREALTIME/./}; echo "${t:0:13}"; }
DEADLINE=$(( T0 + TIMEOUT * 1000 ))

# ------------------------------------------------------------------ prerequisites
ensure_ready() {
    command -v qemu-system-x86_64 >/dev/null 2>&1 && [ -f "$CACHE/kernel.env" ] && return 0
    [ "${BRAID_SOFTROCE_NO_SETUP:-0}" = 1 ] && return 1
    msg "qemu or the VM kernel is missing; running $HERE/setup.sh"
    "$HERE/setup.sh" >&2
}
ensure_ready || skip "cannot prepare the VM (qemu-system-x86_64 missing or $HERE/setup.sh failed; cache $CACHE)"
command -v qemu-system-x86_64 >/dev/null 2>&1 || skip "qemu-system-x86_64 not installed"
# shellcheck disable=SC1091
. "$CACHE/kernel.env" || skip "cannot read $CACHE/kernel.env"
for f in "$VMLINUZ" "$INITRD" "$KMODDIR/modules.dep"; do
    [ -r "$f" ] || skip "missing $f (run $HERE/setup.sh)"
done

# ------------------------------------------------------------------ shares
qopt() { printf '%s' "${1//,/,,}"; }                     # qemu option value escaping
sq() { printf "'%s'" "${1//\'/\'\\\'\'}"; }               # POSIX shell single quoting

CWD_LOGICAL=$PWD
CWD_PHYS=$(pwd -P)
declare -a SHARE_PATHS=()
add_share() {
    local p
    p=$(cd "$1" 2>/dev/null && pwd -P) || { echo "run_in_vm.sh: --share $1: not a directory" >&2; exit 2; }
    case "$p" in
        /) msg "not sharing / writable (the root is already visible read-only)"; return;;
        *$'\n'*) echo "run_in_vm.sh: newline in path $p" >&2; exit 2;;
        /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) msg "not sharing $p"; return;;
    esac
    local q; for q in "${SHARE_PATHS[@]}"; do [ "$q" = "$p" ] && return; done
    SHARE_PATHS+=("$p")
}
add_share "$CWD_PHYS"
for s in "${SHARES[@]}"; do add_share "$s"; done
# The VM mounts fresh tmpfs on /tmp, /var/tmp, /run and /dev/shm, hiding what the host has
# there: a checkout or build tree under /tmp would be missing inside ("gid_index.sh: not
# found"). So every tree below one of them that the command needs is shared at its real
# path: the checkout this harness belongs to (scripts call its other scripts), each
# command argument naming an existing file or directory (build trees, binaries, scripts),
# and each LD_LIBRARY_PATH entry. A tree is the directory right below the masked one
# (/tmp/x for /tmp/x/build/perf/tool), so source and build trees inside it come along.
masked_tree() {   # PATH -> prints the directory to share; fails when none is needed
    local p m rest
    p=$(realpath -e -- "$1" 2>/dev/null) || return 1
    for m in /tmp /var/tmp /run /dev/shm; do
        case "$p" in
            "$m"/*) rest=${p#"$m"/}
                    if [ -d "$m/${rest%%/*}" ]; then echo "$m/${rest%%/*}"; return 0; fi
                    msg "cannot share $p inside the VM (a file directly in $m): move it into a directory"
                    return 1;;
        esac
    done
    return 1
}
share_if_masked() { local t; t=$(masked_tree "$1") && add_share "$t"; return 0; }
share_if_masked "$HERE/../.."
for a in "$@"; do
    case "$a" in ""|-*|*$'\n'*) continue;; esac
    [ -e "$a" ] && share_if_masked "$a"
done
IFS=: read -r -a LD_DIRS <<<"${LD_LIBRARY_PATH:-}"
for a in "${LD_DIRS[@]}"; do [ -n "$a" ] && [ -e "$a" ] && share_if_masked "$a"; done
# parents before children, so nested shares stack correctly
mapfile -t SHARE_PATHS < <(for p in "${SHARE_PATHS[@]}"; do printf '%d\t%s\n' "${#p}" "$p"; done | sort -n | cut -f2-)

# ------------------------------------------------------------------ work dir + cleanup
WORK=$(mktemp -d "${TMPDIR:-/tmp}/braid-softroce.XXXXXX") || skip "cannot create a work directory"
chmod 755 "$WORK"
declare -a QGROUPS=() TAILPIDS=()
CLEANED=0
cleanup() {
    [ "$CLEANED" = 1 ] && return; CLEANED=1
    local g i alive
    for g in "${QGROUPS[@]}"; do kill -TERM -- "-$g" 2>/dev/null; done
    for i in $(seq 1 50); do
        alive=0
        for g in "${QGROUPS[@]}"; do kill -0 -- "-$g" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for g in "${QGROUPS[@]}"; do kill -KILL -- "-$g" 2>/dev/null; done
    # belt and braces: qemu's own pid files
    for i in $(seq 1 "$NVM"); do
        local p; p=$(cat "$WORK/vm$i/qemu.pid" 2>/dev/null) || continue
        if [ -n "$p" ] && grep -q qemu "/proc/$p/comm" 2>/dev/null; then kill -KILL "$p" 2>/dev/null; fi
    done
    # output streams: give them a moment to print the last lines, then stop them
    for i in $(seq 1 30); do
        alive=0
        for g in "${TAILPIDS[@]}"; do kill -0 "$g" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for g in "${TAILPIDS[@]}"; do kill -TERM -- "-$g" 2>/dev/null; done
    for g in "${QGROUPS[@]}" "${TAILPIDS[@]}"; do wait "$g" 2>/dev/null; done
}
on_exit() {
    cleanup
    if [ "${BRAID_SOFTROCE_KEEP:-0}" = 1 ]; then msg "kept work dir $WORK"; else rm -rf "$WORK"; fi
}
trap 'on_exit' EXIT
trap 'msg "interrupted"; cleanup; exit 130' INT
trap 'msg "terminated"; cleanup; exit 143' TERM HUP

# ------------------------------------------------------------------ per-VM control share
ENV_NAMES=(PATH LD_LIBRARY_PATH HOME USER LOGNAME LANG LC_ALL TZ TERM "${EXTRA_ENV[@]}")
mapfile -t -O "${#ENV_NAMES[@]}" ENV_NAMES < <(compgen -e | grep -E '^(BRAID_|RDMAV_|IBV_|GTEST_)' || true)

write_ctl() {   # idx ip0 ip1 peer0 peer1 cmd...
    local i=$1 ip0=$2 ip1=$3 peer0=$4 peer1=$5; shift 5
    local c=$WORK/vm$i n a
    mkdir -p "$c"; chmod 777 "$c"
    : >"$c/out.log"
    {
        echo "KVER=$(sq "$KVER")"
        echo "VM_INDEX=$i"
        echo "IP0=$ip0"; echo "IP1=$ip1"
        echo "ROOT_CACHE=$ROOT_CACHE"
    } >"$c/cfg"
    : >"$c/shares"
    n=0; for a in "${SHARE_PATHS[@]}"; do printf 's%d %s\n' "$n" "$a" >>"$c/shares"; n=$((n+1)); done
    {
        for n in "${ENV_NAMES[@]}"; do
            case "$n" in BRAID_VM_*|BRAID_IN_VM|[0-9]*|*[!A-Za-z0-9_]*|"") continue;; esac
            [ -n "${!n+x}" ] && echo "export $n=$(sq "${!n}")"
        done
        echo "export BRAID_IN_VM=1"
        echo "export BRAID_VM_INDEX=$i"
        echo "export BRAID_VM_IP0=$ip0 BRAID_VM_IP1=$ip1"
        echo "export BRAID_VM_PEER_IP0=$peer0 BRAID_VM_PEER_IP1=$peer1"
        echo "export MODPROBE_OPTIONS='-d /run/braid/kmod'"
    } >"$c/env"
    {
        echo ". /run/braid/ctl/env"
        echo "cd $(sq "$CWD_LOGICAL") 2>/dev/null || cd $(sq "$CWD_PHYS") || { echo $(sq "softroce: cannot cd to $CWD_PHYS inside the VM") >&2; exit 126; }"
        printf 'exec'; for a in "$@"; do printf ' %s' "$(sq "$a")"; done; printf '\n'
    } >"$c/cmd.sh"
    # Stage 1: sourced by the initramfs /init (static busybox in RAM, PATH=/bin, modules already
    # loaded): mounts everything, configures eth0/eth1, switch_roots into the read-only host root.
    cat >"$c/stage1.sh" <<'STAGE1'
C=/ctl
. $C/cfg
tick() { read -r up _ </proc/uptime; echo "braid-stage1: t=$up $*" >/dev/console; }
tick start
O=trans=virtio,version=9p2000.L,msize=512000
mount -t 9p -o $O,ro$ROOT_CACHE hostroot /newroot || fail "cannot mount the host root over 9p"
for d in tmp run var/tmp; do
    mount -t tmpfs -o mode=1777 tmpfs "/newroot/$d" || fail "cannot mount tmpfs on /$d"
done
mkdir -p /newroot/run/braid/ctl "/newroot/run/braid/kmod/lib/modules/$KVER"
mount -t 9p -o $O,ro kmod "/newroot/run/braid/kmod/lib/modules/$KVER" \
    || fail "cannot mount the kernel module share"
# Writable shares at their host paths (parents first).
while read -r tag path; do
    [ -n "$tag" ] || continue
    mkdir -p "/newroot$path" 2>/dev/null
    mount -t 9p -o $O "$tag" "/newroot$path" || fail "cannot mount share $path"
done <$C/shares
tick mounted
hostname "braid-vm$VM_INDEX"
ip link set lo up
n=0
for ip in $IP0 $IP1; do
    i=0; while [ ! -e /sys/class/net/eth$n ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
    # No IPv6 on the rails: its link-local address arrives after DAD at a varying moment and
    # would take a varying place in the rxe GID table; without it the table is the same on
    # every boot (0: the default GID, 1: the IPv4-mapped RoCE v2 GID).
    [ -w /proc/sys/net/ipv6/conf/eth$n/disable_ipv6 ] && echo 1 >/proc/sys/net/ipv6/conf/eth$n/disable_ipv6
    ip addr add "$ip/24" dev eth$n || fail "cannot set $ip on eth$n"
    ip link set eth$n up || fail "cannot bring up eth$n"
    n=$((n+1))
done
tick network
mount --move /ctl /newroot/run/braid/ctl || fail "cannot move the ctl share"
mount --move /dev /newroot/dev
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /newroot/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /newroot/dev/shm
exec switch_root /newroot /bin/sh /run/braid/ctl/stage2.sh
STAGE1
    # Stage 2: runs as PID 1 (the host's /bin/sh) in the read-only host root.
    cat >"$c/stage2.sh" <<'STAGE2'
#!/bin/sh
C=/run/braid/ctl
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
. $C/cfg
tick() { read -r up _ </proc/uptime; echo "braid-stage2: t=$up $*" >/dev/console; }
tick start
bootfail() {
    echo "$*" >$C/bootfail
    echo "BRAID-STAGE2-FAIL: $*" >/dev/console
    sync; echo o >/proc/sysrq-trigger; sleep 5; echo b >/proc/sysrq-trigger; sleep 60
}
# The host root has no modules for the guest kernel: on-demand loads (tc netem, ...) go through
# modprobe -d on the extracted module tree, for the kernel's helper and for MODPROBE_OPTIONS users.
printf '#!/bin/sh\nexec /usr/sbin/modprobe -d /run/braid/kmod "$@"\n' >/run/braid/modprobe
chmod 755 /run/braid/modprobe
echo /run/braid/modprobe >/proc/sys/kernel/modprobe
[ -d /sys/module/rdma_rxe ] || modprobe -d /run/braid/kmod rdma_rxe || bootfail "modprobe rdma_rxe failed"
rdma link add rxe0 type rxe netdev eth0 || bootfail "rdma link add rxe0 failed"
rdma link add rxe1 type rxe netdev eth1 || bootfail "rdma link add rxe1 failed"
tick rxe added
i=0
while [ $i -lt 100 ]; do
    read -r s0 </sys/class/infiniband/rxe0/ports/1/state
    read -r s1 </sys/class/infiniband/rxe1/ports/1/state
    case "$s0 $s1" in *ACTIVE*ACTIVE*) break;; esac
    sleep 0.1; i=$((i+1))
done
[ $i -lt 100 ] || bootfail "rxe ports not ACTIVE: rxe0 '$s0' rxe1 '$s1'"
read -r up _ </proc/uptime
echo "$up" >$C/started
env -i /bin/sh $C/cmd.sh </dev/null >>$C/out.log 2>&1
rc=$?
tick "command exited rc=$rc"
echo $rc >$C/rc.tmp && mv $C/rc.tmp $C/rc
sync
echo o >/proc/sysrq-trigger
sleep 5
echo b >/proc/sysrq-trigger
sleep 60
STAGE2
    chmod 755 "$c/stage2.sh"
}

# ------------------------------------------------------------------ qemu launch
port_busy() { ss -Htan 2>/dev/null | awk '{print $4}' | grep -qE "[:.]$1\$"; }
free_port() {
    local p i
    for i in $(seq 1 200); do
        p=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
        port_busy "$p" || { echo "$p"; return 0; }
    done
    return 1
}

launch_vm() {   # idx netdev0 netdev1
    local i=$1 nd0=$2 nd1=$3 c=$WORK/vm$1 s=0 a
    local -a args=(
        -name "braid-softroce-vm$i"
        -accel tcg,thread=multi -cpu max -smp "$SMP" -m "$MEM"
        -nodefaults -no-user-config -display none -monitor none -no-reboot
        -serial "file:$c/console.log"
        -pidfile "$c/qemu.pid"
        -kernel "${VMLINUX:-$VMLINUZ}" -initrd "$INITRD"
        -append "console=ttyS0 panic=-1 loglevel=4 mitigations=off nokaslr random.trust_cpu=on tsc=reliable no_timer_check 8250.nr_uarts=1 ${BRAID_SOFTROCE_APPEND:-}"
        -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"
        -virtfs "local,path=$(qopt "$c"),mount_tag=ctl,security_model=none,multidevs=remap"
        -virtfs "local,path=$(qopt "$KMODDIR"),mount_tag=kmod,security_model=none,readonly=on,multidevs=remap"
    )
    # shellcheck disable=SC2206
    [ -n "${BRAID_SOFTROCE_QEMU_ARGS:-}" ] && args+=(${BRAID_SOFTROCE_QEMU_ARGS})
    for a in "${SHARE_PATHS[@]}"; do
        args+=(-virtfs "local,path=$(qopt "$a"),mount_tag=s$s,security_model=none,multidevs=remap")
        s=$((s+1))
    done
    args+=(-netdev "$nd0,id=n0" -device "virtio-net-pci,netdev=n0,mac=52:54:00:77:00:0$i"
           -netdev "$nd1,id=n1" -device "virtio-net-pci,netdev=n1,mac=52:54:00:78:00:0$i")
    # setsid + timeout: own process group (killed as a whole by cleanup); the outer timeout is a
    # last resort that bounds qemu even if this script is SIGKILLed.
    setsid timeout -k 5 $(( TIMEOUT + 30 )) qemu-system-x86_64 "${args[@]}" \
        </dev/null >"$c/qemu.log" 2>&1 &
    QGROUPS+=($!)
    QPID[$i]=$!
    QSTART[$i]=$(now_ms)
}

stream_out() {  # idx prefix: stream the guest's out.log (written live over 9p) to stdout/--log
    local c=$WORK/vm$1 pre=$2
    # own process group (setsid) so cleanup can kill the whole pipeline; tail exits by itself
    # shortly after qemu is gone (--pid).
    setsid bash -c 'tail -n +1 -s 0.3 -F --pid="$1" "$2" 2>/dev/null | sed -u "s/^/$3/" |
                    if [ -n "$4" ]; then tee -a "$4"; else cat; fi' \
        _ "${QPID[$1]}" "$c/out.log" "$pre" "$LOG" &
    TAILPIDS+=($!)
}

declare -a QPID=() QSTART=()
if [ "$NVM" = 1 ]; then
    write_ctl 1 10.77.0.1 10.78.0.1 10.77.0.1 10.78.0.1 "${CMD1[@]}"
    # Both NICs on their own otherwise empty qemu hub: no traffic leaves the VM.
    launch_vm 1 "hubport,hubid=0" "hubport,hubid=1"
    stream_out 1 ""
else
    write_ctl 1 10.77.0.1 10.78.0.1 10.77.0.2 10.78.0.2 "${CMD1[@]}"
    write_ctl 2 10.77.0.2 10.78.0.2 10.77.0.1 10.78.0.1 "${CMD2[@]}"
    ok=0
    for attempt in 1 2 3; do
        P0=$(free_port) && P1=$(free_port) && [ "$P0" != "$P1" ] || continue
        launch_vm 1 "socket,listen=127.0.0.1:$P0" "socket,listen=127.0.0.1:$P1"
        for k in $(seq 1 100); do
            if port_busy "$P0" && port_busy "$P1"; then ok=1; break; fi
            kill -0 "${QPID[1]}" 2>/dev/null || break
            sleep 0.1
        done
        [ "$ok" = 1 ] && break
        msg "VM1 did not listen on 127.0.0.1:$P0/$P1 (attempt $attempt)"
        kill -KILL -- "-${QPID[1]}" 2>/dev/null; wait "${QPID[1]}" 2>/dev/null
    done
    [ "$ok" = 1 ] || { tail -n 5 "$WORK/vm1/qemu.log" >&2; skip "could not start VM1 with socket links"; }
    launch_vm 2 "socket,connect=127.0.0.1:$P0" "socket,connect=127.0.0.1:$P1"
    msg "two VMs: links on 127.0.0.1:$P0 (rail0) and 127.0.0.1:$P1 (rail1)"
    stream_out 1 "[vm1] "
    stream_out 2 "[vm2] "
fi

# ------------------------------------------------------------------ supervise
declare -a STARTED=() DONE=() RC=()
boot_failed=
timed_out=0
while :; do
    alldone=1
    for i in $(seq 1 "$NVM"); do
        c=$WORK/vm$i
        if [ -z "${STARTED[$i]:-}" ] && [ -s "$c/started" ]; then
            STARTED[$i]=1
            t=$(( $(now_ms) - QSTART[i] ))
            msg "vm$i booted to command in $((t/1000)).$(( (t%1000)/100 )) s (guest uptime $(cut -d' ' -f1 "$c/started") s)"
        fi
        if [ -f "$c/bootfail" ]; then boot_failed="vm$i: $(cat "$c/bootfail")"; fi
        if [ -z "${DONE[$i]:-}" ]; then
            if [ -s "$c/rc" ]; then
                DONE[$i]=1; RC[$i]=$(cat "$c/rc")
            elif ! kill -0 "${QPID[$i]}" 2>/dev/null; then
                DONE[$i]=1
                if [ -z "${STARTED[$i]:-}" ]; then
                    boot_failed=${boot_failed:-"vm$i: qemu exited before the command started"}
                else
                    RC[$i]=125; msg "vm$i died while the command was running"
                fi
            else
                alldone=0
            fi
        fi
    done
    [ -n "$boot_failed" ] && break
    [ "$alldone" = 1 ] && break
    t=$(now_ms)
    for i in $(seq 1 "$NVM"); do
        if [ -z "${STARTED[$i]:-}" ] && [ $(( t - QSTART[i] )) -gt $(( BOOT_TIMEOUT * 1000 )) ]; then
            boot_failed="vm$i: boot did not reach the command within $BOOT_TIMEOUT s"
        fi
    done
    [ -n "$boot_failed" ] && break
    if [ "$t" -gt "$DEADLINE" ]; then timed_out=1; break; fi
    sleep 0.2
done

# Let each qemu power itself off (bounded), then make sure nothing is left.
if [ "$timed_out" = 0 ] && [ -z "$boot_failed" ]; then
    for i in $(seq 1 "$NVM"); do
        for k in $(seq 1 50); do kill -0 "${QPID[$i]}" 2>/dev/null || break; sleep 0.2; done
    done
fi
cleanup

if [ -n "$boot_failed" ]; then
    for i in $(seq 1 "$NVM"); do
        echo "---- vm$i console (last lines) ----" >&2
        tail -n 25 "$WORK/vm$i/console.log" >&2 2>/dev/null
        tail -n 5 "$WORK/vm$i/qemu.log" >&2 2>/dev/null; echo >&2
    done
    skip "VM did not start: $boot_failed"
fi
if [ "$timed_out" = 1 ]; then
    msg "TIMEOUT: killed the VM(s) after $TIMEOUT s"
    exit 124
fi
if [ "$NVM" = 1 ]; then
    msg "exit code ${RC[1]}"
    exit "${RC[1]}"
fi
msg "exit codes: vm1=${RC[1]} vm2=${RC[2]}"
[ "${RC[1]}" != 0 ] && exit "${RC[1]}"
exit "${RC[2]}"
