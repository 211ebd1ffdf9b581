//! Holding a process still. The CLI seizes every thread with PTRACE_SEIZE + PTRACE_INTERRUPT and
//! detaches on drop, leaving the process as it was; inside CRIU the plugin is already the tracer
//! of a frozen tree and only lists the threads.

use crate::error::EngineError;
use crate::proc;
use crate::sys::{self, Stop};
use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
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
    attached: Vec<(u32, Option<Signal>)>,
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
        let t = Pid::from_raw(tid as i32);
        ptrace::seize(t, ptrace::Options::empty())?;
        self.attached.push((tid, None));
        ptrace::interrupt(t)?;
        loop {
            match sys::wait_for_stop(t, sys::STOP_LIMIT)? {
                Stop::Reported(WaitStatus::PtraceEvent(..)) | Stop::Unreported => return Ok(()),
                // A signal was on its way in: keep it, hand it back on detach, stay stopped.
                Stop::Reported(WaitStatus::Stopped(_, sig)) => {
                    if let Some(a) = self.attached.iter_mut().find(|a| a.0 == tid) {
                        a.1 = Some(sig);
                    }
                    return Ok(());
                }
                Stop::Reported(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => {
                    self.attached.retain(|a| a.0 != tid);
                    return Err(Errno::ESRCH);
                }
                Stop::Reported(_) => continue,
            }
        }
    }

    /// A stopped thread to run remote system calls in (the main thread when it is alive).
    pub fn any_thread(&self) -> Pid {
        let tid = if self.tids.contains(&self.pid) { self.pid } else { self.tids[0] };
        Pid::from_raw(tid as i32)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        for (tid, sig) in self.attached.drain(..) {
            let _ = ptrace::detach(Pid::from_raw(tid as i32), sig);
        }
    }
}
