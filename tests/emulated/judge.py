#!/usr/bin/env python3
"""Judges what the emulated CET guest (tests/emulated/guest.sh) brought back.

Usage: judge.py OUT_DIR [PYCRIU_PATH]
Prints one line per scenario and, last, "emulated: P/T scenarios passed"; exit status 0 only if
every scenario passed or failed with exactly the known emulator signature below.

Bochs 3.0 loses a task's user CET state (IA32_U_CET, IA32_PL3_SSP) when the kernel switches the
task out and back in: the kernel then finds the CET_USER xstate component in its init state
(WARNING at arch/x86/kernel/fpu/regset.c ssp_get), NT_X86_SHSTK answers ENODEV, and the task's own
rdssp reads 0. Whether that has happened by the time a tracer looks depends on what else ran in
between, so a scenario that needs the SSP of a stopped task passes when the SSP was still there,
is a "known emulator failure" (counted in T but not in P, and not failing the suite) when it
failed with exactly that signature
(the kernel's WARNING, ENODEV, rdssp 0), and fails otherwise.

PYCRIU_PATH (CRIU's own image decoder, tests/provision/pycriu.sh) decodes CRIU's
core-N.img so the plugin's SSP can be compared with CRIU's.
"""
import json
import os
import re
import sys

out = sys.argv[1]
results = []
xfails = []
number = 0


def verdict(ok, text):
    global number
    number += 1
    results.append(ok)
    print(f"scenario {number}: {'PASS' if ok else 'FAIL'} - {text}")


def xfail_verdict(passed, signature, text):
    """A scenario Bochs 3.0's CET_U bug can make fail: a pass counts, a failure with exactly the
    bug's signature is set apart, any other failure is a FAIL."""
    global number
    number += 1
    if passed:
        results.append(True)
        print(f"scenario {number}: PASS - {text}")
    elif signature:
        xfails.append(number)
        print(f"scenario {number}: known emulator failure (Bochs 3.0 drops CET_U state at context switch) - {text}")
    else:
        results.append(False)
        print(f"scenario {number}: FAIL - {text}")


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
        shown = f"SSP {got[1]:#x} features {got[0]:#x}" if got and got[1] is not None else (
            f"SSP none, features {got[0]:#x}" if got else "no such thread")
        parts.append(f"tid {tid} rdssp {ssp:#x} features {feat:#x} -> image {shown}{'' if same else ' MISMATCH'}")
    if len(threads) != len(report):
        ok = False
        parts.append(f"image has {len(threads)} threads, process reported {len(report)}")
    return ok, "; ".join(parts)


dmesg = read("dmesg.txt")
bochs_bug = "WARNING" in dmesg and "ssp_get" in dmesg

# --- scenario 1: the CPU enforces the shadow stack -------------------------------------------------
r0 = lines("s0.report", "thread")
fault = read("s0.fault").strip()
ok = (len(r0) == 1 and r0[0]["features"] == "0x1" and int(r0[0]["ssp"], 16) != 0
      and "control protection" in fault and "near ret" in fault and "NOT ENFORCED" not in read("s0.report"))
verdict(ok, f"shadow stack enabled by arch_prctl: ARCH_SHSTK_STATUS {r0[0]['features'] if r0 else '?'}, "
            f"rdssp {r0[0]['ssp'] if r0 else '?'}; a bad return: {fault.split(']', 1)[-1].strip() or 'NO FAULT'}")

# --- scenario 2: criu-cet dump records the kernel's shadow-stack features --------------------------
report = lines("s1.report", "thread")
threads = image_threads("s1.json")
status = read("s1.status")
locked_none = re.search(r"x86_Thread_features_locked:\s*$", status.strip()) is not None
ok = (read("s1.dump.rc").strip() == "0" and threads is not None and bool(report)
      and all(threads.get(int(r["tid"]), (None,))[0] == int(r["features"], 16) for r in report)
      and len(threads) == len(report) and "shstk" in status)
verdict(ok, f"criu-cet dump of a running shadow-stack process: features "
            f"{', '.join(f'tid {t} {v[0]:#x}' for t, v in (threads or {}).items() if v[0] is not None) or 'none'} "
            f"(ARCH_SHSTK_STATUS {', '.join(r['features'] for r in report) or '?'}; /proc: "
            f"{' '.join(status.split()[1:]) or '?'})")

