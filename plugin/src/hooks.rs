//! Test hooks, compiled only with the `test-hooks` cargo feature (the test command enables it;
//! `cargo build --release` does not, so nothing here ships): pause points that let the
//! end-to-end tests signal the CLI at a chosen moment, and the image writer's fault injection.
//! Without the feature every hook is an empty inline function.

/// Environment variable naming the pause points to stop at, comma-separated
/// (`remote-syscall`, `restore-mapped`, `dump-writing`).
pub const PAUSE_ENV: &str = "CRIU_CET_TEST_PAUSE";
/// The image writer fails after this many bytes, as a full disk would make it...
pub const FAULT_ENV: &str = "CRIU_CET_FAULT_AFTER_BYTES";
/// ...or, with this set to `kill`, the process kills itself with SIGKILL there, as a crash would.
pub const FAULT_MODE_ENV: &str = "CRIU_CET_FAULT_MODE";

/// At a pause point named in `CRIU_CET_TEST_PAUSE`: says so on stderr (`test hook: paused at
/// POINT`) and waits until SIGINT or SIGTERM arrives (or two minutes pass), so that a test can
/// signal the CLI at exactly this moment.
#[cfg(feature = "test-hooks")]
pub fn pause(point: &str) {
    use std::time::{Duration, Instant};
    let Ok(want) = std::env::var(PAUSE_ENV) else { return };
    if !want.split(',').any(|p| p == point) || crate::sys::interrupted().is_some() {
        return;
    }
    eprintln!("criu-cet: test hook: paused at {point}");
    let until = Instant::now() + Duration::from_secs(120);
    while crate::sys::interrupted().is_none() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Without the `test-hooks` feature (every release build): a pause point that does nothing.
#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub fn pause(_point: &str) {}

/// The writer's injected fault, from the environment.
#[cfg(feature = "test-hooks")]
pub struct Fault {
    left: Option<u64>,
    kill: bool,
}

#[cfg(feature = "test-hooks")]
impl Fault {
    /// The fault `CRIU_CET_FAULT_AFTER_BYTES` and `CRIU_CET_FAULT_MODE` ask for; none when unset.
    pub fn from_env() -> Fault {
        Fault {
            left: std::env::var(FAULT_ENV).ok().and_then(|v| v.parse().ok()),
            kill: std::env::var(FAULT_MODE_ENV).is_ok_and(|m| m == "kill"),
        }
    }

    /// How many of `len` bytes may be written now; fails (or kills the process, after flushing
    /// `inner` as a crash would leave it) once the budget is spent.
    pub fn allow<W: std::io::Write>(&mut self, len: usize, inner: &mut W) -> std::io::Result<usize> {
        match self.left {
            Some(0) => {
                if self.kill {
                    let _ = inner.flush();
                    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
                }
                Err(std::io::Error::other(format!("injected fault ({FAULT_ENV})")))
            }
            Some(left) => Ok(criu_cet_format::addr::usize_from((len as u64).min(left))),
            None => Ok(len),
        }
    }

    /// Counts `n` bytes written against the budget.
    pub fn wrote(&mut self, n: usize) {
        if let Some(left) = &mut self.left {
            *left -= n as u64;
        }
    }
}
