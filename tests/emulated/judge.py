#!/usr/bin/env python3
"""Judges what the emulated CET guest (tests/emulated/guest.sh) brought back.

Usage: judge.py OUT_DIR [PYCRIU_PATH]
Prints one line per scenario and, last, "emulated: P/T scenarios passed"; exit status 0 only if
all pass. PYCRIU_PATH (CRIU's own image decoder, tests/provision/pycriu.sh) decodes CRIU's
core-N.img so the plugin's SSP can be compared with CRIU's.
"""
import json
import os
import re
import sys

out = sys.argv[1]
results = []


def verdict(ok, text):
    results.append(ok)
    print(f"scenario {len(results)}: {'PASS' if ok else 'FAIL'} - {text}")


def read(name):
    try:
        with open(os.path.join(out, name)) as f:
            return f.read()
    except OSError:
        return ""


def lines(name, kind):
    """The "KIND key=value ..." lines of a report, as dicts."""
    found = []
    for line in read(name).splitlines():
        words = line.split()
        if words and words[0] == kind:
            found.append(dict(w.split("=", 1) for w in words[1:] if "=" in w))
    return found


def addr(v):
    if v is None:
        return None
    return int(v, 16) if isinstance(v, str) else int(v)


def image_threads(name):
    """tid -> (features, ssp) from `criu-cet decode` JSON."""
    try:
        doc = json.loads(read(name))
    except ValueError:
        return None
    threads = {}
    for t in doc["process"]["threads"]:
        ss = t["shadow_stack"]
        if isinstance(ss, dict) and "available" in ss:
            threads[t["tid"]] = (ss["available"]["features"], addr(ss["available"].get("ssp")))
        else:
            threads[t["tid"]] = (None, None)
    return threads


def compare(report, threads):
    """Every reported thread's SSP and features against an image's; returns (ok, text)."""
    if threads is None:
        return False, "no image"
    parts, ok = [], bool(report)
    for r in report:
        tid, ssp, feat = int(r["tid"]), int(r["ssp"], 16), int(r["features"], 16)
        got = threads.get(tid)
        same = got is not None and got == (feat, ssp)
        ok = ok and same
        shown = f"{got[1]:#x}/{got[0]:#x}" if got and got[1] is not None else str(got)
        parts.append(f"tid {tid} rdssp {ssp:#x} features {feat:#x} -> image {shown}{'' if same else ' MISMATCH'}")
    if len(threads) != len(report):
        ok = False
        parts.append(f"image has {len(threads)} threads, process reported {len(report)}")
    return ok, "; ".join(parts)


# --- scenario 1: criu-cet dump reads a real shadow-stack process --------------------------------
report = lines("s1.report", "thread")
ok, text = compare(report, image_threads("s1.json"))
ok = ok and read("s1.dump.rc").strip() == "0" and all(r["features"] == "0x1" for r in report)
status = read("s1.status").replace("\n", "; ").strip("; ")
good = lines("s1.report", "good")
ok = ok and len(good) == 1
verdict(ok, f"criu-cet dump of a shadow-stack process: {text}; /proc: {status}; "
            f"still enforcing after: {'good path ran' if good else 'NO good path'}")

# --- scenario 2: CRIU 4.2.1 + plugin dump and restore it ------------------------------------------
before = lines("s2.report", "thread")
good = lines("s2.report", "good")
dump_rc, restore_rc = read("s2.dump.rc").strip(), read("s2.restore.rc").strip()
main = before[0] if before else None
good_ok = bool(good) and main is not None and good[-1]["ssp"] == main["ssp"] and good[-1]["features"] == "0x1"
bad = read("s2.bad").strip()
fault = read("s2.fault").strip()
bad_ok = bad == "exited" and "control protection" in fault and "NOT ENFORCED" not in read("s2.report")
stops = []
for log in ("s2/img/dump.log", "s2/img/restore.log"):
    for line in read(log).splitlines():
        if "Error" in line or "FAILED" in line:
            stops.append(f"{log}: {line.strip()}")
ok = dump_rc == "0" and restore_rc == "0" and good_ok and bad_ok
text = (f"CRIU 4.2.1 + plugin: dump rc {dump_rc or '?'}, restore rc {restore_rc or '?'}; "
        f"good path after restore: {('SSP ' + good[-1]['ssp'] + ' (before dump ' + main['ssp'] + ')') if good and main else 'none'}; "
        f"bad return after restore: {bad or 'not tried'}{(' (' + fault.split(']', 1)[-1].strip() + ')') if fault else ''}")
if stops:
    text += "; " + " | ".join(stops[:3])
verdict(ok, text)

# --- scenario 3: the plugin's image and CRIU's core images agree on each thread's SSP -------------
plugin = image_threads("s2.cet.json")
criu_state = {}
if len(sys.argv) > 2:
    sys.path.insert(0, sys.argv[2])
    try:
        import pycriu  # noqa: E402

        imgdir = os.path.join(out, "s2", "img")
        for f in sorted(os.listdir(imgdir)):
            m = re.fullmatch(r"core-(\d+)\.img", f)
            if not m:
                continue
            with open(os.path.join(imgdir, f), "rb") as fh:
                core = pycriu.images.load(fh)["entries"][0]
            cet = core.get("thread_info", {}).get("fpregs", {}).get("xsave", {}).get("cet")
            if cet is not None:
                criu_state[int(m.group(1))] = (int(cet["cet"]), int(cet["ssp"]))
            else:
                criu_state[int(m.group(1))] = (None, None)
    except Exception as e:  # the verdict says what went wrong
        criu_state = {"error": str(e)}
parts, ok = [], bool(plugin) and bool(criu_state) and "error" not in criu_state
for tid, (feat, ssp) in sorted((plugin or {}).items()):
    c = criu_state.get(tid)
    same = c is not None and c == (feat, ssp)
    ok = ok and same
    parts.append(f"tid {tid}: plugin SSP {ssp:#x} features {feat:#x}, CRIU core-{tid}.img "
                 + (f"SSP {c[1]:#x} cet {c[0]:#x}" if c and c[1] is not None else str(c)) + ("" if same else " MISMATCH"))
if plugin is not None and len(plugin) != len([k for k in criu_state if k != "error"]):
    ok = False
verdict(ok, "plugin image vs CRIU's own state: " + ("; ".join(parts) or f"plugin {plugin}, CRIU {criu_state}"))

print(f"emulated: {sum(results)}/{len(results)} scenarios passed")
sys.exit(0 if all(results) else 1)
