"""Zero CRIU's own copy of a bitmap's pages in a checkpoint, so that only the cet plugin can bring
them back at restore.

CRIU 4.x dumps the present pages of a bitmap below 2^47 itself (pagemap-N.img says which pages,
pages-N.img holds them raw). A restore that shows the bitmap intact after this could therefore only
have got it from the plugin's image. The pagemap is decoded with CRIU's own decoder (pycriu, from
Debian's python3-pycriu 4.2.1, which reads CRIU 4.1 and 4.2 pagemaps: tests/provision/pycriu.sh).
The containers and RPC suites both use it (as a command, or imported: `directory`, `archive`).

usage: zero_bitmap_pages.py DIR BASE LEN         (a CRIU image directory, rewritten in place)
       zero_bitmap_pages.py --archive TAR[.GZ] BASE LEN
           (a Podman export, a CRI checkpoint archive, or the CRIU images blob of a containerd
           checkpoint image: a compressed archive is rewritten whole, a plain tar in place, so a
           blob keeps its size and place in containerd's content store)

Prints the number of non-zero pages it zeroed inside [BASE, BASE+LEN).
"""

import io
import os
import re
import sys
import tarfile

import pycriu.images

PE_PARENT = 1 << 0
PE_PRESENT = 1 << 2
PAGE = 4096


def zero_in(pagemap: bytes, pages: bytearray, base: int, length: int) -> int:
    entries = pycriu.images.load(io.BytesIO(pagemap))["entries"]
    offset, zeroed = 0, 0
    for e in entries[1:]:
        # CRIU 4.2 counts pages in nr_pages (64 bits); 4.1 in the field 4.2 calls compat_nr_pages.
        nr = e.get("nr_pages") or e.get("compat_nr_pages", 0)
        if not e["flags"] & PE_PRESENT or e["flags"] & PE_PARENT:
            continue
        for i in range(nr):
            addr = e["vaddr"] + i * PAGE
            at = offset + i * PAGE
            if base <= addr < base + length and any(pages[at : at + PAGE]):
                pages[at : at + PAGE] = bytes(PAGE)
                zeroed += 1
        offset += nr * PAGE
    if offset != len(pages):
        raise ValueError(f"the pagemap describes {offset} bytes of pages, the pages image has {len(pages)}")
    return zeroed


def pagemaps(names):
    """The pagemap images among NAMES (one per dumped process)."""
    for name in names:
        if re.fullmatch(r"(.*/)?pagemap-\d+\.img", name):
            yield name


def directory(path: str, base: int, length: int) -> int:
    total = 0
    for pm in pagemaps(sorted(os.listdir(path))):
        with open(os.path.join(path, pm), "rb") as f:
            raw = f.read()
        pid = pycriu.images.load(io.BytesIO(raw))["entries"][0]["pages_id"]
        pages_path = os.path.join(path, f"pages-{pid}.img")
        with open(pages_path, "rb") as f:
            pages = bytearray(f.read())
        n = zero_in(raw, pages, base, length)
        if n:
            tmp = pages_path + ".tmp"
            with open(tmp, "wb") as f:
                f.write(pages)
            os.replace(tmp, pages_path)
        total += n
    return total


def archive(path: str, base: int, length: int) -> int:
    with tarfile.open(path, "r:*") as src:
        members = [(m, src.extractfile(m).read() if m.isfile() else None) for m in src.getmembers()]
    data = {m.name: d for m, d in members}
    total = 0
    for pm in pagemaps(data):
        pid = pycriu.images.load(io.BytesIO(data[pm]))["entries"][0]["pages_id"]
        pages_name = os.path.join(os.path.dirname(pm), f"pages-{pid}.img")
        pages = bytearray(data[pages_name])
        total += zero_in(data[pm], pages, base, length)
        data[pages_name] = bytes(pages)
    with open(path, "rb") as f:
        compressed = f.read(2) == b"\x1f\x8b"
    if not compressed:
        with open(path, "r+b") as f:
            for m, d in members:
                if d is not None and data[m.name] is not d:
                    f.seek(m.offset_data)
                    f.write(data[m.name])
        return total
    tmp = path + ".tmp"
    with tarfile.open(tmp, "w:gz") as dst:
        for m, _ in members:
            d = data[m.name]
            if d is not None:
                m.size = len(d)
                dst.addfile(m, io.BytesIO(d))
            else:
                dst.addfile(m)
    os.replace(tmp, path)
    return total


def main() -> None:
    args = sys.argv[1:]
    try:
        if len(args) == 4 and args[0] == "--archive":
            print(archive(args[1], int(args[2], 0), int(args[3], 0)))
        elif len(args) == 3:
            print(directory(args[0], int(args[1], 0), int(args[2], 0)))
        else:
            sys.exit(__doc__)
    except ValueError as e:
        sys.exit(f"zero_bitmap_pages: {e}")


if __name__ == "__main__":
    main()
