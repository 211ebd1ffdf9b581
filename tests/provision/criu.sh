#!/usr/bin/env bash
# Provision CRIU 4.1.1 from Debian trixie into a private prefix, without touching the host's
# packages: the host runs bookworm, whose criu 3.17 cannot handle kernel 6.18, and trixie's criu needs
# glibc 2.38+, so it runs under trixie's own dynamic loader.
#
# The mirror is read from this machine's own apt sources; no registry host is named here.
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

mirror=""
for f in /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] || continue
  # deb822: the first URIs line of a stanza whose suites are not -security.
  mirror=$(awk '/^URIs:/{u=$2} /^Suites:/{ if ($0 !~ /security/ && u != "") {print u; exit} }' "$f")
  [ -n "$mirror" ] && break
done
if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
  mirror=$(awk '$1=="deb" && $0 !~ /security/ {for(i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)
fi
if [ -z "$mirror" ]; then
  echo "provision-criu: no Debian mirror found in /etc/apt/sources.list{,.d}; cannot fetch criu" >&2
  exit 1
fi

work=$cache/apt
mkdir -p "$work/lists/partial" "$work/archives/partial" "$work/debs" "$prefix"
printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s trixie main\n' "$mirror" > "$work/sources.list"
apt_opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
          -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work" -o "APT::Get::List-Cleanup=0"
          -o "Debug::NoLocking=1")
echo "provision-criu: fetching trixie package lists from the machine's mirror" >&2
apt-get "${apt_opts[@]}" update -qq >&2

pkgs=(criu libcompel1 libc6 libgnutls30t64 libnftables1 libnl-3-200 libnl-route-3-200 libprotobuf-c1
      libbsd0 libmd0 libnet1 libuuid1 libnftnl11 libmnl0 libjansson4 libxtables12 libgmp10
      libnettle8t64 libhogweed6t64 libidn2-0 libunistring5 libtasn1-6 libp11-kit0 libffi8 libedit2
      libtinfo6)
(cd "$work/debs" && apt-get "${apt_opts[@]}" download "${pkgs[@]}" >&2)
for deb in "$work"/debs/*.deb; do dpkg -x "$deb" "$prefix"; done

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
