"""CRIU's RPC, the way runc, crun and Podman drive CRIU: `criu swrk` through the pycriu client.

Run by tests/rpc/run, which provisions Debian's python3-pycriu and protobuf<5 in a venv
(tests/provision/pycriu.sh).

Each scenario starts the fixture as the init of a new pid namespace, as runtimes start a
container's first process (`setsid unshare --pid --fork setsid cet-fixture ...`, stdio on
/dev/null), dumps it through RPC, destroys CRIU's own copy of the bitmap's pages in pages-*.img
(so that only the plugin can bring them back), restores it through RPC detached into a new pid
namespace (`rst_sibling`, as runc does) and takes the restored init's host pid from the RPC
response. It passes when the plugin's restore line names that pid and task 1, and the restored
process reports the very bitmap it had before (place, size, page counts and digest).

The plugin directory reaches the forked `criu swrk` either through CRIU_LIBS_DIR in its
environment or through `opts.config_file` naming a file with a `libdir` line (rpc.proto has no
libdir). A control per CRIU version dumps and restores without the plugin, with CRIU's copy
destroyed the same way, and requires the bitmap to come back damaged: proof that the other
scenarios would fail if the plugin's restore did not run.

Avoided: CRIU 4.1.1 crashes on a CHECK request without options and on a config file with a
`network-lock` line.
"""

import argparse
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pycriu
import pycriu.images

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "criu_images"))
import zero_bitmap_pages  # noqa: E402  (tests/criu_images, shared with the containers suite)

PR_SET_CHILD_SUBREAPER = 36
# A scenario that has not finished in this time is stuck (CRIU has been seen to hang after a
# failed restore); it is reported as a failure, never waited on forever.
SCENARIO_LIMIT_S = 300


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


# --- the fixture's report protocol (plugin/src/fixture.rs) ----------------------------------------

def wait_file(path, limit=60.0):
    end = time.monotonic() + limit
    while True:
        try:
            with open(path) as f:
                text = f.read().strip()
            if text:
                return text
        except FileNotFoundError:
            pass
        if time.monotonic() > end:
            raise Failure(f"no report at {path} within {limit:.0f} s")
        time.sleep(0.005)


def ask(report):
    """A fresh report of the bitmap as the process sees it now."""
    try:
        os.unlink(report)
    except FileNotFoundError:
        pass
    open(report + ".req", "w").close()
    return parse_report(wait_file(report))


def parse_report(text):
    return dict(kv.split("=", 1) for kv in text.split())


def bitmap_view(r):
    return " ".join(f"{k}={r[k]}" for k in ("bitmap", "pages", "ones", "mixed", "digest"))


# --- processes: started here, ended here by pid ---------------------------------------------------

def alive(pid):
    return os.path.exists(f"/proc/{pid}")


def reap(pid):
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def wait_gone(pid, limit=60.0):
    end = time.monotonic() + limit
    while alive(pid):
        reap(pid)
        if time.monotonic() > end:
            raise Failure(f"process {pid} did not go away within {limit:.0f} s")
        time.sleep(0.005)


