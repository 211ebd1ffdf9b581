#!/usr/bin/env bash
# Provision today's container runtimes for the containers suite into a private prefix of their own
# (beside tests/provision/containers.sh's older ones), by package name, from the mirror this
# machine's apt sources name (tests/provision/suite-download.sh):
#
#   PREFIX/forky   Debian forky: containerd 2.1 (containerd, ctr, containerd-shim-runc-v2), runc 1.3,
#                  crun 1.28 (with libcriu2 4.2, which crun dlopens), Podman 5.8, conmon 2.1 and
#                  netavark (Podman and buildah refuse to start without a network helper),
#                  buildah 1.43, checkpointctl 1.3, Docker 28 (docker.io, docker-cli),
#                  golang-k8s-cri-api-dev (the CRI's api.proto), and the libraries these
#                  link, with forky's libc6.
#   PREFIX/trixie  Debian trixie: docker-registry 2.8 (a local registry the CRI pulls a base image
#                  from, as a node pulls one).
#   PREFIX/bookworm  patchelf 0.14 (forky's patchelf 0.18 writes podman and buildah binaries that
#                  segfault at start when it rewrites interpreter and rpath; 0.14's run).
#   PREFIX/bin     what the suite runs: copies of the cgo and C binaries whose ELF interpreter and
#                  rpath patchelf rewrote to forky's loader and libraries (forky's need glibc 2.38+;
#                  copies, not wrappers: runc re-executes itself for `runc init`), links to the
#                  pure-Go ones, which run on the host's libc.
#   PREFIX/versions  "PACKAGE VERSION" of every package extracted (checkpointctl has no --version).
#   PREFIX/venv    python grpcio and grpcio-tools (PyPI, by name) and PREFIX/cri the CRI client
#                  modules generated from api.proto (runtime.v1, the API the kubelet speaks).
#
# Nothing is installed system-wide; containers.sh's prefix is not touched. Prints PREFIX on stdout
# (last line). Idempotent: a prefix whose stamp matches this script's package list is reused.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$(dirname "$0")/lib.sh"
cache=$criu_cet_cache
provision_lock "containers-forky"
prefix=$cache/containers-forky

forky_pkgs=(containerd runc crun podman conmon netavark buildah checkpointctl docker.io docker-cli
            golang-k8s-cri-api-dev libc6 libstdc++6 libgcc-s1 libcriu2 libprotobuf-c1
            libsubid6 libgpgme45 libassuan9 libgpg-error0 libseccomp2 libsqlite3-0 libglib2.0-0t64
            libsystemd0 libcap2 libcap-ng0 libaudit1 libblake3-0 libjson-c5 libpcre2-8-0 libffi8
            libmount1 libselinux1 libblkid1 libzstd1 liblzma5 liblz4-1 libgcrypt20 libbsd0 libmd0)
trixie_pkgs=(docker-registry)
bookworm_pkgs=(patchelf)
pip_pkgs=(grpcio grpcio-tools)
stamp_text="containers-forky-3 forky: ${forky_pkgs[*]} trixie: ${trixie_pkgs[*]} bookworm: ${bookworm_pkgs[*]} pip: ${pip_pkgs[*]}"

if [ -f "$prefix/stamp" ] && [ "$(cat "$prefix/stamp")" = "$stamp_text" ]; then
  echo "$prefix"
  exit 0
fi

# Built beside the final place and moved in whole, then marked complete (the stamp) once every tool
# started from there, so an interrupted or failed run never leaves a prefix that looks complete.
# Paths written into binaries are those after the move.
build=$cache/containers-forky.build
rm -rf "$build"
mkdir -p "$build/bin" "$build/cri"
for suite in forky trixie bookworm; do
  pkgs=${suite}_pkgs[@]
  mkdir -p "$build/debs-$suite" "$build/$suite"
  bash "$here/suite-download.sh" "$suite" "$build/debs-$suite" "${!pkgs}"
  for deb in "$build/debs-$suite"/*.deb; do
    dpkg -x "$deb" "$build/$suite"
    dpkg-deb -W --showformat='${Package} ${Version}\n' "$deb" >> "$build/versions"
  done
  rm -rf "$build/debs-$suite"
done

F=$prefix/forky
libs="$F/lib/x86_64-linux-gnu:$F/usr/lib/x86_64-linux-gnu"
patchelf() { "$build/bookworm/usr/bin/patchelf" "$@"; }
for tool in usr/sbin/runc usr/bin/crun usr/bin/podman usr/bin/conmon usr/bin/buildah \
            usr/bin/checkpointctl usr/sbin/dockerd; do
  cp "$build/forky/$tool" "$build/bin/"
  # --force-rpath: DT_RPATH (unlike RUNPATH) also serves the libraries' own dependencies and
  # crun's dlopen of libcriu.so.2.
  patchelf --set-interpreter "$F/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2" \
    --force-rpath --set-rpath "$libs" "$build/bin/${tool##*/}"
done
# Pure Go, linked against libc only with symbols the host's glibc has.
for tool in usr/bin/containerd usr/bin/ctr usr/bin/containerd-shim-runc-v2 usr/bin/docker; do
  ln -s "$F/$tool" "$build/bin/${tool##*/}"
done
ln -s "$prefix/trixie/usr/bin/docker-registry" "$build/bin/docker-registry"

python3 -m venv "$build/venv"
"$build/venv/bin/pip" install --quiet --disable-pip-version-check "${pip_pkgs[@]}"
proto=$(dirname "$(find "$build/forky" -path '*/cri-api/pkg/apis/runtime/v1/api.proto' -print -quit)")
"$build/venv/bin/python3" -m grpc_tools.protoc -I "$proto" --python_out="$build/cri" \
  --grpc_python_out="$build/cri" "$proto/api.proto"

rm -rf "$prefix"
mv "$build" "$prefix"
# Check that every tool starts (crun creates its state directory even to print its version).
# (`sed -n 1p`, not `head -n 1`: head's early exit would fail the script under pipefail.)
"$prefix/bin/containerd" --version >&2
"$prefix/bin/runc" --version | sed -n 1p >&2
"$prefix/bin/crun" --root "$prefix/crun-version-probe" --version | sed -n 1p >&2
rm -rf "$prefix/crun-version-probe"
"$prefix/bin/podman" --version >&2
"$prefix/bin/buildah" --version >&2
"$prefix/bin/checkpointctl" --help >/dev/null
"$prefix/bin/dockerd" --version >&2
"$prefix/bin/docker-registry" --version >&2
"$prefix/venv/bin/python3" -c 'import sys; sys.path.insert(0, sys.argv[1]); import api_pb2_grpc' "$prefix/cri"
# Only a prefix whose tools all started is marked complete.
echo "$stamp_text" > "$prefix/stamp"
echo "$prefix"
