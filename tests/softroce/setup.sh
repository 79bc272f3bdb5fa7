#!/usr/bin/env bash
# Idempotent installer for the Soft-RoCE VM harness (see README.md next to this file).
#
#  * installs (apt-get) whatever is missing of: qemu-system-x86 busybox-static rdma-core
#    ibverbs-utils perftest iproute2 kmod (plus cpio-free tooling: busybox builds the initramfs)
#  * downloads the Debian kernel that linux-image-amd64 depends on WITHOUT installing it
#    (apt-get download + dpkg -x into the cache), runs depmod on the extracted tree
#  * builds a tiny busybox initramfs in the cache (rebuilt only when its inputs change)
#
# Cache directory: $BRAID_SOFTROCE_CACHE (default /var/cache/braid-softroce).
# Result: $CACHE/kernel.env, sourced by run_in_vm.sh:
#   KVER=...  VMLINUZ=... (bzImage)  VMLINUX=... (uncompressed ELF for PVH boot, may be empty)
#   KMODDIR=... (the lib/modules/$KVER dir)  INITRD=...
#
# Exit codes: 0 ready, 1 failed (message on stderr).
set -euo pipefail

CACHE=${BRAID_SOFTROCE_CACHE:-/var/cache/braid-softroce}
PKGS=(qemu-system-x86 busybox-static rdma-core ibverbs-utils perftest iproute2 kmod)
# Modules loaded from the initramfs (dependencies are resolved with modprobe); others are loaded
# on demand inside the VM from the extracted module tree (modprobe -d).
INITRD_MODS=(virtio_pci 9pnet_virtio 9p virtio_net rdma_rxe rdma_ucm)
APT_LOCK_OPTS=(-o DPkg::Lock::Timeout=600 -o Acquire::Retries=3)

