#!/usr/bin/env bash
# Before a release: the README's two commands on a machine nobody has touched.
#
#   sudo scripts/fresh-check.sh [--suite trixie|bookworm] [--working-tree] [--keep DIR]
#
# It builds a clean Debian root with mmdebstrap (minbase, plus what Raspberry Pi OS Lite
# has and minbase lacks: python3, sudo, ca-certificates), adds the user pi with
# passwordless sudo (as Raspberry Pi OS does), puts this repository in /home/pi/appliance
# and runs ./scripts/demo.sh, then ./scripts/test.sh, there as pi in a login environment:
# not root, no PYTHONUNBUFFERED, no pip settings, Debian's own python3 (3.13 on Trixie).
#
#   --suite NAME     the Debian release (default trixie)
#   --working-tree   copy the files as they are now (default: the committed HEAD, as a
#                    fresh clone has it)
#   --keep DIR       build the root in DIR (new or empty) and keep it afterwards; a second
#                    look is then: sudo chroot DIR runuser -l pi
#
# The two commands run in a chroot with /proc, /sys (read-only), a private /dev/pts and
# tmpfs on /dev/shm, /run and /tmp mounted.  A chroot, not systemd-nspawn: nspawn wants
# systemd running as the host's init, which containers (CI, the development machines of
# this project) do not have, and neither command starts a service.  The host needs root,
# apt (mmdebstrap is installed when missing), git (for HEAD) and access to the Debian
# mirror and PyPI; the root gets the host's resolv.conf and the certificate authorities
# the host added in /usr/local/share/ca-certificates (a TLS-inspecting proxy's, say).
# It takes 15 to 25 minutes, most of it the test suite.
#
# Exit status: 0 both commands passed; 1 one failed, or the root could not be made; 2 bad usage.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd -P)
MIRROR=http://deb.debian.org/debian
SUITE=trixie
WORKING_TREE=0
KEEP=""

say() { printf 'fresh-check: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }
usage_error() { say "$* (see the top of $0)"; exit 2; }

while [ "$#" -gt 0 ]; do
    case "$1" in
        --suite) [ "$#" -ge 2 ] || usage_error "--suite needs a value"; SUITE=$2; shift 2 ;;
        --working-tree) WORKING_TREE=1; shift ;;
        --keep) [ "$#" -ge 2 ] || usage_error "--keep needs a directory"; KEEP=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) usage_error "unknown option '$1'" ;;
    esac
done
case "$SUITE" in
    bookworm|trixie|forky|sid) ;;
    *) usage_error "--suite must be bookworm, trixie, forky or sid, not '$SUITE'" ;;
esac
[ "$(id -u)" -eq 0 ] || die "building a root file system and chrooting need root: sudo $0"

if ! command -v mmdebstrap >/dev/null 2>&1; then
    say "installing mmdebstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends mmdebstrap
fi

if [ -n "$KEEP" ]; then
    mkdir -p "$KEEP"
    [ -z "$(ls -A "$KEEP")" ] || die "--keep $KEEP is not empty"
    ROOT=$(cd "$KEEP" && pwd -P)
else
    ROOT=$(mktemp -d /var/tmp/fresh-check.XXXXXX)
fi

# Everything mounted under the root, deepest first.
# shellcheck disable=SC2317  # this and cleanup run from the EXIT trap
mounted_under_root() {
    awk -v root="$ROOT/" 'index($2 "/", root) == 1 {print $2}' /proc/self/mounts | sort -r
}

# shellcheck disable=SC2317
cleanup() {
    local target
    while IFS= read -r target; do
        umount "$target" 2>/dev/null || umount -l "$target" || true
    done < <(mounted_under_root)
    if [ -n "$(mounted_under_root)" ]; then
        say "still mounted under $ROOT, so it stays: $(mounted_under_root | tr '\n' ' ')"
        return
    fi
    if [ -z "$KEEP" ]; then
        rm -rf --one-file-system -- "$ROOT"
    else
        say "the root stays in $ROOT"
    fi
}
trap cleanup EXIT

