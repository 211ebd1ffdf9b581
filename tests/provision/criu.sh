#!/usr/bin/env bash
# Provision CRIU 4.1.1 from Debian trixie into a private prefix, without touching the host's
# packages: the host runs bookworm, whose criu 3.17 cannot handle kernel 6.18, and trixie's criu needs
# glibc 2.38+, so it runs under trixie's own dynamic loader.
#
# The mirror is read from this machine's own apt sources (suite-download.sh); no registry host is
# named here.
# Prints the path of an executable wrapper `criu` on stdout (last line). Idempotent: a complete
# prefix is reused.
set -euo pipefail

cache=${CRIU_CET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/criu-cet}
prefix=$cache/criu-trixie
wrapper=$prefix/bin/criu
if [ -x "$wrapper" ] && "$wrapper" --version 2>/dev/null | grep -q 'Version: 4\.'; then
  echo "$wrapper"
  exit 0
fi

pkgs=(criu libcompel1 libc6 libgnutls30t64 libnftables1 libnl-3-200 libnl-route-3-200 libprotobuf-c1
      libbsd0 libmd0 libnet1 libuuid1 libnftnl11 libmnl0 libjansson4 libxtables12 libgmp10
      libnettle8t64 libhogweed6t64 libidn2-0 libunistring5 libtasn1-6 libp11-kit0 libffi8 libedit2
      libtinfo6)
debs=$cache/criu-debs
rm -rf "$debs"
bash "$(dirname "$0")/suite-download.sh" trixie "$debs" "${pkgs[@]}"
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
echo "$wrapper"
