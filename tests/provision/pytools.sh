#!/usr/bin/env bash
# A private Python venv for the test tools that need packages from PyPI: the independent reader
# (tests/reader/cetimg.py) needs `zstandard`. Nothing system-wide. Idempotent.
# Prints: PYTOOLS_PYTHON=...
set -euo pipefail
. "$(dirname "$0")/lib.sh"
provision_lock pytools
prefix=$criu_cet_cache/pytools
pkgs=(zstandard)
stamp=$prefix/.complete-$(echo "${pkgs[*]}" | md5sum | cut -c1-12)
if [ ! -f "$stamp" ]; then
  rm -rf "$prefix"
  python3 -m venv "$prefix"
  "$prefix/bin/pip" install --quiet --disable-pip-version-check "${pkgs[@]}" >&2
  touch "$stamp"
fi
echo "PYTOOLS_PYTHON=$prefix/bin/python3"