log() { printf 'softroce-setup: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO=(sudo -n); fi
fi
asroot() { "${SUDO[@]}" "$@"; }

export DEBIAN_FRONTEND=noninteractive

# Wait (bounded) for another apt/dpkg to release its locks. apt-get itself waits for the dpkg
# frontend lock with DPkg::Lock::Timeout, but not for the lists lock used by `apt-get update`.
wait_apt_locks() {
    local i
    for i in $(seq 1 600); do
        if ! fuser /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock \
                /var/cache/apt/archives/lock >/dev/null 2>&1; then
            return 0
        fi
        [ "$i" = 1 ] && log "waiting for another apt/dpkg to finish (up to 600 s)..."
        sleep 1
    done
    log "apt/dpkg lock still held after 600 s; trying anyway"
}

APT_UPDATED=0
apt_update() {
    [ "$APT_UPDATED" = 1 ] && return 0
    log "apt-get update"
    local try
    for try in 1 2 3 4 5 6; do
        wait_apt_locks
        if asroot apt-get "${APT_LOCK_OPTS[@]}" -q update >&2; then APT_UPDATED=1; return 0; fi
        log "apt-get update failed (attempt $try; another apt may hold the lists lock); retrying in 20 s"
        sleep 20
    done
    die "apt-get update failed"
}

lists_present() { compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; }

# ---------------------------------------------------------------- packages
missing=()
for p in "${PKGS[@]}"; do
    st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$st" = installed ] || missing+=("$p")
done
# fuser (psmisc) is only used for nicer lock waiting; not required.
if [ "${#missing[@]}" -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || [ "${#SUDO[@]}" -gt 0 ] || die "need root to install: ${missing[*]}"
    log "installing: ${missing[*]}"
    lists_present || apt_update
    # Update only if some package has no candidate with the current lists.
    for p in "${missing[@]}"; do
        if ! apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [0-9]'; then apt_update; break; fi
    done
    wait_apt_locks
    if ! asroot apt-get "${APT_LOCK_OPTS[@]}" -q -y --no-install-recommends install "${missing[@]}" >&2; then
        # Stale lists (a package version vanished from the mirror): refresh once and retry.
        apt_update
        asroot apt-get "${APT_LOCK_OPTS[@]}" -q -y --no-install-recommends install "${missing[@]}" >&2 \
            || die "apt-get install ${missing[*]} failed"
    fi
fi
for b in qemu-system-x86_64 busybox depmod modprobe; do
    command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || [ -x "/sbin/$b" ] || die "$b not found after install"
done
DEPMOD=$(command -v depmod || echo /usr/sbin/depmod)
MODPROBE=$(command -v modprobe || echo /usr/sbin/modprobe)
BUSYBOX=$(command -v busybox)

# ---------------------------------------------------------------- kernel
asroot mkdir -p "$CACHE"
[ -w "$CACHE" ] || asroot chown "$(id -u):$(id -g)" "$CACHE"
exec 9>"$CACHE/.setup.lock"
flock -w 900 9 || die "could not lock $CACHE/.setup.lock"

resolve_kpkg() {
    # The linux-image-6.1*-amd64 package that the linux-image-amd64 metapackage depends on.
    apt-cache depends linux-image-amd64 2>/dev/null \
        | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n1
}
KPKG=$(resolve_kpkg || true)
if [ -z "$KPKG" ]; then
    # Maybe no lists yet; refresh once.
    if [ "$(id -u)" -eq 0 ] || [ "${#SUDO[@]}" -gt 0 ]; then apt_update; KPKG=$(resolve_kpkg || true); fi
fi
if [ -z "$KPKG" ]; then
    # Offline fallback: reuse an already extracted kernel.
    ex=$(ls -d "$CACHE"/kernel-*/ 2>/dev/null | sort -V | tail -n1 || true)
    [ -n "$ex" ] || die "cannot resolve the kernel package linux-image-amd64 depends on"
    KPKG=linux-image-${ex#"$CACHE"/kernel-}; KPKG=${KPKG%/}
    log "apt cannot resolve linux-image-amd64; reusing $KPKG from cache"
fi
case "$KPKG" in linux-image-6.1*-amd64) ;; *) log "note: kernel package is $KPKG (expected linux-image-6.1*-amd64)";; esac
KVER=${KPKG#linux-image-}
KROOT=$CACHE/kernel-$KVER

if [ ! -f "$KROOT/.extracted" ]; then
    deb=$(ls "$CACHE/${KPKG}"_*.deb 2>/dev/null | sort -V | tail -n1 || true)
    if [ -z "$deb" ]; then
        log "downloading $KPKG (not installing it)"
        tmpd=$(mktemp -d "$CACHE/.dl.XXXXXX")
        chmod 755 "$tmpd"   # lets apt's _apt sandbox user write there
        dlopts=(); [ "$(id -u)" -eq 0 ] && dlopts=(-o APT::Sandbox::User=root)
        if ! (cd "$tmpd" && apt-get "${dlopts[@]}" -q download "$KPKG" >&2); then
            rm -rf "$tmpd"
            # Stale package lists (the kernel ABI moved on): refresh and start over once, since
            # the package linux-image-amd64 depends on may have changed.
            [ "${BRAID_SOFTROCE_SETUP_RERUN:-0}" = 1 ] && die "apt-get download $KPKG failed"
            apt_update
            export BRAID_SOFTROCE_SETUP_RERUN=1
            exec "$0" "$@"
        fi
        mv "$tmpd"/"${KPKG}"_*.deb "$CACHE"/
        rm -rf "$tmpd"
        deb=$(ls "$CACHE/${KPKG}"_*.deb | sort -V | tail -n1)
    fi
    log "extracting $(basename "$deb")"
    rm -rf "$KROOT" "$KROOT.tmp"
    mkdir -p "$KROOT.tmp"
    dpkg -x "$deb" "$KROOT.tmp"
    # Module directory: /lib/modules or /usr/lib/modules depending on packaging.
    md=$(ls -d "$KROOT.tmp"/lib/modules/"$KVER" "$KROOT.tmp"/usr/lib/modules/"$KVER" 2>/dev/null | head -n1 || true)
    [ -n "$md" ] || die "no lib/modules/$KVER in $deb"
    if [ "$md" != "$KROOT.tmp/lib/modules/$KVER" ]; then
        mkdir -p "$KROOT.tmp/lib/modules"; mv "$md" "$KROOT.tmp/lib/modules/$KVER"
    fi
    "$DEPMOD" -b "$KROOT.tmp" "$KVER" || die "depmod failed"
    mv "$KROOT.tmp" "$KROOT"
    touch "$KROOT/.extracted"
    rm -f "$deb"    # re-downloadable; the extracted tree is what the VM uses
fi
VMLINUZ=$KROOT/boot/vmlinuz-$KVER
KMODDIR=$KROOT/lib/modules/$KVER
[ -f "$VMLINUZ" ] || die "missing $VMLINUZ"
[ -f "$KMODDIR/modules.dep" ] || "$DEPMOD" -b "$KROOT" "$KVER"

# Uncompressed ELF vmlinux for qemu's PVH boot: skips the in-guest decompression of the bzImage,
# which costs several seconds under software emulation. Falls back to the bzImage when absent.
VMLINUX=$KROOT/vmlinux-$KVER
extract_vmlinux() {
    local magic dec off
    for magic in xz zstd gzip; do
        case $magic in
            xz) pat=$'\xfd7zXZ'; dec=(xz -dc --single-stream);;
            zstd) pat=$'\x28\xb5\x2f\xfd'; dec=(zstd -qdc);;
            gzip) pat=$'\x1f\x8b\x08'; dec=(gzip -dc);;
        esac
        command -v "${dec[0]}" >/dev/null 2>&1 || continue
        for off in $(LC_ALL=C grep -abo "$pat" "$VMLINUZ" 2>/dev/null | head -n 3 | cut -d: -f1); do
            tail -c +$((off + 1)) "$VMLINUZ" | "${dec[@]}" >"$VMLINUX.tmp" 2>/dev/null
            if [ "$(head -c 4 "$VMLINUX.tmp" 2>/dev/null | od -An -c | tr -d ' ')" = '177ELF' ]; then
                mv "$VMLINUX.tmp" "$VMLINUX"; return 0
            fi
        done
    done
    rm -f "$VMLINUX.tmp"; return 1
}
if [ ! -s "$VMLINUX" ] && [ ! -e "$VMLINUX.none" ]; then
    # PVH entry point needed (CONFIG_PVH); Debian's amd64 kernels have it.
    if grep -q '^CONFIG_PVH=y' "$KROOT/boot/config-$KVER" 2>/dev/null && extract_vmlinux; then
        log "extracted PVH-bootable $(basename "$VMLINUX")"
    else
        log "no PVH-bootable vmlinux could be extracted; booting the bzImage (slower)"
        touch "$VMLINUX.none"
    fi
