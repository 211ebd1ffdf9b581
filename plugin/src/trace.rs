//! Holding a process still. The CLI seizes every thread with PTRACE_SEIZE + PTRACE_INTERRUPT and
//! detaches on drop, leaving the process as it was; inside CRIU the plugin is already the tracer
//! of a frozen tree and only lists the threads. Also the ptrace stop logic built on that: waiting
//! for a stop without blocking forever, and running a system call inside a stopped thread.

use crate::error::EngineError;
use crate::proc;
use crate::sys;
use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Who stops the threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tracing {
    /// Seize and interrupt every thread now; detach when done (the CLI).
    Seize,
    /// The caller already traces every thread and holds them stopped (CRIU's plugin hooks).
    AlreadyTracer,
}

/// Every thread of a process, stopped under ptrace for as long as this lives.
pub struct Stopped {
    /// The process.
    pub pid: u32,
    /// Every thread held stopped.
    pub tids: Vec<u32>,
    /// Threads we attached (and detach on drop), with a signal to hand back on detach.
    attached: Vec<(Pid, Option<Signal>)>,
}

impl Stopped {
    /// Holds every thread of `pid` stopped: seizes and interrupts them, or, with
    /// `Tracing::AlreadyTracer`, lists the threads the caller already holds.
    pub fn new(pid: u32, tracing: Tracing) -> Result<Stopped, EngineError> {
        let list = |pid| proc::tasks(pid);
        match tracing {
            Tracing::AlreadyTracer => Ok(Stopped { pid, tids: list(pid)?, attached: Vec::new() }),
            Tracing::Seize => {
                if pid == std::process::id() {
                    return Err(EngineError::OwnProcess { pid });
                }
                if proc::is_kernel_thread(pid) {
                    let comm = proc::comm(pid).unwrap_or_default();
                    return Err(EngineError::KernelThread { pid, comm });
                }
                let mut s = Stopped { pid, tids: Vec::new(), attached: Vec::new() };
                // Threads that ended (zombies still listed): not seized, not asked again.
                let mut ended = Vec::new();
                // Threads may be created while we seize: repeat until a pass finds none new.
                loop {
                    let now = list(pid)?;
                    let new: Vec<u32> =
                        now.iter().copied().filter(|t| !s.tids.contains(t) && !ended.contains(t)).collect();
                    if new.is_empty() {
                        break;
                    }
                    for tid in new {
                        match s.seize_one(tid) {
                            Ok(()) => s.tids.push(tid),
                            // The kernel answers EPERM, not ESRCH, for a thread already past
                            // exit_notify. A main thread that exited while others run stays a
                            // zombie until they end: the process lives on in them, so capture
                            // them. Only when no thread is left is the process exiting.
                            Err(Errno::EPERM) if proc::thread_is_exiting(pid, tid) => ended.push(tid),
                            Err(Errno::EPERM) if proc::tracer_of(pid, tid).is_some_and(|t| t != 0) => {
                                // TracerPid names the tracing thread: name its process.
                                let tracer = proc::tracer_of(pid, tid).unwrap_or(0);
                                let tracer = proc::tgid_of(tracer).unwrap_or(tracer);
                                let tracer_comm = proc::comm(tracer).unwrap_or_else(|_| "gone".into());
                                return Err(EngineError::AlreadyTraced { pid, tid, tracer, tracer_comm });
                            }
                            // A thread that exited between listing and seizing.
                            Err(Errno::ESRCH) if tid != pid => {}
                            Err(e) => {
                                return Err(EngineError::sys(pid, format!("PTRACE_SEIZE of thread {tid}"), e))
                            }
                        }
                    }
                }
                // Threads that exited while we seized others are gone from the list.
                let alive = list(pid)?;
                s.tids.retain(|t| alive.contains(t));
                if s.tids.is_empty() {
                    return Err(EngineError::Exiting { pid });
                }
                s.tids.sort_unstable();
                Ok(s)
            }
        }
    }

