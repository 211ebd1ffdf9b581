#!/usr/bin/env bash
# Provision CRIU's own image decoder (pycriu, as used by crit) for the host: Debian forky's
# python3-pycriu (CRIU 4.2.1's image definitions, with the x86 shadow-stack state) extracted into a
# private prefix, and python protobuf<5 in a private venv (the package's generated code predates
# protobuf 5). Nothing system-wide. Idempotent. Prints: PYCRIU_PYTHON=... PYCRIU_PATH=...
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$(dirname "$0")/lib.sh"
cache=$criu_cet_cache
provision_lock "pycriu"
prefix=$cache/pycriu-4.2.1
stamp=$prefix/.complete
if [ ! -f "$stamp" ]; then
  rm -rf "$prefix"
  bash "$here/suite-download.sh" forky "$prefix/debs" python3-pycriu
  for deb in "$prefix"/debs/*.deb; do dpkg -x "$deb" "$prefix/root"; done
  rm -rf "$prefix/debs"
  python3 -m venv "$prefix/venv"
  "$prefix/venv/bin/pip" install --quiet --disable-pip-version-check 'protobuf<5'
  touch "$stamp"
fi
echo "PYCRIU_PYTHON=$prefix/venv/bin/python3"
echo "PYCRIU_PATH=$(dirname "$(find "$prefix/root" -type d -name pycriu | sed -n 1p)")"