mount_in_root() {   # mount_in_root TARGET mount-arguments...
    local target=$ROOT$1
    shift
    mkdir -p "$target"
    mount "$@" "$target"
}

started=$SECONDS
say "building a clean $SUITE root in $ROOT (mmdebstrap, a few minutes)"
mmdebstrap --variant=minbase --include=python3,sudo,ca-certificates --components=main \
    "$SUITE" "$ROOT" "$MIRROR"
say "root built in $((SECONDS - started)) s"

# The certificate authorities this host added itself: on a network whose proxy re-signs
# TLS, every machine on it needs them (pip would fail otherwise).  Certificates only.
shopt -s nullglob
local_cas=(/usr/local/share/ca-certificates/*.crt)
shopt -u nullglob
if [ "${#local_cas[@]}" -gt 0 ]; then
    cp "${local_cas[@]}" "$ROOT/usr/local/share/ca-certificates/"
    chroot "$ROOT" update-ca-certificates >/dev/null
fi

# What the installed system has that a bare root lacks: name resolution and a few devices.
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
printf '127.0.0.1 localhost\n127.0.1.1 %s\n' "$(hostname)" >"$ROOT/etc/hosts"
for node in "null c 1 3" "zero c 1 5" "full c 1 7" "random c 1 8" "urandom c 1 9" "tty c 5 0"; do
    read -r name kind major minor <<<"$node"
    [ -e "$ROOT/dev/$name" ] || { mknod -m 0666 "$ROOT/dev/$name" "$kind" "$major" "$minor"; }
done
ln -sfn /proc/self/fd "$ROOT/dev/fd"
ln -sfn pts/ptmx "$ROOT/dev/ptmx"

# The owner, as Raspberry Pi OS sets them up: a login with passwordless sudo.
chroot "$ROOT" useradd --create-home --shell /bin/bash --groups sudo pi
printf 'pi ALL=(ALL) NOPASSWD: ALL\n' >"$ROOT/etc/sudoers.d/010_pi-nopasswd"
chmod 0440 "$ROOT/etc/sudoers.d/010_pi-nopasswd"

dest=$ROOT/home/pi/appliance
mkdir -p "$dest"
if [ "$WORKING_TREE" = 1 ]; then
    say "copying the working tree of $REPO"
    tar -C "$REPO" -cf - --exclude=./.git --exclude=./.venv --exclude=./.pytest_cache --exclude=./out \
        --exclude='*.egg-info' --exclude=__pycache__ . | tar -xf - -C "$dest"
else
    command -v git >/dev/null 2>&1 || die "git is needed to take HEAD (or use --working-tree)"
    say "copying HEAD of $REPO ($(git -C "$REPO" rev-parse --short HEAD))"
    git -C "$REPO" archive --format=tar HEAD | tar -xf - -C "$dest"
fi
chroot "$ROOT" chown -R pi:pi /home/pi/appliance

mount_in_root /proc -t proc proc
mount_in_root /sys -t sysfs -o ro sysfs
mount_in_root /dev/pts -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts
mount_in_root /dev/shm -t tmpfs -o mode=1777 tmpfs
mount_in_root /run -t tmpfs -o mode=0755 tmpfs
mount_in_root /tmp -t tmpfs -o mode=1777 tmpfs

# As pi, in a login shell: the environment a person who just logged in has.
as_pi() {
    env -i TERM="${TERM:-dumb}" PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        chroot "$ROOT" runuser -l pi -c "cd ~/appliance && $1"
}

failed=0
for command in ./scripts/demo.sh ./scripts/test.sh; do
    say "running $command as pi"
    began=$SECONDS
    if as_pi "$command"; then
        say "$command passed in $((SECONDS - began)) s"
    else
        say "$command FAILED after $((SECONDS - began)) s"
        failed=1
        break
    fi
done
say "$SUITE ($(chroot "$ROOT" python3 --version)): $([ "$failed" = 0 ] && echo passed || echo FAILED) in $((SECONDS - started)) s"
exit "$failed"