# --- scenario 3: ... and each thread's SSP as the thread reads it ----------------------------------
ok, text = compare(report, threads)
good = lines("s1.report", "good")
after = good[-1]["ssp"] if good else "?"
signature = (not ok and bochs_bug and threads is not None
             and all(v[1] is None for v in threads.values()) and after == "0")
xfail_verdict(ok, signature, f"{text}; kernel ssp_get WARNING: {'yes' if bochs_bug else 'no'}; "
                             f"the process's own rdssp after it had waited: {after}")

# --- scenario 4: CRIU 4.2.1 + plugin dump and restore it, enforcement after ------------------------
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
        if "Error" in line:
            stops.append(f"{log.split('/')[-1]}: {line.strip()}")
ok = dump_rc == "0" and restore_rc == "0" and good_ok and bad_ok
text = (f"CRIU 4.2.1 + plugin: dump rc {dump_rc or '?'}, restore rc {restore_rc or '?'}; "
        f"good path after restore: {('SSP ' + good[-1]['ssp'] + ' (before dump ' + main['ssp'] + ')') if good and main else 'none'}; "
        f"bad return after restore: {bad or 'not tried'}{(' (' + fault.split(']', 1)[-1].strip() + ')') if fault else ''}")
if stops:
    text += "; where it stopped: " + " | ".join(stops[:3])
signature = dump_rc != "0" and bochs_bug and "cannot write SSP: No such device" in read("s2/img/dump.log")
xfail_verdict(ok, signature, text)

# --- scenario 5: the plugin's image and CRIU agree on each thread's shadow-stack state -------------
plugin = image_threads("s2.cet.json")
criu_state, source = {}, "core-N.img"
imgdir = os.path.join(out, "s2", "img")
if len(sys.argv) > 2 and os.path.isdir(imgdir):
    sys.path.insert(0, sys.argv[2])
    try:
        import pycriu  # noqa: E402

        for f in sorted(os.listdir(imgdir)):
            m = re.fullmatch(r"core-(\d+)\.img", f)
            if not m:
                continue
            with open(os.path.join(imgdir, f), "rb") as fh:
                core = pycriu.images.load(fh)["entries"][0]
            cet = core.get("thread_info", {}).get("fpregs", {}).get("xsave", {}).get("cet")
            criu_state[int(m.group(1))] = (int(cet["cet"]), int(cet["ssp"])) if cet else (None, None)
    except Exception as e:  # the verdict says what went wrong
        criu_state = {"error": str(e)}
if not criu_state:
    # No core image (the dump stopped): CRIU's own reading of the state, from its log
    # ("PID: shstk: cet: C ssp: S", compel's NT_X86_SHSTK read; 0 when the kernel refused).
    source = "CRIU's dump log"
    for m in re.finditer(r"\) (\d+): shstk: cet: (\d+) ssp: (\S+)", read("s2/img/dump.log")):
        criu_state[int(m.group(1))] = (int(m.group(2)), int(m.group(3), 16) if m.group(3).startswith("0x") else int(m.group(3)))
parts, ok = [], bool(plugin) and bool(criu_state) and "error" not in criu_state
for tid, (feat, ssp) in sorted((plugin or {}).items()):
    c = criu_state.get(tid)
    # CRIU writes 0 where the kernel gave no SSP; the plugin records "none".
    same = c is not None and c[0] == feat and (c[1] == ssp or (ssp is None and c[1] == 0))
    ok = ok and same
    parts.append(f"tid {tid}: plugin features {feat:#x} SSP {'none' if ssp is None else hex(ssp)}, "
                 f"CRIU ({source}) " + (f"cet {c[0]:#x} SSP {c[1]:#x}" if c and c[1] is not None else str(c))
                 + ("" if same else " MISMATCH"))
verdict(ok, "plugin image vs CRIU's own state: " + ("; ".join(parts) or f"plugin {plugin}, CRIU {criu_state}"))

passed = sum(results)
total = len(results) + len(xfails)
note = (f"; {len(xfails)} failed with exactly Bochs 3.0's CET_U signature (scenario "
        f"{', '.join(map(str, xfails))}): known emulator failures, which do not fail the suite") if xfails else ""
print(f"emulated: {passed}/{total} scenarios passed{note}")
sys.exit(0 if all(results) else 1)