def end(pid):
    """Ends a process this test started or restored, by pid, and waits until it is gone."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        wait_gone(pid, 10.0)
    except Failure:
        pass


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(w) for w in f.read().split()]
    except FileNotFoundError:
        return []


def nspid(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("NSpid:"):
                return [int(w) for w in line.split()[1:]]
    return []


class PidNamespace:
    """The fixture as the init of a new pid namespace; `pid` is its host pid."""

    def __init__(self, fixture, report, args):
        self.launcher = subprocess.Popen(
            ["setsid", "unshare", "--pid", "--fork", "setsid", fixture, "--report", report] + args,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.report = report
        first = parse_report(wait_file(report))
        check(first.get("pid") == "1", f"the fixture is not its namespace's init: {first}")
        # Down from the launcher (setsid execs unshare in place; unshare forks the init).
        pid = self.launcher.pid
        for _ in range(3):
            kids = children(pid)
            if not kids:
                break
            pid = kids[0]
            if nspid(pid)[-1:] == [1]:
                break
        check(nspid(pid)[-1:] == [1], f"no namespace init below launcher {self.launcher.pid}")
        self.pid = pid

    def reap_after_dump(self):
        """CRIU killed the tree at dump: the launcher exits; wait until the init is gone."""
        self.launcher.wait(timeout=60)
        wait_gone(self.pid)

    def end(self):
        end(self.pid)
        if self.launcher.poll() is None:
            end(self.launcher.pid)
            self.launcher.wait()


# --- CRIU's images: destroy CRIU's own copy of the bitmap -----------------------------------------

def zero_criu_copy(imgs, start, stop):
    """Zeroes, in pages-*.img, every page CRIU stored for [start, stop) (the shared helper of the
    Python suites, tests/criu_images); returns how many held anything but zeros."""
    try:
        return zero_bitmap_pages.directory(imgs, start, stop - start)
    except ValueError as e:
        raise Failure(f"{imgs}: {e}")


# --- one scenario -----------------------------------------------------------------------------

def client(criu, imgs_fd, log, libdir_by):
    """A fresh pycriu client whose forked `criu swrk` finds the plugin as `libdir_by` says."""
    c = pycriu.criu()
    c.use_binary(criu)
    c.opts.images_dir_fd = imgs_fd
    c.opts.log_file = log
    c.opts.log_level = 4
    kind, where = libdir_by
    os.environ.pop("CRIU_LIBS_DIR", None)
    if kind == "env":
        os.environ["CRIU_LIBS_DIR"] = where
    else:
        c.opts.config_file = where
    return c


def scenario(args, version, criu, delivery, plugin=True):
    root = tempfile.mkdtemp(prefix="cet-rpc-")
    imgs, lib = os.path.join(root, "img"), os.path.join(root, "lib")
    os.mkdir(imgs)
    os.mkdir(lib)
    if plugin:
        shutil.copy(args.plugin, os.path.join(lib, "cet_plugin.so"))
    if delivery == "env":
        libdir_by = ("env", lib)
    else:
        conf = os.path.join(root, "criu.conf")
        with open(conf, "w") as f:
            f.write(f"libdir {lib}\n")
        libdir_by = ("config", conf)
    report = os.path.join(root, "r")
    ns, restored, imgs_fd = None, None, os.open(imgs, os.O_DIRECTORY)
    t0 = time.monotonic()
    log = lambda name: open(os.path.join(imgs, name), errors="replace").read()
    try:
        ns = PidNamespace(args.fixture, report, ["--bits", "48", "--ones", "3", "--mixed", "5"])
        before = ask(report)
        check(int(before["pages"]) > 0, f"the fixture populated no bitmap pages: {before}")
        try:
            c = client(criu, imgs_fd, "dump.log", libdir_by)
            c.opts.pid = ns.pid
            c.dump()
        except pycriu.CRIUException as e:
            raise Failure(f"dump failed: {e}; see {imgs}/dump.log")
        ns.reap_after_dump()
        dump_log = log("dump.log")
        if plugin:
            check(f"process {ns.pid} (task 1 in its pid namespace): wrote cet-1.img" in dump_log,
                  f"no plugin dump line for task 1 in {imgs}/dump.log")
            check(os.path.exists(os.path.join(imgs, "cet-1.img")), "no cet-1.img")
            check(not os.path.exists(os.path.join(imgs, f"cet-{ns.pid}.img")),
                  "an image named by the host pid")
        else:
            check("cet:" not in dump_log, "the plugin ran in a dump without it")
        base, length = (int(x, 16) for x in before["bitmap"].split(":"))
        zeroed = zero_criu_copy(imgs, base, base + length)
        check(zeroed == int(before["pages"]),
              f"CRIU's copy held {zeroed} non-zero bitmap pages, the fixture reports {before['pages']}")
        try:
            c = client(criu, imgs_fd, "restore.log", libdir_by)
            c.opts.rst_sibling = True
            resp = c.restore()
        except pycriu.CRIUException as e:
            raise Failure(f"restore failed: {e}; see {imgs}/restore.log")
        restored = resp.pid
        check(restored > 0 and alive(restored), f"the RPC response names pid {restored}, not alive")
        check(nspid(restored)[-1:] == [1], f"restored pid {restored} is not its namespace's init")
        after = ask(report)
        check(after["pid"] == "1", f"the restored process reports {after}")
        rlog = log("restore.log")
        took = time.monotonic() - t0
        if plugin:
            check(f"cet: process {restored} (task 1 in its pid namespace): restored cet-1.img" in rlog,
                  f"no plugin restore line for pid {restored}, task 1 in {imgs}/restore.log")
            check("NOT restored" not in rlog and "failed:" not in rlog, f"plugin errors in {imgs}/restore.log")
            check(bitmap_view(after) == bitmap_view(before),
                  f"bitmap differs: before {bitmap_view(before)}, after {bitmap_view(after)}")
            how = "CRIU_LIBS_DIR" if delivery == "env" else "config file libdir"
            text = (f"CRIU {version}, plugin via {how}: dumped host pid {ns.pid} (task 1), CRIU's copy of "
                    f"{zeroed} bitmap pages destroyed, restored detached as host pid {restored} (from the RPC "
                    f"response): plugin restored cet-1.img, {after['pages']} of {before['pages']} pages back, "
                    f"digest identical ({took:.1f} s)")
        else:
            check("cet:" not in rlog, "the plugin ran in a restore without it")
            check(bitmap_view(after) != bitmap_view(before),
                  "CRIU alone brought back the bitmap whose copy was destroyed: the zeroing proves nothing")
            text = (f"CRIU {version}, control without the plugin: CRIU's copy of {zeroed} bitmap pages "
                    f"destroyed, restored as host pid {restored}: {after['pages']} of {before['pages']} "
                    f"pages back, digest {after['digest']} (was {before['digest']}), as the other "
                    f"scenarios would see it if the plugin's restore did not run ({took:.1f} s)")
        shutil.rmtree(root)
        return text
    except Failure as e:
        raise Failure(f"{e} (kept {root})")
    finally:
        os.environ.pop("CRIU_LIBS_DIR", None)
        os.close(imgs_fd)
        if restored:
            end(restored)
        if ns:
            ns.end()


def on_alarm(signum, frame):
    raise Failure(f"not finished within {SCENARIO_LIMIT_S} s")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fixture", required=True)
    p.add_argument("--plugin", required=True)
    p.add_argument("--criu", action="append", required=True, help="VERSION=PATH of a criu executable")
    args = p.parse_args()
    # Restored trees are our children (rst_sibling); orphans come back to us and are reaped here.
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit(f"rpc: prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")
    signal.signal(signal.SIGALRM, on_alarm)
    passed = total = 0
    for spec in args.criu:
        version, criu = spec.split("=", 1)
        for name, delivery, plugin in (("CRIU_LIBS_DIR", "env", True), ("config file", "config", True),
                                       ("control", "env", False)):
            total += 1
            signal.alarm(SCENARIO_LIMIT_S)
            try:
                line = scenario(args, version, criu, delivery, plugin)
                passed += 1
                print(f"scenario {total}: PASS - {line}", flush=True)
            except Failure as e:
                print(f"scenario {total}: FAIL - CRIU {version}, {name}: {e}", flush=True)
            finally:
                signal.alarm(0)
    print(f"rpc: {passed}/{total} scenarios passed", flush=True)
    sys.exit(0 if passed == total else 1)


if __name__ == "__main__":
    main()
