#!/usr/bin/env bash
# suite-download.sh SUITE DEST PKG...: downloads the named packages of a Debian suite into DEST,
# from the mirror this machine's own apt sources name, through a private apt state directory (the
# host's apt configuration is not touched). With PKG "resolve:NAME", prints the package NAME's
# first versioned dependency instead (e.g. resolve:linux-image-amd64); with "libclosure:NAME,NAME..."
# prints the library packages (lib*, without -data/-common) that NAME... depend on, recursively.
set -euo pipefail
suite=$1 dest=$2
shift 2
. "$(dirname "$0")/lib.sh"
cache=$criu_cet_cache
provision_lock "apt-$suite"

mirror=$(debian_mirror)

work=$cache/apt-$suite
mkdir -p "$work/lists/partial" "$work/archives/partial" "$dest"
printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n' "$mirror" "$suite" > "$work/sources.list"
opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
      -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work" -o "APT::Get::List-Cleanup=0"
      -o "Debug::NoLocking=1")
# Package lists are fetched once a day at most.
if [ -z "$(find "$work/lists" -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null | sed -n 1p)" ]; then
  echo "suite-download: fetching $suite package lists from the machine's mirror" >&2
  apt-get "${opts[@]}" update -qq >&2
fi
pkgs=()
for p in "$@"; do
  case $p in
    resolve:*) apt-cache "${opts[@]}" depends "${p#resolve:}" | awk '/Depends: [a-z]/{print $2; exit}'; exit 0 ;;
    libclosure:*)
      # shellcheck disable=SC2046
      apt-cache "${opts[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
          --no-replaces --no-enhances $(echo "${p#libclosure:}" | tr ',' ' ') \
        | grep -E '^lib' | grep -vE -- '-(data|common|bin|dev)$' | sort -u
      exit 0 ;;
    *) pkgs+=("$p") ;;
  esac
done
cd "$dest" && apt-get "${opts[@]}" download "${pkgs[@]}" >&2 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || true
for p in "${pkgs[@]}"; do
  ls "$dest"/"${p}"_*.deb >/dev/null 2>&1 || { echo "suite-download: $p was not downloaded" >&2; exit 1; }
done
