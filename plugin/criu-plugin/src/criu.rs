//! Calls out to CRIU: the functions the criu binary exports for plugins (its log, the image
//! directory, the inventory's plugin list). They are looked up once, at the first call, with
//! dlsym, so the library also loads outside CRIU (then logging goes to stderr and the rest
//! reports absence).
//!
//! # References
//! CRIU 4.1, 4.2 and criu-dev: criu/include/log.h (`print_on_level`), criu/include/criu-plugin.h
//! (`criu_get_image_dir`), criu/include/image.h (`add_inventory_plugin`,
//! `check_and_remove_inventory_plugin`).

#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::path::PathBuf;
use std::sync::OnceLock;

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

/// Longest log line the plugin hands CRIU, in bytes, its "cet: " prefix and newline included.
/// CRIU formats every line into one 8 KiB buffer (LOG_BUF_LEN, criu/log.c) and then writes as
/// many bytes as the whole line would have taken: a longer line puts the memory past the buffer
/// into the log. Longer messages are cut, the end marked ([`bounded`]).
pub const MAX_LINE: usize = 1024;

/// `void print_on_level(unsigned int loglevel, const char *format, ...)`.
type PrintOnLevel = unsafe extern "C" fn(c_uint, *const c_char, ...);
/// `int criu_get_image_dir(void)`.
type GetImageDir = unsafe extern "C" fn() -> c_int;
/// `int add_inventory_plugin(const char *name)`.
type AddInventoryPlugin = unsafe extern "C" fn(*const c_char) -> c_int;
/// `bool check_and_remove_inventory_plugin(const char *name, size_t n)`.
type CheckAndRemoveInventoryPlugin = unsafe extern "C" fn(*const c_char, usize) -> bool;

/// What the criu binary exports, each `None` outside CRIU (or in a CRIU without it).
struct Exports {
    print_on_level: Option<PrintOnLevel>,
    get_image_dir: Option<GetImageDir>,
    add_inventory_plugin: Option<AddInventoryPlugin>,
    check_and_remove_inventory_plugin: Option<CheckAndRemoveInventoryPlugin>,
}

fn lookup(name: &CStr) -> Option<*mut c_void> {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only searches loaded objects.
    let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    (!f.is_null()).then_some(f)
}

/// The exports, looked up at the first call and kept.
fn exports() -> &'static Exports {
    static EXPORTS: OnceLock<Exports> = OnceLock::new();
    // Each symbol, where the criu binary exports it, is a function with exactly the C signature
    // its type above spells out: the same in CRIU 4.1, 4.2 and criu-dev (References, above).
    EXPORTS.get_or_init(|| Exports {
        // SAFETY: `print_on_level` is `void print_on_level(unsigned int, const char *, ...)`.
        print_on_level: lookup(c"print_on_level")
            .map(|f| unsafe { std::mem::transmute::<*mut c_void, PrintOnLevel>(f) }),
        // SAFETY: `criu_get_image_dir` is `int criu_get_image_dir(void)`.
        get_image_dir: lookup(c"criu_get_image_dir")
            .map(|f| unsafe { std::mem::transmute::<*mut c_void, GetImageDir>(f) }),
        // SAFETY: `add_inventory_plugin` is `int add_inventory_plugin(const char *)`.
        add_inventory_plugin: lookup(c"add_inventory_plugin")
            .map(|f| unsafe { std::mem::transmute::<*mut c_void, AddInventoryPlugin>(f) }),
        // SAFETY: `check_and_remove_inventory_plugin` is `bool (const char *, size_t)`.
        check_and_remove_inventory_plugin: lookup(c"check_and_remove_inventory_plugin")
            .map(|f| unsafe { std::mem::transmute::<*mut c_void, CheckAndRemoveInventoryPlugin>(f) }),
    })
}

/// The log line for `msg`: "cet: " prefixed, newline ended, NULs made spaces, and at most
/// [`MAX_LINE`] bytes: a longer message is cut at a character boundary and ends
/// "… [cut: N more bytes]".
pub fn bounded(msg: &str) -> String {
    const PREFIX: &str = "cet: ";
    let room = MAX_LINE - PREFIX.len() - 1;
    let mut line = String::with_capacity(MAX_LINE);
    line.push_str(PREFIX);
    if msg.len() <= room {
        line.push_str(msg);
    } else {
        // The marker's length depends on the count it states: reserve room for the largest.
        let reserve = format!(" … [cut: {} more bytes]", msg.len()).len();
        let mut keep = room - reserve;
        while !msg.is_char_boundary(keep) {
            keep -= 1;
        }
        line.push_str(&msg[..keep]);
        line.push_str(&format!(" … [cut: {} more bytes]", msg.len() - keep));
    }
    line.push('\n');
    line.replace('\0', " ")
}

