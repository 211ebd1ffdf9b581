//! Every thread's CET state: shadow-stack features from /proc, the SSP through NT_X86_SHSTK, and
//! IA32_U_CET through NT_X86_CET where a kernel offers it (no upstream kernel does).

use crate::error::EngineError;
use crate::proc;
use crate::sys;
use criu_cet_format::{Addr, Ibt, ShadowStack, ThreadCet, UserCet};
use nix::errno::Errno;
use nix::unistd::Pid;

fn thread(pid: u32, tid: u32) -> Result<Pid, EngineError> {
    proc::kernel_pid(tid).map_err(|e| EngineError::sys(pid, format!("thread {tid}"), e))
}

/// Reads the CET state of a ptrace-stopped thread whose /proc status text is `status`.
pub fn read_thread(pid: u32, tid: u32, status: &str) -> Result<ThreadCet, EngineError> {
    let t = thread(pid, tid)?;
    let shadow_stack = match proc::parse_thread_features(status) {
        None => ShadowStack::NotAvailable,
        Some((features, locked)) => {
            let ssp = if features & 1 != 0 {
                let mut b = [0u8; 8];
                match sys::get_regset(t, sys::NT_X86_SHSTK, &mut b) {
                    Ok(8) => Some(Addr(u64::from_le_bytes(b))),
                    Ok(_) | Err(Errno::ENODEV) => None,
                    Err(e) => {
                        return Err(EngineError::sys(pid, format!("reading the SSP of thread {tid}"), e))
                    }
                }
            } else {
                None
            };
            ShadowStack::Available { features, locked, ssp }
        }
    };
    let ibt = match read_user_cet(pid, tid)? {
        Some(user_cet) => Ibt::Available { user_cet },
        None => Ibt::NotAvailable,
    };
    Ok(ThreadCet { tid, shadow_stack, ibt })
}

/// IA32_U_CET of a ptrace-stopped thread through NT_X86_CET, or the test-only module of the
/// emulated CET guest where that stands in for the regset; `None` when the kernel offers neither.
pub fn read_user_cet(pid: u32, tid: u32) -> Result<Option<UserCet>, EngineError> {
    let t = thread(pid, tid)?;
    let reading = || format!("reading the CET state of thread {tid}");
    let mut b = [0u8; 16];
    match sys::get_regset(t, sys::NT_X86_CET, &mut b) {
        Ok(n) if n >= 8 => Ok(Some(UserCet(u64::from_le_bytes(b[..8].try_into().expect("8"))))),
        // No such regset on this kernel, or CET off for the thread.
        Ok(_) | Err(Errno::EINVAL | Errno::ENODEV | Errno::EIO) => match sys::test_module_user_cet(t, None) {
            Ok(v) => Ok(v.map(UserCet)),
            Err(Errno::ENODEV) => Ok(None),
            Err(e) => Err(EngineError::sys(pid, reading(), e)),
        },
        Err(e) => Err(EngineError::sys(pid, reading(), e)),
    }
}

/// Turns IBT tracking off (ENDBR_EN and the tracker's state cleared) in every listed
/// ptrace-stopped thread that has it on, so that code without ENDBR can run in the process
/// (CRIU's parasite: it would die of a control-protection fault at its first indirect branch).
/// Returns each changed thread's value, for [`write_user_cet`] to put back.
pub fn suspend_ibt(pid: u32, tids: &[u32]) -> Result<Vec<(u32, UserCet)>, EngineError> {
    let mut changed = Vec::new();
    for &tid in tids {
        match suspend_thread(pid, tid) {
            Ok(Some(before)) => changed.push((tid, before)),
            Ok(None) => {}
            Err(e) => {
                // All or nothing: put back what was changed (best effort; the error says why).
                for &(t, before) in &changed {
                    let _ = write_user_cet(pid, t, before);
                }
                return Err(e);
            }
        }
    }
    Ok(changed)
}

fn suspend_thread(pid: u32, tid: u32) -> Result<Option<UserCet>, EngineError> {
    let Some(before) = read_user_cet(pid, tid)? else { return Ok(None) };
    if !before.has(UserCet::ENDBR_EN) {
        return Ok(None);
    }
    let off = UserCet(before.0 & !(UserCet::ENDBR_EN | UserCet::TRACKER));
    if !write_user_cet(pid, tid, off)? {
        return Err(EngineError::IbtInterfaceGone { pid, tid, doing: "turning IBT tracking off".into() });
    }
    Ok(Some(before))
}

/// Writes IA32_U_CET back through NT_X86_CET, or the test-only module where that stands in for
/// it. `Ok(false)` when the kernel offers neither.
pub fn write_user_cet(pid: u32, tid: u32, user_cet: UserCet) -> Result<bool, EngineError> {
    let mut b = [0u8; 16];
    let t = thread(pid, tid)?;
    let writing = || format!("writing IA32_U_CET {:#x} of thread {tid}", user_cet.0);
    // Keep the SSP half as the kernel has it.
    match sys::get_regset(t, sys::NT_X86_CET, &mut b) {
        Ok(_) => {}
        Err(Errno::EINVAL | Errno::ENODEV | Errno::EIO) => {
            return match sys::test_module_user_cet(t, Some(user_cet.0)) {
                // The module keeps the shadow-stack bits as the kernel has them.
                Ok(Some(now)) if UserCet(now).ibt_bits() == user_cet.ibt_bits() => Ok(true),
                Ok(Some(now)) => Err(EngineError::IbtNotTaken { pid, tid, wanted: user_cet.0, now }),
                Ok(None) | Err(Errno::ENODEV) => Ok(false),
                Err(e) => Err(EngineError::sys(pid, writing(), e)),
            };
        }
        Err(e) => return Err(EngineError::sys(pid, format!("reading the CET state of thread {tid}"), e)),
    }
    b[..8].copy_from_slice(&user_cet.0.to_le_bytes());
    sys::set_regset(t, sys::NT_X86_CET, &b).map_err(|e| EngineError::sys(pid, writing(), e))?;
    Ok(true)
}
