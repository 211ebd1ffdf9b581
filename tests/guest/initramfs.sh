# Helpers for the busybox initramfs that the guest harnesses (tests/migration, tests/emulated)
# boot. Source this file; every function takes the initramfs root directory first.

# initramfs_busybox ROOT BUSYBOX: busybox-static as /bin/busybox, and the usual mount points.
initramfs_busybox() {
  mkdir -p "$1/bin" "$1/etc" "$1/proc" "$1/sys" "$1/dev" "$1/tmp" "$1/run"
  cp "$2" "$1/bin/busybox"
  cp "$(dirname "${BASH_SOURCE[0]}")/boot.sh" "$1/etc/guest-boot.sh"
}

# initramfs_criu ROOT CRIU: CRIU's private prefix (the one the wrapper CRIU runs from) at a fixed
# place, /opt/criu (never under the guest's tmpfs /tmp, wherever the host's cache lives), with a
# wrapper /opt/criu/bin/criu naming its own loader and libraries there.
initramfs_criu() {
  local prefix
  prefix=$(dirname "$(dirname "$2")")
  mkdir -p "$1/opt/criu/usr" "$1/opt/criu/bin"
  for d in sbin lib lib64; do [ -d "$prefix/usr/$d" ] && cp -a "$prefix/usr/$d" "$1/opt/criu/usr/"; done
  cat > "$1/opt/criu/bin/criu" <<'WRAP'
#!/bin/sh
exec /opt/criu/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 --library-path /opt/criu/usr/lib/x86_64-linux-gnu \
  /opt/criu/usr/sbin/criu "$@"
WRAP
  chmod +x "$1/opt/criu/bin/criu"
}

# initramfs_libs ROOT FILE...: the host libraries FILE... link (ldd), at the same paths.
initramfs_libs() {
  local r=$1 f lib
  shift
  for f in "$@"; do
    ldd "$f" 2>/dev/null | grep -o '/[^ ]*' | while read -r lib; do
      mkdir -p "$r$(dirname "$lib")"
      cp -L "$lib" "$r$lib"
    done
  done
}

# initramfs_modules ROOT OUT MODULES NAME...: the kernel modules NAME... from the module tree
# MODULES, with their dependencies first (from each module's own .modinfo "depends="), as
# ROOT/OUT/modules/*.ko and the load order in ROOT/OUT/modules.order. A name that is no module is
# built into the kernel and skipped.
initramfs_modules() {
  local r=$1 out=$2 moddir=$3
  shift 3
  mkdir -p "$r/$out/modules"
  python3 - "$moddir" "$r/$out" "$@" <<'PY'
import lzma, os, re, sys
moddir, out, wanted = sys.argv[1], sys.argv[2], sys.argv[3:]
paths = {}
for dirpath, _, files in os.walk(os.path.join(moddir, "kernel")):
    for f in files:
        for ext in (".ko", ".ko.xz"):
            if f.endswith(ext):
                paths[f[: -len(ext)].replace("-", "_")] = os.path.join(dirpath, f)
def content(name):
    data = open(paths[name], "rb").read()
    return lzma.decompress(data) if paths[name].endswith(".xz") else data
def depends(name):
    m = re.search(rb"depends=([^\0]*)\0", content(name))
    return [d.replace("-", "_") for d in m.group(1).decode().split(",") if d] if m else []
order, seen = [], set()
def visit(name):
    if name in seen or name not in paths:  # not a module: built into the kernel
        return
    seen.add(name)
    for d in depends(name):
        visit(d)
    order.append(name)
for w in wanted:
    visit(w)
with open(os.path.join(out, "modules.order"), "w") as f:
    for name in order:
        open(os.path.join(out, "modules", name + ".ko"), "wb").write(content(name))
        f.write(name + ".ko\n")
PY
}

# initramfs_pack ROOT BUSYBOX OUT: ROOT as a gzipped newc cpio archive OUT (busybox's cpio: the
# host may have none).
initramfs_pack() {
  (cd "$1" && find . | "$2" cpio -o -H newc 2>/dev/null | gzip -1) > "$3.tmp"
  mv "$3.tmp" "$3"
}
