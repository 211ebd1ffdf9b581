#!/usr/bin/env bash
# kbuild.sh KVER: a Debian trixie build root for out-of-tree modules of kernel KVER (the emulated
# CET guest's test-only module, tests/emulated/cet_ibt_test): trixie's gcc-14, binutils, make, a
# shell and core tools, and linux-headers-KVER, extracted from their packages into a private
# directory that tests run with chroot (the modules must be built by the compiler the kernel was,
# and this host's is older). Nothing is installed system-wide. The mirror is read from this
# machine's own apt sources (suite-download.sh). Idempotent: a stamped root is reused.
# Prints shell assignments: KBUILD_ROOT=... (the root) KBUILD_DIR=... (the headers, inside it)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
kver=${1:?usage: kbuild.sh KVER (e.g. 6.12.117+deb13-amd64)}
. "$(dirname "$0")/lib.sh"
cache=$criu_cet_cache
provision_lock "kbuild-$kver"
prefix=$cache/kbuild-$kver
base=${kver%-amd64}
pkgs=(
  "linux-headers-$kver" "linux-headers-$base-common" "linux-kbuild-$base"
  gcc-14 gcc-14-base gcc-14-x86-64-linux-gnu cpp-14 cpp-14-x86-64-linux-gnu libgcc-14-dev libcc1-0
  libgomp1 libitm1 libatomic1 libasan8 liblsan0 libtsan2 libubsan1 libhwasan0 libquadmath0 libisl23
  libmpc3 libmpfr6 libgmp10 libstdc++6 libgcc-s1
  binutils binutils-common binutils-x86-64-linux-gnu libbinutils libctf-nobfd0 libctf0 libgprofng0
  libsframe1 libjansson4 libzstd1 zlib1g libelf1t64 liblzma5 libbz2-1.0 libssl3t64
  libc6 libc6-dev libc-dev-bin linux-libc-dev libcrypt-dev libcrypt1 rpcsvc-proto
  make dash bash libtinfo6 coreutils sed grep mawk findutils diffutils
  libacl1 libattr1 libselinux1 libpcre2-8-0 libcap2
)
stamp=$prefix/.complete-$(echo "${pkgs[*]}" | md5sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
  rm -rf "$prefix"
  mkdir -p "$prefix/root/usr/bin" "$prefix/root/usr/lib" "$prefix/root/usr/lib64" "$prefix/root/usr/sbin"
  echo "provision-kbuild: downloading trixie's gcc-14 and linux-headers-$kver" >&2
  bash "$here/suite-download.sh" trixie "$prefix/debs" "${pkgs[@]}"
  r=$prefix/root
  # trixie's merged /usr: the top-level directories are links, as its base-files makes them.
  for d in bin lib lib64 sbin; do ln -s "usr/$d" "$r/$d"; done
  for deb in "$prefix"/debs/*.deb; do dpkg -x "$deb" "$r"; done
  rm -rf "$prefix/debs"
  # What maintainer scripts would have made: awk (an alternative) and /dev/null (the kernel's
  # Makefiles probe compiler options with -o /dev/null).
  ln -sf mawk "$r/usr/bin/awk"
  mkdir -p "$r/dev" "$r/tmp"
  mknod -m 666 "$r/dev/null" c 1 3
  [ -x "$r/usr/bin/gcc-14" ] && [ -f "$r/usr/src/linux-headers-$kver/Module.symvers" ] \
    || { echo "provision-kbuild: gcc-14 or the headers of $kver missing in $r" >&2; exit 1; }
  touch "$stamp"
fi
echo "KBUILD_ROOT=$prefix/root"
echo "KBUILD_DIR=/usr/src/linux-headers-$kver"
