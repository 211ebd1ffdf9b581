#!/usr/bin/env bash
# Provision the emulated CET machine: Bochs 3.0 from Debian trixie (built with --enable-cet; its
# sapphire_rapids CPU model has shadow stacks, IBT and 5-level paging), its BIOS images, and what makes a bootable ISO
# (xorriso, isolinux, syslinux's ldlinux.c32), all extracted into a private prefix with the shared
# libraries they need, and run under trixie's own dynamic loader (Bochs needs glibc 2.38+, this host
# has 2.36). Nothing is installed system-wide. Bochs 3.1 (sid) also has CET, but trixie's 6.12
# kernel dies early in it (shared/FACTS.md section 11): this must stay 3.0.
#
# The mirror is read from this machine's own apt sources (suite-download.sh); no registry host is
# named here. Idempotent: a stamped prefix is reused.
# Prints shell assignments: BOCHS=... (a wrapper taking bochs-bin's arguments) BOCHS_BIOS=...
# VGABIOS=... XORRISO=... ISOLINUX=... (the directory holding isolinux.bin and ldlinux.c32)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$(dirname "$0")/lib.sh"
cache=$criu_cet_cache
provision_lock "bochs"
prefix=$cache/bochs-trixie
roots=(bochs bochsbios vgabios xorriso isolinux syslinux-common)
stamp=$prefix/.complete-$(echo "${roots[*]}" | md5sum | cut -c1-12)

if [ ! -f "$stamp" ]; then
  rm -rf "$prefix"
  mkdir -p "$prefix"
  echo "provision-bochs: downloading Bochs 3.0, its libraries and the ISO tools from trixie" >&2
  # Library packages by dependency from the roots' package names (a GTK closure: bochs-bin links
  # libgtk-3 for its debugger window even when the display is rfb).
  mapfile -t libs < <(bash "$here/suite-download.sh" trixie "$prefix/debs" "libclosure:$(IFS=,; echo "${roots[*]}")")
  bash "$here/suite-download.sh" trixie "$prefix/debs" "${roots[@]}" "${libs[@]}"
  for deb in "$prefix"/debs/*.deb; do dpkg -x "$deb" "$prefix/root"; done
  rm -rf "$prefix/debs"
  version=$(ls "$prefix"/root/usr/share/doc/bochs/changelog.Debian.gz >/dev/null 2>&1 && zcat "$prefix"/root/usr/share/doc/bochs/changelog.Debian.gz | sed -n 1p || true)
  case $version in
    *"(3.0"*) ;;
    *) echo "provision-bochs: expected Bochs 3.0 from trixie, got: $version" >&2; exit 1 ;;
  esac
  touch "$stamp"
fi

root=$prefix/root
libpath=$root/lib/x86_64-linux-gnu:$root/usr/lib/x86_64-linux-gnu
loader=$root/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
mkdir -p "$prefix/bin"
for tool in bochs-bin xorriso; do
  # Written every time (cheap), so the wrapper always names this prefix.
  cat > "$prefix/bin/$tool.tmp" <<WRAP
#!/bin/sh
# Runs trixie's $tool from $prefix through trixie's loader.
LTDL_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu/bochs/plugins" BXSHARE="$root/usr/share/bochs" \\
exec "$loader" --library-path "$libpath" "$root/usr/bin/$tool" "\$@"
WRAP
  chmod +x "$prefix/bin/$tool.tmp"
  mv "$prefix/bin/$tool.tmp" "$prefix/bin/$tool"
done
# Every library the emulator and its rfb display plugin name must resolve inside the prefix.
for f in "$root/usr/bin/bochs-bin" "$root/usr/lib/x86_64-linux-gnu/bochs/plugins/libbx_rfb_gui.so" "$root/usr/bin/xorriso"; do
  missing=$("$loader" --library-path "$libpath" --list "$f" 2>&1 | awk '/not found/{print $1}' | tr '\n' ' ')
  if [ -n "$missing" ]; then
    echo "provision-bochs: $(basename "$f") still misses: $missing" >&2
    exit 1
  fi
done
isolinux=$(dirname "$(find "$root/usr/lib" -name isolinux.bin | sed -n 1p)")
[ -f "$isolinux/isolinux.bin" ] && [ -f "$root/usr/lib/syslinux/modules/bios/ldlinux.c32" ] \
  || { echo "provision-bochs: isolinux.bin or ldlinux.c32 missing in $root" >&2; exit 1; }
echo "BOCHS=$prefix/bin/bochs-bin"
echo "BOCHS_BIOS=$root/usr/share/bochs/BIOS-bochs-latest"
echo "VGABIOS=$root/usr/share/vgabios/vgabios.bin"
echo "XORRISO=$prefix/bin/xorriso"
echo "ISOLINUX=$isolinux"
echo "LDLINUX=$root/usr/lib/syslinux/modules/bios/ldlinux.c32"
