#!/usr/bin/env bash
# criu.sh [4.1.1|4.2.1]: provision CRIU from Debian into a private prefix, without touching the
# host's packages: the host runs bookworm, whose criu 3.17 cannot handle kernel 6.18, and the newer
# criu packages need glibc 2.38+, so each runs under its own suite's dynamic loader.
#   4.1.1 (default): Debian trixie.   4.2.1: Debian forky (adds hook 12 POST_FORKING and restores
#   CET shadow stacks itself).
#
# The mirror is read from this machine's own apt sources (suite-download.sh); no registry host is
# named here.
# Prints the path of an executable wrapper `criu` on stdout (last line). Idempotent: a complete
# prefix is reused.
set -euo pipefail

version=${1:-4.1.1}
case $version in
  4.1.1) suite=trixie libnet=libnet1 ;;
  4.2.1) suite=forky libnet=libnet9 ;;
  *) echo "criu.sh: unknown CRIU version $version (4.1.1 or 4.2.1)" >&2; exit 2 ;;
esac
. "$(dirname "$0")/lib.sh"
cache=$criu_cet_cache
provision_lock "criu-$version"
# 4.1.1 keeps the prefix name earlier releases of this script used.
if [ "$version" = 4.1.1 ]; then prefix=$cache/criu-trixie; else prefix=$cache/criu-$version; fi
wrapper=$prefix/bin/criu
if [ -x "$wrapper" ] && "$wrapper" --version 2>/dev/null | grep "Version: ${version%.*}" >/dev/null; then
  echo "$wrapper"
  exit 0
fi

pkgs=(criu libcompel1 libc6 libgnutls30t64 libnftables1 libnl-3-200 libnl-route-3-200 libprotobuf-c1
      libbsd0 libmd0 "$libnet" libuuid1 libnftnl11 libmnl0 libjansson4 libxtables12 libgmp10
      libnettle8t64 libhogweed6t64 libidn2-0 libunistring5 libtasn1-6 libp11-kit0 libffi8 libedit2
      libtinfo6)
debs=$cache/criu-debs-$version
rm -rf "$debs" "$prefix"
bash "$(dirname "$0")/suite-download.sh" "$suite" "$debs" "${pkgs[@]}"
mkdir -p "$prefix"
for deb in "$debs"/*.deb; do dpkg -x "$deb" "$prefix"; done
rm -rf "$debs"

mkdir -p "$prefix/bin"
cat > "$wrapper.tmp" <<WRAP
#!/bin/sh
exec "$prefix/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" \\
  --library-path "$prefix/lib/x86_64-linux-gnu:$prefix/usr/lib/x86_64-linux-gnu" \\
  "$prefix/usr/sbin/criu" "\$@"
WRAP
chmod +x "$wrapper.tmp"
mv "$wrapper.tmp" "$wrapper"
"$wrapper" --version >&2
"$wrapper" --version | grep "Version: ${version%.*}" >/dev/null || {
  echo "criu.sh: Debian $suite's criu is not $version (the suite moved on?): $("$wrapper" --version | sed -n 1p)" >&2
  exit 1
}
echo "$wrapper"
