//! Every thread's CET state: shadow-stack features from /proc, the SSP through NT_X86_SHSTK, and
//! IA32_U_CET through NT_X86_CET where a kernel offers it (no upstream kernel does).

use crate::error::EngineError;
use crate::proc;
use crate::sys;
use criu_cet_format::{Addr, Ibt, ShadowStack, ThreadCet, UserCet};
use nix::errno::Errno;
use nix::unistd::Pid;

/// Reads the CET state of a ptrace-stopped thread.
pub fn read_thread(pid: u32, tid: u32) -> Result<ThreadCet, EngineError> {
    let status = proc::thread_status(pid, tid)?;
    let t = Pid::from_raw(tid as i32);
    let shadow_stack = match proc::parse_thread_features(&status) {
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
    let mut b = [0u8; 16];
    let ibt = match sys::get_regset(t, sys::NT_X86_CET, &mut b) {
        Ok(n) if n >= 8 => {
            Ibt::Available { user_cet: UserCet(u64::from_le_bytes(b[..8].try_into().expect("8"))) }
        }
        // No such regset on this kernel, or CET off for the thread.
        Ok(_) | Err(Errno::EINVAL | Errno::ENODEV | Errno::EIO) => Ibt::NotAvailable,
        Err(e) => return Err(EngineError::sys(pid, format!("reading the CET state of thread {tid}"), e)),
    };
    Ok(ThreadCet { tid, shadow_stack, ibt })
}

/// Writes IA32_U_CET back through NT_X86_CET. `Ok(false)` when the kernel has no such regset.
pub fn write_user_cet(pid: u32, tid: u32, user_cet: UserCet) -> Result<bool, EngineError> {
    let mut b = [0u8; 16];
    let t = Pid::from_raw(tid as i32);
    // Keep the SSP half as the kernel has it.
    match sys::get_regset(t, sys::NT_X86_CET, &mut b) {
        Ok(_) => {}
        Err(Errno::EINVAL | Errno::ENODEV | Errno::EIO) => return Ok(false),
        Err(e) => return Err(EngineError::sys(pid, format!("reading the CET state of thread {tid}"), e)),
    }
    b[..8].copy_from_slice(&user_cet.0.to_le_bytes());
    sys::set_regset(t, sys::NT_X86_CET, &b)
        .map_err(|e| EngineError::sys(pid, format!("writing IA32_U_CET of thread {tid}"), e))?;
    Ok(true)
}
