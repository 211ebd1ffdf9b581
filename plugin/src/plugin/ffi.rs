//! CRIU's C ABI (criu/include/criu-plugin.h, CRIU 4.x): the `CR_PLUGIN_DESC` descriptor, the
//! hook entry points, and the functions the criu binary exports, looked up at run time so the
//! library also loads outside CRIU. Every entry point catches panics: a panic must never unwind
//! into CRIU.

use super::{Hooks, Level};
use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

const PLUGIN_VERSION: c_uint = 0x200;
/// CRIU 4.1 refuses more than 12 hooks ("Corrupted plugin"); later versions accept 12.
const MAX_HOOKS: usize = 12;
const HOOK_RESUME_DEVICES_LATE: usize = 9;
const HOOK_PAUSE_DEVICES: usize = 10;
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

// SAFETY: the descriptor is immutable after load; its pointers refer to static data and
// functions, which are safe to share between threads.
unsafe impl Sync for CrPluginDesc {}

const fn hooks() -> [*const c_void; MAX_HOOKS] {
    let mut h = [std::ptr::null(); MAX_HOOKS];
    h[HOOK_RESUME_DEVICES_LATE] = resume_devices_late as *const c_void;
    h[HOOK_PAUSE_DEVICES] = pause_devices as *const c_void;
    h[HOOK_CHECKPOINT_DEVICES] = checkpoint_devices as *const c_void;
    h
}

#[no_mangle]
#[used]
pub static CR_PLUGIN_DESC: CrPluginDesc = CrPluginDesc {
    name: c"cet".as_ptr(),
    init,
    exit,
    version: PLUGIN_VERSION,
    max_hooks: MAX_HOOKS as c_uint,
    hooks: hooks(),
};

/// Runs `f`, turning a panic into an error return that CRIU can handle.
fn guarded(what: &str, fail: c_int, f: impl FnOnce() -> c_int) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            log(Level::Error, &format!("internal error in {what}: {msg}; please report it"));
            fail
        }
    }
}

extern "C" fn init(stage: c_int) -> c_int {
    guarded("init", -1, || Hooks::get().init(stage))
}

extern "C" fn exit(stage: c_int, ret: c_int) {
    guarded("exit", 0, || {
        Hooks::get().exit(stage, ret);
        0
    });
}

extern "C" fn checkpoint_devices(pid: c_int) -> c_int {
    guarded("CHECKPOINT_DEVICES", -1, || Hooks::get().checkpoint_devices(pid))
}

extern "C" fn pause_devices(_pid: c_int) -> c_int {
    -libc::ENOTSUP
}

extern "C" fn resume_devices_late(pid: c_int) -> c_int {
    guarded("RESUME_DEVICES_LATE", -1, || Hooks::get().resume_devices_late(pid))
}

fn lookup(name: &CStr) -> *mut c_void {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only searches loaded objects.
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }
}

type PrintOnLevel = unsafe extern "C" fn(c_uint, *const c_char, ...);

/// Logs through CRIU's `print_on_level` ("cet: " prefixed), or stderr outside CRIU.
pub fn log(level: Level, msg: &str) {
    let f = lookup(c"print_on_level");
    let line = format!("cet: {msg}\n");
    if f.is_null() {
        eprint!("{line}");
        return;
    }
    let text = CString::new(line.replace('\0', " ")).expect("no NUL left");
    // SAFETY: `f` is CRIU's exported `void print_on_level(unsigned, const char *, ...)`; the
    // format "%s" consumes exactly the one C-string argument passed, which lives for the call.
    unsafe {
        let f: PrintOnLevel = std::mem::transmute::<*mut c_void, PrintOnLevel>(f);
        f(level as c_uint, c"%s".as_ptr(), text.as_ptr());
    }
}

/// `int criu_get_image_dir(void)`: the image directory's file descriptor.
pub fn image_dir_fd() -> Option<c_int> {
    let f = lookup(c"criu_get_image_dir");
    if f.is_null() {
        return None;
    }
    // SAFETY: CRIU exports `int criu_get_image_dir(void)`, which takes nothing and returns a fd.
    let fd = unsafe { std::mem::transmute::<*mut c_void, extern "C" fn() -> c_int>(f)() };
    (fd >= 0).then_some(fd)
}

/// `int add_inventory_plugin(const char *name)`: restore then requires this plugin.
pub fn add_inventory_plugin() -> bool {
    let f = lookup(c"add_inventory_plugin");
    if f.is_null() {
        return false;
    }
    // SAFETY: CRIU exports `int add_inventory_plugin(const char *)`; the name is a static
    // NUL-terminated string that CRIU copies.
    unsafe {
        std::mem::transmute::<*mut c_void, extern "C" fn(*const c_char) -> c_int>(f)(c"cet".as_ptr()) == 0
    }
}

/// `bool check_and_remove_inventory_plugin(const char *name, size_t n)`: claims our inventory
/// entry at restore; `true` when the dump named this plugin (or the inventory predates the list).
pub fn claim_inventory_entry() -> bool {
    let f = lookup(c"check_and_remove_inventory_plugin");
    if f.is_null() {
        return false;
    }
    // SAFETY: CRIU 4.1 exports `bool check_and_remove_inventory_plugin(const char *, size_t)`
    // (newer versions take only the name and ignore the second register argument); the name is
    // static and NUL-terminated.
    unsafe {
        std::mem::transmute::<*mut c_void, extern "C" fn(*const c_char, usize) -> bool>(f)(c"cet".as_ptr(), 3)
    }
}
