//! SIGTERM/SIGINT for the master: blocked in every thread (workers inherit the mask, so their
//! rings are never interrupted) and collected synchronously by the master with `sigtimedwait`.

use std::time::Duration;

/// The signals the master acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Term,
    Int,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Term => "SIGTERM",
            Signal::Int => "SIGINT",
        }
    }
}

fn set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a local sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        set
    }
}

/// Block SIGTERM and SIGINT in the calling thread and every thread it spawns afterwards.
pub fn block() {
    let set = set();
    // SAFETY: pthread_sigmask reads a valid sigset_t; the old mask is not wanted.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// Wait up to `timeout` for a blocked SIGTERM or SIGINT.
pub fn wait(timeout: Duration) -> Option<Signal> {
    let set = set();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: sigtimedwait reads the set and timeout from live locals; no siginfo is wanted.
    let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    match sig {
        libc::SIGTERM => Some(Signal::Term),
        libc::SIGINT => Some(Signal::Int),
        _ => None, // timeout (EAGAIN) or EINTR
    }
}