/// Logs through CRIU's `print_on_level` (one line of at most [`MAX_LINE`] bytes, [`bounded`]),
/// or to stderr outside CRIU.
pub fn log(level: Level, msg: &str) {
    let line = bounded(msg);
    let Some(print_on_level) = exports().print_on_level else {
        eprint!("{line}");
        return;
    };
    let text = CString::new(line).expect("NULs replaced");
    // SAFETY: `print_on_level` is CRIU's variadic `void print_on_level(unsigned int, const char
    // *, ...)`; the format "%s" consumes exactly the one C-string argument passed, which lives
    // for the call and is at most MAX_LINE bytes, well inside CRIU's 8 KiB line buffer.
    unsafe { print_on_level(level as c_uint, c"%s".as_ptr(), text.as_ptr()) };
}

/// The image directory, through `int criu_get_image_dir(void)` (a directory descriptor).
pub fn image_dir() -> Result<PathBuf, String> {
    let Some(get_image_dir) = exports().get_image_dir else {
        return Err("CRIU did not give an image directory (no criu_get_image_dir)".into());
    };
    // SAFETY: CRIU's `int criu_get_image_dir(void)` takes nothing and returns a descriptor.
    let fd = unsafe { get_image_dir() };
    if fd < 0 {
        return Err(format!("CRIU gave no image directory (criu_get_image_dir returned {fd})"));
    }
    Ok(PathBuf::from(format!("/proc/self/fd/{fd}")))
}

/// The id of this CRIU run (`char criu_run_id[37]`, a UUID that CRIU records in the dump's
/// inventory.img as `dump_criu_run_id`); `None` outside CRIU or when it is not a printable id.
pub fn run_id() -> Option<String> {
    const RUN_ID_HASH_LENGTH: usize = 37;
    let p = lookup(c"criu_run_id")?;
    // SAFETY: CRIU 4.x exports `char criu_run_id[RUN_ID_HASH_LENGTH]` (criu/util.c), a global
    // array that lives as long as the process; it is written once, by util_init before any
    // plugin is loaded, so reading its 37 bytes races with nothing.
    let bytes = unsafe { std::slice::from_raw_parts(p.cast::<u8>(), RUN_ID_HASH_LENGTH) };
    let id = CStr::from_bytes_until_nul(bytes).ok()?.to_str().ok()?;
    (!id.is_empty() && id.bytes().all(|c| c.is_ascii_graphic())).then(|| id.to_string())
}

/// `int add_inventory_plugin(const char *name)`: a restore then requires this plugin.
pub fn add_inventory_plugin() -> bool {
    let Some(add) = exports().add_inventory_plugin else { return false };
    // SAFETY: CRIU's `int add_inventory_plugin(const char *name)`; the name is a static
    // NUL-terminated string that CRIU copies.
    unsafe { add(NAME.as_ptr()) == 0 }
}

/// `bool check_and_remove_inventory_plugin(const char *name, size_t n)`: claims our inventory
/// entry at restore; `true` when the dump named this plugin (or the inventory predates the list).
pub fn claim_inventory_entry() -> bool {
    let Some(claim) = exports().check_and_remove_inventory_plugin else { return false };
    // SAFETY: CRIU 4.1, 4.2 and criu-dev all declare `bool check_and_remove_inventory_plugin(
    // const char *name, size_t n)` (criu/include/image.h) and compare `n` bytes of the name,
    // which is static, NUL-terminated and exactly `n` bytes long before its NUL.
    unsafe { claim(NAME.as_ptr(), NAME.to_bytes().len()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_message_is_one_line_as_it_was() {
        assert_eq!(bounded("process 7: done"), "cet: process 7: done\n");
        assert_eq!(bounded("a\0b"), "cet: a b\n");
    }

    #[test]
    fn a_long_message_is_cut_to_the_bound_and_says_how_much_is_missing() {
        for len in [MAX_LINE - 6, MAX_LINE - 5, 5000, 100_000] {
            let msg = "x".repeat(len);
            let line = bounded(&msg);
            assert!(line.len() <= MAX_LINE, "{len}: {} bytes", line.len());
            assert!(line.ends_with('\n'));
            if len + 6 <= MAX_LINE {
                assert_eq!(line.len(), len + 6);
                continue;
            }
            let kept = line.matches('x').count();
            assert!(line.ends_with(&format!(" … [cut: {} more bytes]\n", len - kept)), "{line}");
            assert!(kept > MAX_LINE - 60, "{kept}");
        }
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        let msg = "é".repeat(3000);
        let line = bounded(&msg);
        assert!(line.len() <= MAX_LINE);
        let kept = line.matches('é').count();
        assert!(line.ends_with(&format!("[cut: {} more bytes]\n", msg.len() - 2 * kept)), "{line}");
    }
}
