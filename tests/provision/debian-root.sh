#!/usr/bin/env bash
# debian-root.sh SUITE: provision a minimal Debian root of SUITE (e.g. trixie), as an install test
# starts from: debootstrap --variant=minbase from the mirror this machine's apt sources name, with
# its apt package lists fetched. debootstrap is Debian's own package, extracted with dpkg -x into
# the prefix (nothing installed system-wide); it runs in a private mount namespace, so the /proc
# and /sys it mounts in the root go away with it even if it fails. The root is read-only from then
# on: tests/package/run mounts an overlay on it and throws the upper layer away. Also holds the
# root's apt archive cache (apt-archives/), which tests bind-mount so packages are fetched once.
# Idempotent (a stamp, and a lock on the prefix). The root's package lists are those of the day it
# was made: once the mirror has moved on from a package a test installs that is not in
# apt-archives/ yet, apt-get fails with 404; delete the prefix to make it again.
# Prints: DEBIAN_ROOT=... DEBIAN_ROOT_APT_CACHE=...
set -euo pipefail
suite=$1
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
provision_lock "debian-root-$suite"
prefix=$criu_cet_cache/debian-root-$suite
if [ ! -f "$prefix/.complete" ]; then
  rm -rf "$prefix/root" "$prefix/debootstrap" "$prefix/debs"
  mirror=$(debian_mirror)
  echo "debian-root: debootstrap of $suite into $prefix/root (a minute or two, once)" >&2
  bash "$here/suite-download.sh" "$suite" "$prefix/debs" debootstrap
  dpkg -x "$prefix"/debs/debootstrap_*.deb "$prefix/debootstrap"
  rm -rf "$prefix/debs"
  DEBOOTSTRAP_DIR=$prefix/debootstrap/usr/share/debootstrap \
    unshare --mount --propagation private \
    "$prefix/debootstrap/usr/sbin/debootstrap" --variant=minbase \
    --keyring=/usr/share/keyrings/debian-archive-keyring.gpg "$suite" "$prefix/root" "$mirror" \
    > "$prefix/debootstrap.log" 2>&1 \
    || { tail -n 20 "$prefix/debootstrap.log" >&2; echo "debian-root: debootstrap failed (log: $prefix/debootstrap.log)" >&2; exit 1; }
  unshare --mount --propagation private chroot "$prefix/root" apt-get update -qq >&2
  # debootstrap's own downloads are not needed again.
  rm -f "$prefix"/root/var/cache/apt/archives/*.deb
  mkdir -p "$prefix/apt-archives/partial"
  touch "$prefix/.complete"
fi
echo "DEBIAN_ROOT=$prefix/root"
echo "DEBIAN_ROOT_APT_CACHE=$prefix/apt-archives"