fi
[ -s "$VMLINUX" ] || VMLINUX=

# ---------------------------------------------------------------- initramfs
# /init of the initramfs: load the modules (virtio, 9p, virtio_net, rdma_rxe, rdma_ucm) from RAM,
# mount the per-run control share and hand over to the stage-1 script that run_in_vm.sh writes
# there (it mounts the host root read-only and switch_roots into it). Everything up to
# switch_root runs on the static busybox in RAM: far faster than exec'ing host binaries over 9p.
INIT_SCRIPT=$(cat <<'EOF'
#!/bin/busybox sh
# braid softroce initramfs /init
/bin/busybox mkdir -p /proc /sys /dev /ctl /newroot
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() {
    echo "BRAID-INIT-FAIL: $*" >/dev/console
    echo "$*" >/ctl/bootfail 2>/dev/null
    sync; echo o >/proc/sysrq-trigger; sleep 5; echo b >/proc/sysrq-trigger; sleep 60
}
while read -r m; do
    [ -n "$m" ] && { insmod "/modules/$m" || echo "BRAID-INIT: insmod $m failed" >/dev/console; }
done </modules/order
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 ctl /ctl || fail "cannot mount ctl share"
[ -f /ctl/stage1.sh ] || fail "no stage1.sh in the ctl share"
. /ctl/stage1.sh
fail "stage1.sh returned"
EOF
)
INITRD=$CACHE/initramfs-$KVER.cpio.gz
mods=$("$MODPROBE" -d "$KROOT" -S "$KVER" --show-depends -a "${INITRD_MODS[@]}" 2>/dev/null \
        | awk '$1=="insmod"{print $2}' | awk '!seen[$0]++') || true
[ -n "$mods" ] || die "could not resolve initramfs modules (${INITRD_MODS[*]}) in $KROOT"
stamp=$( { printf '%s\n' "$INIT_SCRIPT" "$KVER" "$mods"; sha256sum "$BUSYBOX" | cut -d' ' -f1; \
          for m in $mods; do sha256sum "$m" | cut -d' ' -f1; done; } | sha256sum | cut -d' ' -f1)
if [ ! -f "$INITRD" ] || [ "$(cat "$INITRD.stamp" 2>/dev/null)" != "$stamp" ]; then
    log "building initramfs $INITRD"
    w=$(mktemp -d "$CACHE/.initrd.XXXXXX")
    mkdir -p "$w/bin" "$w/modules" "$w/dev" "$w/proc" "$w/sys" "$w/newroot" "$w/ctl"
    cp "$BUSYBOX" "$w/bin/busybox"
    : > "$w/modules/order"
    for m in $mods; do
        b=$(basename "$m")
        case "$b" in
            *.ko.xz) xz -dc "$m" > "$w/modules/${b%.xz}"; b=${b%.xz};;
            *.ko.zst) zstd -qdc "$m" > "$w/modules/${b%.zst}"; b=${b%.zst};;
            *.ko.gz) gzip -dc "$m" > "$w/modules/${b%.gz}"; b=${b%.gz};;
            *) cp "$m" "$w/modules/$b";;
        esac
        echo "$b" >> "$w/modules/order"
    done
    printf '%s\n' "$INIT_SCRIPT" > "$w/init"
    chmod 755 "$w/init" "$w/bin/busybox"
    (cd "$w" && find . | "$BUSYBOX" cpio -o -H newc 2>/dev/null | gzip -1 > "$INITRD.tmp")
    mv "$INITRD.tmp" "$INITRD"
    echo "$stamp" > "$INITRD.stamp"
    rm -rf "$w"
fi

cat > "$CACHE/kernel.env.tmp" <<EOF
KVER=$KVER
VMLINUZ=$VMLINUZ
VMLINUX=$VMLINUX
KMODDIR=$KMODDIR
INITRD=$INITRD
EOF
mv "$CACHE/kernel.env.tmp" "$CACHE/kernel.env"
log "ready: kernel $KVER, cache $CACHE"
