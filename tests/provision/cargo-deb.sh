#!/usr/bin/env bash
# Provision cargo-deb (the `cargo deb` subcommand that builds the Debian package) from crates.io by
# name, with the pinned dependencies of its own lock file, into a private root under the cache dir
# (not into CARGO_HOME). Idempotent. Prints: CARGO_DEB=...
set -euo pipefail
. "$(dirname "$0")/lib.sh"
version=3.8.0
provision_lock "cargo-deb-$version"
prefix=$criu_cet_cache/cargo-deb-$version
if [ ! -f "$prefix/.complete" ]; then
  rm -rf "$prefix"
  echo "cargo-deb: building cargo-deb $version into $prefix (a few minutes, once)" >&2
  cargo install --quiet --locked --root "$prefix" --version "$version" cargo-deb >&2
  touch "$prefix/.complete"
fi
echo "CARGO_DEB=$prefix/bin/cargo-deb"
