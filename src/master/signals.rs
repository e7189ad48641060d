//! The master's signals: blocked in every thread and process it starts (so worker rings are
//! never interrupted, and a signal to the process group reaches only the master's logic) and
//! collected synchronously with `sigtimedwait`.

use std::time::Duration;

/// The signals the master acts on (Gunicorn's names and meanings, see the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Graceful stop.
    Term,
    /// Graceful stop; a second one exits at once.
    Int,
    /// Quick stop.
    Quit,
    /// Reload the configuration and replace the workers.
    Hup,
    /// One worker more.
    Ttin,
    /// One worker fewer.
    Ttou,
    /// Binary upgrade.
    Usr2,
    /// Reopen the log files (logrotate).
    Usr1,
    /// A child exited (only wakes the master to reap it).
    Chld,
}

const ALL: [(libc::c_int, Signal); 9] = [
    (libc::SIGTERM, Signal::Term),
    (libc::SIGINT, Signal::Int),
    (libc::SIGQUIT, Signal::Quit),
    (libc::SIGHUP, Signal::Hup),
    (libc::SIGTTIN, Signal::Ttin),
    (libc::SIGTTOU, Signal::Ttou),
    (libc::SIGUSR2, Signal::Usr2),
    (libc::SIGUSR1, Signal::Usr1),
    (libc::SIGCHLD, Signal::Chld),
];

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Term => "SIGTERM",
            Signal::Int => "SIGINT",
            Signal::Quit => "SIGQUIT",
            Signal::Hup => "SIGHUP",
            Signal::Ttin => "SIGTTIN",
            Signal::Ttou => "SIGTTOU",
            Signal::Usr2 => "SIGUSR2",
            Signal::Usr1 => "SIGUSR1",
            Signal::Chld => "SIGCHLD",
        }
    }
}

fn set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a local sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for (sig, _) in ALL {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// Block the master's signals in the calling thread and every thread or process it starts
/// afterwards.
pub fn block() {
    let set = set();
    // SAFETY: pthread_sigmask reads a valid sigset_t; the old mask is not wanted.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// Wait up to `timeout` for one of the blocked signals.
pub fn wait(timeout: Duration) -> Option<Signal> {
    let set = set();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: sigtimedwait reads the set and timeout from live locals; no siginfo is wanted.
    let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    ALL.iter()
        .find(|(s, _)| *s == sig)
        .map(|&(_, signal)| signal)
}