    fn seize_one(&mut self, tid: u32) -> Result<(), Errno> {
        let t = proc::kernel_pid(tid)?;
        ptrace::seize(t, ptrace::Options::empty())?;
        self.attached.push((t, None));
        ptrace::interrupt(t)?;
        loop {
            match wait_for_stop(t, STOP_LIMIT)? {
                Stop::Reported(WaitStatus::PtraceEvent(..)) | Stop::Unreported => return Ok(()),
                // A signal was on its way in: keep it, hand it back on detach, stay stopped.
                Stop::Reported(WaitStatus::Stopped(_, sig)) => {
                    if let Some(a) = self.attached.iter_mut().find(|a| a.0 == t) {
                        a.1 = Some(sig);
                    }
                    return Ok(());
                }
                Stop::Reported(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => {
                    self.attached.retain(|a| a.0 != t);
                    return Err(Errno::ESRCH);
                }
                Stop::Reported(_) => continue,
            }
        }
    }

    /// A stopped thread to run remote system calls in (the main thread when it is alive).
    pub fn any_thread(&self) -> Result<Pid, Errno> {
        let tid = if self.tids.contains(&self.pid) { self.pid } else { self.tids[0] };
        proc::kernel_pid(tid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        for (tid, sig) in self.attached.drain(..) {
            let _ = ptrace::detach(tid, sig);
        }
    }
}

/// Runs one system call inside a ptrace-stopped thread: points its instruction pointer at a
/// `syscall` instruction already in its memory (`syscall_insn`), resumes it with PTRACE_SYSCALL
/// to the system-call entry stop and again to the exit stop, reads the result, and puts every
/// register back. No byte of the target's memory is changed by this mechanism. Returns the
/// system call's own result (its value, or the errno it failed with) inside the result of
/// running it (an errno of ptrace).
///
/// No single-stepping: a single step leaves the trap flag (EFLAGS.TF) set in the thread until
/// the tracer resumes or detaches it, and a tracer that dies (SIGKILL) does neither, so the
/// target would then die of SIGTRAP. PTRACE_SYSCALL's per-thread flag is cleared by the kernel
/// whenever the tracer goes away. Between the two register writes (microseconds) a SIGKILLed
/// tracer still leaves the thread with the injected registers: docs/RELIABILITY.md says why
/// that window cannot be closed with ptrace.
///
/// `orig_rax` is set to -1 so that the kernel does not treat the stop as an interrupted system
/// call to restart; the saved registers (with the original `orig_rax`) are restored afterwards,
/// so an interrupted call restarts exactly as it would have.
pub fn remote_syscall(
    tid: Pid,
    syscall_insn: u64,
    nr: i64,
    args: [u64; 6],
) -> Result<Result<u64, Errno>, Errno> {
    let nr = u64::try_from(nr).map_err(|_| Errno::ENOSYS)?;
    let saved = ptrace::getregs(tid)?;
    let mut regs = saved;
    regs.rip = syscall_insn;
    regs.rax = nr;
    regs.orig_rax = u64::MAX;
    regs.rdi = args[0];
    regs.rsi = args[1];
    regs.rdx = args[2];
    regs.r10 = args[3];
    regs.r8 = args[4];
    regs.r9 = args[5];
    ptrace::setregs(tid, regs)?;
    crate::hooks::pause("remote-syscall");
    let ran = run_to_syscall_exit(tid, syscall_insn, nr);
    let put_back = ptrace::setregs(tid, saved);
    let rax = ran?;
    put_back?;
    park(tid)?;
    Ok(syscall_return(rax))
}

/// A system call's return register: the kernel returns -errno (-4095..=-1) for a failure.
fn syscall_return(rax: u64) -> Result<u64, Errno> {
    match 0u64.wrapping_sub(rax) {
        e @ 1..=4095 => Err(i32::try_from(e).map_or(Errno::UnknownErrno, Errno::from_raw)),
        _ => Ok(rax),
    }
}

/// Moves a thread from the system-call exit stop into a PTRACE_EVENT_STOP, where it was before
/// the remote call. A thread left in a system-call stop gets SIGTRAP if its tracer dies
/// without detaching (the kernel's implicit detach keeps the stop's exit code, and the
/// syscall-stop path sends it as a signal: seen here 1 time in 6); an event stop's code is
/// ignored. PTRACE_INTERRUPT first, then PTRACE_CONT: the pending trap stops the thread before
/// it returns to user mode, so it runs no instruction of its own. Threads not attached with
/// PTRACE_SEIZE (EIO) stay where they are.
fn park(tid: Pid) -> Result<(), Errno> {
    use nix::sys::signal::Signal;
    match ptrace::interrupt(tid) {
        Err(Errno::EIO) => return Ok(()),
        r => r?,
    }
    let mut deferred = Vec::new();
    ptrace::cont(tid, None)?;
    let outcome = loop {
        match wait_for_stop(tid, STOP_LIMIT) {
            Ok(Stop::Reported(WaitStatus::PtraceEvent(..)) | Stop::Unreported) => break Ok(()),
            Ok(Stop::Reported(WaitStatus::Stopped(_, sig))) => {
                if sig != Signal::SIGTRAP {
                    deferred.push(sig);
                }
                if let Err(e) = ptrace::cont(tid, None) {
                    break Err(e);
                }
            }
            Ok(Stop::Reported(WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => break Err(Errno::ESRCH),
            Ok(Stop::Reported(_)) => continue,
            Err(e) => break Err(e),
        }
    };
    for sig in deferred {
        let _ = sys::tgkill(tid, tid, sig);
    }
    outcome
}

/// Resumes `tid` (stopped with its instruction pointer at a `syscall` instruction) to the entry
/// and the exit stop of that system call; returns `rax` at the exit stop. Signals that arrive
/// meanwhile are held back and sent again afterwards, so the target still receives them.
fn run_to_syscall_exit(tid: Pid, insn: u64, nr: u64) -> Result<u64, Errno> {
    use nix::sys::signal::Signal;
    let mut deferred = Vec::new();
    let mut entered = false;
    ptrace::syscall(tid, None)?;
    let outcome = loop {
        let stop = match wait_for_stop(tid, STOP_LIMIT) {
            Ok(s) => s,
            Err(e) => break Err(e),
        };
        let at_syscall_stop = match stop {
            Stop::Reported(WaitStatus::PtraceSyscall(_) | WaitStatus::Stopped(_, Signal::SIGTRAP)) => true,
            // Its notification went to another waiter: the registers tell where it stopped
            // (a syscall stop is past the instruction; a signal stop before it is not).
            Stop::Unreported => matches!(ptrace::getregs(tid), Ok(r) if r.rip == insn + 2),
            // Another signal was about to be delivered: hold it back now and send it again
            // once the registers are restored.
            Stop::Reported(WaitStatus::Stopped(_, sig)) => {
                deferred.push(sig);
                false
            }
            Stop::Reported(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => break Err(Errno::ESRCH),
            Stop::Reported(_) => false,
        };
        if at_syscall_stop {
            let regs = match ptrace::getregs(tid) {
                Ok(r) => r,
                Err(e) => break Err(e),
            };
            if regs.rip != insn + 2 || regs.orig_rax != nr {
                break Err(Errno::EFAULT);
            }
            if entered {
                break Ok(regs.rax);
            }
            entered = true;
        }
        if let Err(e) = ptrace::syscall(tid, None) {
            break Err(e);
        }
    };
    for sig in deferred {
        let _ = sys::tgkill(tid, tid, sig);
    }
    outcome
}

/// How a wait for a ptrace stop ended.
pub enum Stop {
    /// waitpid reported this.
    Reported(WaitStatus),
    /// The thread is in a ptrace stop, but its notification was consumed by another waiter in
    /// this process (a `waitpid(-1)` elsewhere: CRIU's, or a test harness's).
    Unreported,
}

/// Waits for a traced thread's next stop without ever blocking forever: polls
/// `waitpid(WNOHANG)` and, between polls, asks whether the thread is already stopped
/// (PTRACE_GETREGS succeeds only on a tracee in a ptrace stop). ETIMEDOUT after `limit`.
pub fn wait_for_stop(tid: Pid, limit: std::time::Duration) -> Result<Stop, Errno> {
    let start = std::time::Instant::now();
    let mut polls = 0u32;
    loop {
        match waitpid(tid, Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => {
                if ptrace::getregs(tid).is_ok() {
                    return Ok(Stop::Unreported);
                }
            }
            Ok(status) => return Ok(Stop::Reported(status)),
            Err(e) => return Err(e),
        }
        if start.elapsed() > limit {
            return Err(Errno::ETIMEDOUT);
        }
        polls += 1;
        if polls < 200 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
    }
}

/// How long a thread may take to reach a ptrace stop before we give up on it.
pub const STOP_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);
