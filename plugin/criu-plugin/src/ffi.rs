//! CRIU's C ABI, inbound (criu/include/criu-plugin.h, CRIU 4.x): the `CR_PLUGIN_DESC`
//! descriptor and the hook entry points. Each entry point turns C values into typed ones, calls
//! the hook, and turns its outcome back into CRIU's int; each catches panics, which must never
//! unwind into CRIU.

#![allow(unsafe_code)]

use super::criu::{log, Level};
use super::{Hooks, Outcome, Stage};
use std::ffi::{c_char, c_int, c_uint, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

const PLUGIN_VERSION: c_uint = 0x200;
/// CRIU 4.1 refuses more than 12 hooks ("Corrupted plugin"); 4.2 and later accept 12.
const MAX_HOOKS: usize = 12;
const MAX_HOOKS_C: c_uint = 12;
const _: () = assert!(MAX_HOOKS_C as usize == MAX_HOOKS);
const HOOK_RESUME_DEVICES_LATE: usize = 9;
const HOOK_CHECKPOINT_DEVICES: usize = 11;

/// cr_plugin_desc_t. x86-64 offsets: name 0, init 8, exit 16, version 24, max_hooks 28, hooks 32.
#[repr(C)]
pub struct CrPluginDesc {
    name: *const c_char,
    init: extern "C" fn(c_int) -> c_int,
    exit: extern "C" fn(c_int, c_int),
    version: c_uint,
    max_hooks: c_uint,
    hooks: [*const c_void; MAX_HOOKS],
}

// The layout CRIU reads (shared/FACTS.md section 3), checked by the compiler.
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(offset_of!(CrPluginDesc, name) == 0);
    assert!(offset_of!(CrPluginDesc, init) == 8);
    assert!(offset_of!(CrPluginDesc, exit) == 16);
    assert!(offset_of!(CrPluginDesc, version) == 24);
    assert!(offset_of!(CrPluginDesc, max_hooks) == 28);
    assert!(offset_of!(CrPluginDesc, hooks) == 32);
    assert!(size_of::<CrPluginDesc>() == 32 + 8 * MAX_HOOKS);
};

// SAFETY: the descriptor is immutable after load; its pointers refer to static data and
// functions, which are safe to share between threads.
unsafe impl Sync for CrPluginDesc {}

/// The hooks this plugin has; CRIU skips an empty slot (criu/plugin.c chains only non-null
/// hooks, and a hook no plugin answers counts as -ENOTSUP).
const fn hooks() -> [*const c_void; MAX_HOOKS] {
    let mut h = [std::ptr::null(); MAX_HOOKS];
    h[HOOK_RESUME_DEVICES_LATE] = resume_devices_late as *const c_void;
    h[HOOK_CHECKPOINT_DEVICES] = checkpoint_devices as *const c_void;
    h
}

/// What CRIU looks up in the plugin library.
#[no_mangle]
#[used]
pub static CR_PLUGIN_DESC: CrPluginDesc = CrPluginDesc {
    name: c"cet".as_ptr(),
    init,
    exit,
    version: PLUGIN_VERSION,
    max_hooks: MAX_HOOKS_C,
    hooks: hooks(),
};

fn stage(raw: c_int) -> Option<Stage> {
    match raw {
        0 => Some(Stage::Dump),
        1 => Some(Stage::PreDump),
        2 => Some(Stage::Restore),
        _ => None,
    }
}

fn code(o: Outcome) -> c_int {
    match o {
        Outcome::Done => 0,
        // Other plugins still see the pid (and CRIU goes on) only after -ENOTSUP.
        Outcome::NotMine => -libc::ENOTSUP,
        Outcome::Failed => -1,
    }
}

/// Runs `f`, turning a panic into a failure that CRIU can handle; logs its time (debug level).
fn guarded(what: &str, f: impl FnOnce() -> Outcome) -> Outcome {
    let start = std::time::Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        log(Level::Error, &format!("internal error in {what}: {msg}; please report it"));
        Outcome::Failed
    });
    log(Level::Debug, &format!("{what}: {:.3} ms", start.elapsed().as_secs_f64() * 1e3));
    outcome
}

/// A pid from CRIU: a host pid, always positive.
fn pid(raw: c_int) -> Option<u32> {
    u32::try_from(raw).ok().filter(|&p| p > 0)
}

extern "C" fn init(raw: c_int) -> c_int {
    code(guarded("init", || match stage(raw) {
        Some(s) => Hooks::get().init(s),
        None => Outcome::Done,
    }))
}

extern "C" fn exit(raw: c_int, ret: c_int) {
    guarded("exit", || {
        Hooks::get().exit(stage(raw), ret == 0);
        Outcome::Done
    });
}

extern "C" fn checkpoint_devices(raw: c_int) -> c_int {
    code(guarded("CHECKPOINT_DEVICES", || pid(raw).map_or(Outcome::NotMine, |p| Hooks::get().checkpoint(p))))
}

extern "C" fn resume_devices_late(raw: c_int) -> c_int {
    code(guarded("RESUME_DEVICES_LATE", || pid(raw).map_or(Outcome::NotMine, |p| Hooks::get().resume(p))))
}
