#!/usr/bin/env python3
"""An independent reader of criu-cet images, written from docs/FORMAT.md alone.

Usage: cetimg.py FILE            print the image as JSON (docs/FORMAT.md section 8)
       cetimg.py --check-vectors DIR
                                 decode every .cetimg under DIR and compare with the .json beside it
       cetimg.py --check-rejects DIR [REJECTS_DIR]
                                 every single-bit flip of every vector must be refused

Needs the `zstandard` package. Exits 1 with a one-line message on a bad image.
"""
import json
import math
import struct
import sys
from pathlib import Path

import zstandard

MAGIC = b"\x89CET\r\n\x1a\n"
FOOTER_MAGIC = b"\x89CETEND\n"
KINDS = {1: "META", 2: "DATA", 3: "RUNS", 4: "BLOCKS"}
MAX_META = 16 << 20


class BadImage(Exception):
    pass


def _crc32c_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283


class Cursor:
    """Decodes META fields (section 3): little-endian, no padding."""

    def __init__(self, data, base):
        self.data, self.pos, self.base = data, 0, base

    def take(self, n, what):
        if self.pos + n > len(self.data):
            raise BadImage(f"META truncated in {what} at offset {self.base + self.pos}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u8(self, what):
        return self.take(1, what)[0]

    def u32(self, what):
        return struct.unpack("<I", self.take(4, what))[0]

    def u64(self, what):
        return struct.unpack("<Q", self.take(8, what))[0]

    def bool(self, what):
        v = self.u8(what)
        if v > 1:
            raise BadImage(f"{what}: bool byte {v} at offset {self.base + self.pos - 1}")
        return v == 1

    def string(self, what, limit):
        n = self.u64(what)
        if n > limit:
            raise BadImage(f"{what}: length {n} over {limit}")
        return self.take(n, what).decode("utf-8")

    def option(self, what, read):
        tag = self.u8(what)
        if tag > 1:
            raise BadImage(f"{what}: option tag {tag}")
        return read() if tag else None


def hexaddr(v):
    return hex(v)


def decode_user_cet(raw):
    bit = lambda n: bool(raw >> n & 1)
    return {
        "raw": hexaddr(raw), "sh_stk_en": bit(0), "wr_shstk_en": bit(1), "endbr_en": bit(2),
        "leg_iw_en": bit(3), "no_track_en": bit(4), "suppress_dis": bit(5), "suppress": bit(10),
        "tracker": bit(11), "legacy_bitmap_base": hexaddr(raw & ~0xFFF & 0xFFFFFFFFFFFFFFFF),
    }


def read_meta(c):
    host = {"kernel_release": c.string("kernel_release", 256)}
    host["user_address_bits"] = c.u8("user_address_bits")
    host["cpu_virtual_bits"] = c.u8("cpu_virtual_bits")
    host["la57"] = c.bool("la57")
    host["cet"] = {k: c.bool(k) for k in ("cpu_shstk", "cpu_ibt", "kernel_shstk", "kernel_ibt")}
    bits, lo, hi = host["user_address_bits"], *((49, 57) if host["la57"] else (1, 48))
    if host["cpu_virtual_bits"] > 57 or bits > 57:
        raise BadImage("host address bits past 57")
    if not lo <= bits <= hi:
        raise BadImage(f"host.user_address_bits {bits} outside {lo}..{hi} for la57 {host['la57']} (FORMAT.md section 3)")
    pid = c.u32("pid")
    comm = c.string("comm", 256)
    threads = []
    for _ in range(c.u64("thread count")):
        tid = c.u32("tid")
        tag = c.u32("shadow_stack")
        if tag == 0:
            ss = "not_available"
        elif tag == 1:
            f, l = c.u64("features"), c.u64("locked")
            ssp = c.option("ssp", lambda: c.u64("ssp"))
            ss = {"available": {"features": f, "locked": l, "ssp": None if ssp is None else hexaddr(ssp)}}
        else:
            raise BadImage(f"shadow_stack variant {tag}")
        tag = c.u32("ibt")
        if tag == 0:
            ibt = "not_available"
        elif tag == 1:
            ibt = {"available": {"user_cet": decode_user_cet(c.u64("user_cet"))}}
        else:
            raise BadImage(f"ibt variant {tag}")
        threads.append({"tid": tid, "shadow_stack": ss, "ibt": ibt})

    def bitmap():
        b = {"base": c.u64("base"), "length": c.u64("length"), "prot": c.u32("prot"),
             "noreserve": c.bool("noreserve"), "dontdump": c.bool("dontdump")}
        found = c.u32("found_by")
        names = ["cet_register", "named_mapping", "caller_address", "fingerprint"]
        if found >= len(names):
            raise BadImage(f"found_by variant {found}")
        b["found_by"] = names[found]
        return b

    bm = c.option("bitmap", bitmap)
    if [t["tid"] for t in threads] != sorted({t["tid"] for t in threads}):
        raise BadImage("thread ids not strictly ascending")
    if bm is not None:
        if bm["prot"] > 7:
            raise BadImage(f"bitmap prot {bm['prot']:#x}: bits above 2 (FORMAT.md section 3)")
        if bm["base"] % 4096 or bm["length"] % 4096 or bm["length"] == 0 or bm["base"] + bm["length"] > 1 << 57:
            raise BadImage("bitmap base/length not aligned, empty, or past 2^57")
    return host, {"pid": pid, "comm": comm, "threads": threads}, bm


def read_namespace(c, nthreads):
    """FORMAT.md section 3, since 1.2: ids in the dumped tree's pid namespace."""
    def ids():
        pid = c.u32("namespace pid")
        tids = [c.u32("namespace tid") for _ in range(c.u64("namespace tid count"))]
        depth = c.u32("namespace depth")
        if pid == 0 or 0 in tids or len(tids) != nthreads or len(set(tids)) != len(tids):
            raise BadImage("namespace ids zero, duplicated, or not one per thread")
        if depth > 32:
            raise BadImage(f"namespace depth {depth} past 32 (FORMAT.md section 3)")
        return {"pid": pid, "tids": tids, "depth": depth}
    return c.option("namespace", ids)


PAGE_CODING = 1  # incompat flag: data pages coded (FORMAT.md 5.1)
def read_criu_run_id(c):
    """FORMAT.md section 3, since 1.3: the CRIU run that dumped; 1 to 64 printable ASCII bytes."""
    def run_id():
        s = c.string("criu_run_id", 64)
        if not s or not all(0x21 <= ord(ch) <= 0x7e for ch in s):
            raise BadImage(f"criu_run_id {s!r} is not 1 to 64 printable ASCII characters")
        return s
    return c.option("criu_run_id", run_id)


READER_MINOR = 3  # the format version this reader was written for: 1.3


def decode_pages(content, pages, j):
    """FORMAT.md 5.1: each page is a tag byte, then 4096 bytes (0) or its run lengths (1)."""
    out, at = bytearray(), 0
    for p in range(pages):
        if at >= len(content):
            raise BadImage(f"block {j} page {p}: missing")
        tag, at = content[at], at + 1
        if tag == 0:
            if at + 4096 > len(content):
                raise BadImage(f"block {j} page {p}: short")
            out += content[at:at + 4096]
            at += 4096
        elif tag == 1:
            bits, pos, ones, first = 0, 0, False, True
            while pos < 32768:
                n, shift, used = 0, 0, 0
                while True:
                    if at >= len(content) or used == 3:
                        raise BadImage(f"block {j} page {p}: bad run length")
                    b, at, used = content[at], at + 1, used + 1
                    n |= (b & 0x7F) << shift
                    shift += 7
                    if b < 0x80:
                        if used > 1 and b == 0:
                            raise BadImage(f"block {j} page {p}: run length not minimal")
                        break
                if (n == 0 and not first) or n > 32768 - pos:
                    raise BadImage(f"block {j} page {p}: run of {n} bits at bit {pos}")
                if ones:
                    bits |= ((1 << n) - 1) << pos
                pos, ones, first = pos + n, not ones, False
            out += bits.to_bytes(4096, "little")
        else:
            raise BadImage(f"block {j} page {p}: tag {tag}")
    if at != len(content):
        raise BadImage(f"block {j}: bytes after the last page")
    return bytes(out)


MAX_FRAME_WINDOW = 1 << 27  # FORMAT.md section 5


def frame_rules(frame, j):
    """FORMAT.md section 5: the declared window (Window_Descriptor, or Frame_Content_Size for a
    single-segment frame) at most 2^27 bytes; a Dictionary_ID field, when present, is 0."""
    if len(frame) < 5:
        raise BadImage(f"block {j}: a frame header cut short")
    fhd = frame[4]
    single = bool(fhd & 0x20)
    dict_len = (0, 1, 2, 4)[fhd & 3]
    fcs_len = (1 if single else 0, 2, 4, 8)[fhd >> 6]
    at = 5
    window = None
    if not single:
        if len(frame) < 6:
            raise BadImage(f"block {j}: a frame header cut short")
        wd = frame[5]
        base = 1 << (10 + (wd >> 3))
        window = base + (base // 8) * (wd & 7)
        at = 6
    if len(frame) < at + dict_len + fcs_len:
        raise BadImage(f"block {j}: a frame header cut short")
    dict_id = int.from_bytes(frame[at:at + dict_len], "little")
    if dict_id:
        raise BadImage(f"block {j}: a frame naming dictionary {dict_id} (FORMAT.md section 5)")
    at += dict_len
    if window is None:
        window = int.from_bytes(frame[at:at + fcs_len], "little") + (256 if fcs_len == 2 else 0)
    if window > MAX_FRAME_WINDOW:
        raise BadImage(f"block {j}: a frame declaring a {window}-byte window, more than 2^27")


def decode(data):
    n = len(data)
    if n < 96:
        raise BadImage(f"file of {n} bytes is shorter than header and footer")
    h = data[:64]
    if h[:8] != MAGIC:
        raise BadImage("bad header magic")
    if struct.unpack_from("<I", h, 60)[0] != crc32c(h[:60]):
        raise BadImage("header checksum mismatch")
    major, minor, header_size, incompat, compat, page_size, block_pages = struct.unpack_from("<HHIQQII", h, 8)
    if major != 1:
        raise BadImage(f"unsupported major version {major}.{minor}")
    if incompat & ~PAGE_CODING:
        raise BadImage(f"unknown incompatible flags {incompat:#x}")
    if header_size != 64 or page_size != 4096 or not 1 <= block_pages <= 256:
        raise BadImage("bad header_size, page_size or block_pages")

    f = data[n - 32:]
    if f[:8] != FOOTER_MAGIC:
        raise BadImage("no footer: truncated or unfinished")
    table_offset, count = struct.unpack_from("<QI", f, 8)
    if count > 64 or table_offset + 32 * count != n - 32:
        raise BadImage("footer does not locate the section table")
    table = data[table_offset:n - 32]
    if struct.unpack_from("<I", f, 28)[0] != crc32c(f[:28], crc32c(table)):
        raise BadImage("section table checksum mismatch")
    sections, expect = {}, 64
    for i in range(count):
        kind, flags, off, length, crc, _ = struct.unpack_from("<IIQQII", table, 32 * i)
        if off != expect or off + length > table_offset:
            raise BadImage(f"section {i} is not contiguous")
        expect = off + length
        if crc32c(data[off:off + length]) != crc:
            raise BadImage(f"section {i} checksum mismatch")
        if kind in KINDS:
            if KINDS[kind] in sections:
                raise BadImage(f"second {KINDS[kind]} section")
            sections[KINDS[kind]] = (off, length)
        elif flags & 1:
            raise BadImage(f"unknown required section kind {kind}")
    if expect != table_offset or len(sections) != 4:
        raise BadImage("sections do not cover the file, or one is missing")

    moff, mlen = sections["META"]
    if mlen > MAX_META:
        raise BadImage("META too long")
    c = Cursor(data[moff:moff + mlen], moff)
    host, process, bitmap = read_meta(c)
    namespace = read_namespace(c, len(process["threads"])) if minor >= 2 else None
    criu_run_id = read_criu_run_id(c) if minor >= 3 else None
    if c.pos != mlen and minor <= READER_MINOR:
        raise BadImage("trailing bytes in META")

    roff, rlen = sections["RUNS"]
    if rlen % 32:
        raise BadImage("RUNS length not a multiple of 32")
    bitmap_pages = bitmap["length"] // 4096 if bitmap else 0
    runs, prev_end, dpages, opages = [], 0, 0, 0
    for i in range(rlen // 32):
        page, cnt, kind, reserved, first = struct.unpack_from("<QQIIQ", data, roff + 32 * i)
        if cnt == 0 or page < prev_end or page + cnt > bitmap_pages or kind not in (1, 2) or reserved:
            raise BadImage(f"run {i} is empty, unsorted, overlapping, outside the bitmap or of bad kind")
        if first != (dpages if kind == 2 else 0):
            raise BadImage(f"run {i} first_data_page {first}")
        runs.append((page, cnt, kind, first))
        if kind == 2:
            dpages += cnt
        else:
            opages += cnt
        prev_end = page + cnt

    doff, dlen = sections["DATA"]
    boff, blen = sections["BLOCKS"]
    nblocks = math.ceil(dpages / block_pages)
    if blen != 16 * nblocks:
        raise BadImage("BLOCKS length does not match the data pages")
    blocks, pos = [], 0
    for j in range(nblocks):
        off, clen, raw_crc = struct.unpack_from("<QII", data, boff + 16 * j)
        if off != pos or clen == 0:
            raise BadImage(f"block {j} offset or length")
        pos += clen
        blocks.append((off, clen, raw_crc))
    if pos != dlen:
        raise BadImage("blocks do not fill the DATA section")

    cache = {}

    def block(j):
        if j not in cache:
            off, clen, raw_crc = blocks[j]
            pages = min(block_pages, dpages - j * block_pages)
            content_len = pages * (4097 if incompat & PAGE_CODING else 4096)
            frame = data[doff + off:doff + off + clen]
            if len(frame) >= 4 and int.from_bytes(frame[:4], "little") & 0xFFFFFFF0 == 0x184D2A50:
                raise BadImage(f"block {j}: a skippable frame (FORMAT.md section 5)")
            frame_rules(frame, j)
            d = zstandard.ZstdDecompressor().decompressobj()
            try:
                content = d.decompress(frame)
            except zstandard.ZstdError as e:
                raise BadImage(f"block {j}: {e}")
            if not d.eof or d.unused_data or len(content) > content_len:
                raise BadImage(f"block {j}: not one frame of at most {content_len} bytes")
            if incompat & PAGE_CODING:
                raw = decode_pages(content, pages, j)
            elif len(content) != content_len:
                raise BadImage(f"block {j}: {len(content)} bytes, expected {content_len}")
            else:
                raw = content
            if crc32c(raw) != raw_crc:
                raise BadImage(f"block {j}: content checksum mismatch")
            cache.clear()
            cache[j] = raw
        return cache[j]

    out_runs = []
    for page, cnt, kind, first in runs:
        r = {"offset": hexaddr(page * 4096), "pages": cnt, "kind": "data" if kind == 2 else "ones",
             "covers": f"{hexaddr(page << 27)}-{hexaddr((page + cnt) << 27)}"}
        if kind == 2:
            pages = []
            for d in range(first, first + cnt):
                j, k = divmod(d, block_pages)
                pages.append(block(j)[k * 4096:(k + 1) * 4096].hex())
            r["data"] = pages
        out_runs.append(r)

    summary = {
        "coverage_bits": (bitmap["length"].bit_length() - 1 + 15) if bitmap else 0,
        "address_bits_needed": ((bitmap["base"] + bitmap["length"] - 1).bit_length()) if bitmap else 0,
        "populated_code_end": hexaddr(prev_end << 27),
        "runs": len(runs), "ones_pages": opages, "data_pages": dpages, "blocks": nblocks, "data_bytes": dlen,
    }
    if bitmap:
        bitmap["base"] = hexaddr(bitmap["base"])
    return {"format_version": f"{major}.{minor}", "host": host, "process": process, "bitmap": bitmap,
            "namespace": namespace, "criu_run_id": criu_run_id, "summary": summary, "runs": out_runs}


def check_vectors(directory):
    images = sorted(Path(directory).rglob("*.cetimg"))
    if not images:
        print(f"no vectors in {directory}", file=sys.stderr)
        return 1
    failed = 0
    for img in images:
        expected = json.loads(img.with_suffix(".json").read_text())
        try:
            got = decode(img.read_bytes())
        except BadImage as e:
            got = f"error: {e}"
        ok = got == expected
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {img.relative_to(directory)}")
    print(f"python-reader: {len(images) - failed} passed, {failed} failed")
    return 1 if failed else 0


def check_rejects(directory, forged=None):
    """Every single-bit flip (low and high bit of every byte) of every vector must be refused, and
    every file in `forged` (tests/rejects: each breaks one rule a flip cannot reach)."""
    failed = total = 0
    for img in sorted(Path(forged).glob("*.cetimg")) if forged else []:
        total += 1
        try:
            decode(img.read_bytes())
        except BadImage as e:
            print(f"ok   {img.name}: {e}")
            continue
        failed += 1
        print(f"FAIL {img.name}: accepted")
    for img in sorted(Path(directory).rglob("*.cetimg")):
        good = img.read_bytes()
        for at in range(len(good)):
            for mask in (0x01, 0x80):
                bad = bytearray(good)
                bad[at] ^= mask
                total += 1
                try:
                    decode(bytes(bad))
                except BadImage:
                    continue
                failed += 1
                print(f"FAIL {img.name}: flipping byte {at} with {mask:#x} was accepted")
    print(f"python-reader-flips: {total - failed} passed, {failed} failed")
    return 1 if failed or not total else 0


def main(argv):
    if len(argv) == 3 and argv[1] == "--check-vectors":
        return check_vectors(argv[2])
    if len(argv) in (3, 4) and argv[1] == "--check-rejects":
        return check_rejects(*argv[2:])
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        doc = decode(Path(argv[1]).read_bytes())
    except (BadImage, OSError) as e:
        print(f"{argv[1]}: {e}", file=sys.stderr)
        return 1
    json.dump(doc, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
