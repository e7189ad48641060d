//! The master's signals: blocked in every thread and process it starts (so worker rings are
//! never interrupted, and a signal to the process group reaches only the master's logic) and
//! collected synchronously from a signalfd, polled beside whatever else the master waits for
//! (its metrics listener).

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

/// Wait up to `timeout` for one of the blocked signals, or for one of `fds` to be ready (their
/// `revents` say which); returns the signal, if one came. The signals are read from a
/// signalfd polled beside `fds`, so the master can serve its metrics listener in the same
/// single thread that takes its signals.
pub fn wait(timeout: Duration, fds: &mut [libc::pollfd]) -> Option<Signal> {
    let Some(sfd) = signal_fd() else {
        // No signalfd (out of descriptors at the first wait): signals only.
        return timed_wait(timeout);
    };
    let mut polled = Vec::with_capacity(fds.len() + 1);
    polled.push(libc::pollfd {
        fd: sfd,
        events: libc::POLLIN,
        revents: 0,
    });
    polled.extend_from_slice(fds);
    // Round up: a wait of 0.4 ms must not become a busy poll.
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    // SAFETY: poll reads and writes `polled.len()` live pollfd entries.
    let n = unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, ms) };
    for (fd, p) in fds.iter_mut().zip(&polled[1..]) {
        fd.revents = if n > 0 { p.revents } else { 0 };
    }
    if n <= 0 || polled[0].revents == 0 {
        return None;
    }
    // SAFETY: signalfd_siginfo is plain old data; read fills at most its size.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: reads into a live local of `size` bytes; the signalfd is non-blocking.
    let got = unsafe { libc::read(sfd, (&mut info as *mut libc::signalfd_siginfo).cast(), size) };
    if got != size as isize {
        return None;
    }
    ALL.iter()
        .find(|(s, _)| *s as u32 == info.ssi_signo)
        .map(|&(_, signal)| signal)
}

/// The signalfd of the master's signals, opened at the first wait (they are blocked by then).
fn signal_fd() -> Option<libc::c_int> {
    static FD: std::sync::OnceLock<Option<libc::c_int>> = std::sync::OnceLock::new();
    *FD.get_or_init(|| {
        let set = set();
        // SAFETY: signalfd reads a valid sigset_t and returns a new descriptor (kept open for
        // the process's life; close-on-exec, so an upgrade's new binary does not inherit it).
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
        (fd >= 0).then_some(fd)
    })
}

fn timed_wait(timeout: Duration) -> Option<Signal> {
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
