#!/usr/bin/env bash
# Provision the container runtimes the containers suite drives, into private prefixes, by package
# name (tests/provision/suite-download.sh reads the mirror from this machine's apt sources):
#
#   PREFIX/trixie    runc and crun from Debian trixie (with libseccomp2, libcap2, libyajl2,
#                    libsystemd0, libcriu2, libprotobuf-c1 and trixie's libc6). The host runs
#                    bookworm; trixie's binaries need glibc 2.38+, so PREFIX/bin/runc and crun are
#                    copies whose ELF interpreter and rpath patchelf rewrote to trixie's loader and
#                    libraries (not wrapper scripts: runc re-executes itself for `runc init`).
#   PREFIX/bookworm  busybox-static (the containers' root file system), iptables (CRIU's network
#                    lock runs iptables-restore), patchelf, and Podman 4.3.1 with conmon,
#                    containers-common, libgpgme11 and libsubid4; these run on the host's own glibc.
#   PREFIX/bin       runc, crun, criu (CRIU 4.1.1 from tests/provision/criu.sh), iptables-restore
#                    and ip6tables-restore, podman: what the suite puts first on PATH.
#
# Nothing is installed system-wide. Prints PREFIX on stdout (last line). Idempotent: a prefix whose
# stamp matches this script's package list is reused.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$(dirname "$0")/lib.sh"
cache=$criu_cet_cache
provision_lock "containers"
prefix=$cache/containers

trixie_pkgs=(runc crun libseccomp2 libcap2 libyajl2 libsystemd0 libcriu2 libprotobuf-c1 libc6)
bookworm_pkgs=(busybox-static patchelf iptables libip4tc2 libip6tc2 libxtables12 libmnl0
               libnetfilter-conntrack3 libnfnetlink0 libnftnl11 podman conmon
               golang-github-containers-common libgpgme11 libsubid4 libsemanage2 libsepol2)
stamp_text="containers-3 trixie: ${trixie_pkgs[*]} bookworm: ${bookworm_pkgs[*]}"

criu=$(bash "$here/criu.sh" | tail -n 1)

if [ -f "$prefix/stamp" ] && [ "$(cat "$prefix/stamp")" = "$stamp_text" ]; then
  echo "$prefix"
  exit 0
fi

# Build beside the final place and move it in whole, so an interrupted run never leaves a prefix
# that looks complete.
build=$cache/containers.build
rm -rf "$build"
mkdir -p "$build/debs-trixie" "$build/debs-bookworm" "$build/trixie" "$build/bookworm" "$build/bin"
bash "$here/suite-download.sh" trixie "$build/debs-trixie" "${trixie_pkgs[@]}"
bash "$here/suite-download.sh" bookworm "$build/debs-bookworm" "${bookworm_pkgs[@]}"
for deb in "$build"/debs-trixie/*.deb; do dpkg -x "$deb" "$build/trixie"; done
for deb in "$build"/debs-bookworm/*.deb; do dpkg -x "$deb" "$build/bookworm"; done
rm -rf "$build/debs-trixie" "$build/debs-bookworm"

# Paths are written into binaries and wrappers as they will be after the move.
T=$prefix/trixie B=$prefix/bookworm
patchelf() {
  LD_LIBRARY_PATH="$build/bookworm/usr/lib/x86_64-linux-gnu" "$build/bookworm/usr/bin/patchelf" "$@"
}
for tool in runc crun; do
  src=$build/trixie/usr/sbin/$tool
  [ -f "$src" ] || src=$build/trixie/usr/bin/$tool
  cp "$src" "$build/bin/$tool"
  # --force-rpath: DT_RPATH (unlike RUNPATH) also serves the libraries' own dependencies and
  # crun's dlopen of libcriu.so.2.
  patchelf --set-interpreter "$T/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" \
    --force-rpath --set-rpath "$T/lib/x86_64-linux-gnu:$T/usr/lib/x86_64-linux-gnu" "$build/bin/$tool"
done
ln -s "$criu" "$build/bin/criu"

for tool in iptables-restore ip6tables-restore iptables-save ip6tables-save iptables ip6tables; do
  cat > "$build/bin/$tool" <<WRAP
#!/bin/sh
export LD_LIBRARY_PATH="$B/usr/lib/x86_64-linux-gnu\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export XTABLES_LIBDIR="$B/usr/lib/x86_64-linux-gnu/xtables"
exec "$B/usr/sbin/xtables-nft-multi" $tool "\$@"
WRAP
done
cat > "$build/bin/podman" <<WRAP
#!/bin/sh
export LD_LIBRARY_PATH="$B/usr/lib/x86_64-linux-gnu\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
exec "$B/usr/bin/podman" "\$@"
WRAP
chmod +x "$build"/bin/*

echo "$stamp_text" > "$build/stamp"
rm -rf "$prefix"
mv "$build" "$prefix"
"$prefix/bin/runc" --version | sed -n 1p >&2
# (--root: crun creates its state directory even to print its version; /run/crun otherwise)
"$prefix/bin/crun" --root "$prefix/crun-version-probe" --version | sed -n 1p >&2
rm -rf "$prefix/crun-version-probe"
"$prefix/bin/podman" --version >&2
echo "$prefix"
