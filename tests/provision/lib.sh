# Sourced by the provisioning scripts and the suites (bash).
#
# criu_cet_cache: where everything is provisioned (CRIU_CET_CACHE, else ~/.cache/criu-cet).
# provision_lock NAME: an exclusive lock on the cache entry NAME, held until the calling script
#   exits. Suites that start together (tests/run starts three in the background) then never fill
#   one prefix at once: the second waits, then finds it complete.
# provision_env SCRIPT ARGS...: runs a provisioning script that prints shell assignments and
#   evaluates them; if the script fails, stops the caller with a message naming it (a bare
#   `eval "$(bash SCRIPT)"` would go on with the variables unset).
# debian_mirror: the Debian mirror this machine's own apt sources name (not -security); fails
#   with a message when there is none.
criu_cet_cache=${CRIU_CET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/criu-cet}
provision_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

provision_lock() {
  local fd
  mkdir -p "$criu_cet_cache"
  exec {fd}>"$criu_cet_cache/.lock-$1"
  flock "$fd"
}

provision_env() {
  local out
  out=$(bash "$provision_dir/$1" "${@:2}") || {
    echo "provisioning failed: tests/provision/$* (its own messages are above)" >&2
    exit 1
  }
  eval "$out"
}

debian_mirror() {
  local f mirror=""
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # deb822: the first URIs line of a stanza whose suites are not -security.
    mirror=$(awk '/^URIs:/{u=$2} /^Suites:/{ if ($0 !~ /security/ && u != "") {print u; exit} }' "$f")
    [ -n "$mirror" ] && break
  done
  if [ -z "$mirror" ] && [ -f /etc/apt/sources.list ]; then
    mirror=$(awk '$1=="deb" && $0 !~ /security/ {for(i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)
  fi
  [ -n "$mirror" ] || { echo "no Debian mirror in /etc/apt/sources.list{,.d}" >&2; return 1; }
  echo "$mirror"
}
