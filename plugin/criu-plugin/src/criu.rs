//! Calls out to CRIU: the functions the criu binary exports for plugins (its log, the image
//! directory, the inventory's plugin list). They are looked up at run time with dlsym, so the
//! library also loads outside CRIU (then logging goes to stderr and the rest reports absence).

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::path::PathBuf;

/// CRIU's log levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Level {
    /// LOG_ERROR.
    Error = 1,
    /// LOG_WARN: CRIU's default level shows it and everything above.
    Warn = 2,
    /// LOG_INFO: shown from `-v3` on.
    Info = 3,
    /// LOG_DEBUG: shown with `-v4`.
    Debug = 4,
}

/// The plugin's name: in the inventory, and as every log line's prefix.
const NAME: &CStr = c"cet";

fn lookup(name: &CStr) -> *mut c_void {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only searches loaded objects.
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) }
}

type PrintOnLevel = unsafe extern "C" fn(c_uint, *const c_char, ...);

/// Logs through CRIU's `print_on_level` ("cet: " prefixed), or to stderr outside CRIU.
pub fn log(level: Level, msg: &str) {
    let f = lookup(c"print_on_level");
    let line = format!("cet: {msg}\n");
    if f.is_null() {
        eprint!("{line}");
        return;
    }
    let text = CString::new(line.replace('\0', " ")).unwrap_or_default();
    // SAFETY: `f` is CRIU's exported `void print_on_level(unsigned, const char *, ...)`; the
    // format "%s" consumes exactly the one C-string argument passed, which lives for the call.
    unsafe {
        let f: PrintOnLevel = std::mem::transmute::<*mut c_void, PrintOnLevel>(f);
        f(level as c_uint, c"%s".as_ptr(), text.as_ptr());
    }
}

/// The image directory, through `int criu_get_image_dir(void)` (a directory descriptor).
pub fn image_dir() -> Result<PathBuf, String> {
    let f = lookup(c"criu_get_image_dir");
    if f.is_null() {
        return Err("CRIU did not give an image directory (no criu_get_image_dir)".into());
    }
    // SAFETY: CRIU exports `int criu_get_image_dir(void)`, which takes nothing and returns a fd.
    let fd = unsafe { std::mem::transmute::<*mut c_void, extern "C" fn() -> c_int>(f)() };
    if fd < 0 {
        return Err(format!("CRIU gave no image directory (criu_get_image_dir returned {fd})"));
    }
    Ok(PathBuf::from(format!("/proc/self/fd/{fd}")))
}

/// The id of this CRIU run (`char criu_run_id[37]`, a UUID that CRIU records in the dump's
/// inventory.img as `dump_criu_run_id`); `None` outside CRIU or when it is not a printable id.
pub fn run_id() -> Option<String> {
    const RUN_ID_HASH_LENGTH: usize = 37;
    let p = lookup(c"criu_run_id");
    if p.is_null() {
        return None;
    }
    // SAFETY: CRIU 4.x exports `char criu_run_id[RUN_ID_HASH_LENGTH]` (criu/util.c), a global
    // array that lives as long as the process; it is written once, by util_init before any
    // plugin is loaded, so reading its 37 bytes races with nothing.
    let bytes = unsafe { std::slice::from_raw_parts(p.cast::<u8>(), RUN_ID_HASH_LENGTH) };
    let id = CStr::from_bytes_until_nul(bytes).ok()?.to_str().ok()?;
    (!id.is_empty() && id.bytes().all(|c| c.is_ascii_graphic())).then(|| id.to_string())
}

/// `int add_inventory_plugin(const char *name)`: a restore then requires this plugin.
pub fn add_inventory_plugin() -> bool {
    let f = lookup(c"add_inventory_plugin");
    if f.is_null() {
        return false;
    }
    // SAFETY: CRIU exports `int add_inventory_plugin(const char *)`; the name is a static
    // NUL-terminated string that CRIU copies.
    unsafe {
        std::mem::transmute::<*mut c_void, extern "C" fn(*const c_char) -> c_int>(f)(NAME.as_ptr()) == 0
    }
}

/// `bool check_and_remove_inventory_plugin(const char *name, size_t n)`: claims our inventory
/// entry at restore; `true` when the dump named this plugin (or the inventory predates the list).
pub fn claim_inventory_entry() -> bool {
    let f = lookup(c"check_and_remove_inventory_plugin");
    if f.is_null() {
        return false;
    }
    let len = NAME.to_bytes().len();
    // SAFETY: CRIU 4.1 exports `bool check_and_remove_inventory_plugin(const char *, size_t)`
    // (newer versions take only the name and ignore the second register argument); the name is
    // static and NUL-terminated.
    unsafe {
        std::mem::transmute::<*mut c_void, extern "C" fn(*const c_char, usize) -> bool>(f)(NAME.as_ptr(), len)
    }
}
