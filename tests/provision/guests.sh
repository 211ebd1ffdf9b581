#!/usr/bin/env bash
# Provision what the migration harness boots: QEMU (system emulator, firmware) and busybox-static
# from the machine's own Debian suite, and Debian trixie's kernel (6.12: PAGEMAP_SCAN needs 6.7+),
# extracted into a private prefix (the host's newer qemu-utils conflicts with installing
# qemu-system-x86, and the host keeps its own kernel).
# Idempotent. Prints shell assignments: QEMU=... QEMU_LIBS=... QEMU_DATA=... KERNEL=... MODULES=...
# BUSYBOX=...
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cache=$criu_cet_cache
provision_lock "guests"
prefix=$cache/guests
pkgs=(qemu-system-x86 qemu-system-common qemu-system-data seabios ipxe-qemu busybox-static
      libcapstone4 libfdt1 libpmem1 librdmacm1 libibverbs1 libslirp0 libvdeplug2 libndctl6 libdaxctl1
      libnl-3-200 libnl-route-3-200)
# The stamp names the package list, so a changed list provisions again.
stamp=$prefix/.complete-$(echo "${pkgs[*]} trixie-kernel" | md5sum | cut -c1-12)

if [ ! -f "$stamp" ]; then
  rm -rf "$prefix"
  mkdir -p "$prefix/debs"
  echo "provision-guests: downloading QEMU, a Debian kernel and busybox-static" >&2
  # apt-cache needs current lists; 'apt-get update' is what the machine's apt config allows.
  apt-cache show qemu-system-x86 >/dev/null 2>&1 || apt-get update -qq >&2
  (cd "$prefix/debs" && apt-get download "${pkgs[@]}" >&2)
  kernel_pkg=$(bash "$(dirname "$0")/suite-download.sh" trixie "$prefix/debs" resolve:linux-image-amd64)
  [ -n "$kernel_pkg" ] || { echo "provision-guests: no trixie kernel package found" >&2; exit 1; }
  bash "$(dirname "$0")/suite-download.sh" trixie "$prefix/debs" "$kernel_pkg"
  for deb in "$prefix"/debs/*.deb; do dpkg -x "$deb" "$prefix/root"; done
  rm -rf "$prefix/debs"
  touch "$stamp"
fi

root=$prefix/root
libs=$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu
qemu=$root/usr/bin/qemu-system-x86_64
missing=$(LD_LIBRARY_PATH=$libs ldd "$qemu" | awk '/not found/{print $1}' | tr '\n' ' ')
if [ -n "$missing" ]; then
  echo "provision-guests: qemu-system-x86_64 still misses: $missing" >&2
  exit 1
fi
kernel=$(ls "$root"/boot/vmlinuz-* | sed -n 1p)
modules=$(ls -d "$root"/lib/modules/* "$root"/usr/lib/modules/* 2>/dev/null | sed -n 1p || true)
echo "QEMU=$qemu"
echo "QEMU_LIBS=$libs"
echo "QEMU_DATA=$root/usr/share/qemu:$root/usr/share/seabios"
echo "KERNEL=$kernel"
echo "MODULES=$modules"
echo "BUSYBOX=$root/bin/busybox"
