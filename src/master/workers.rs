//! Starting one worker, as a thread of the master or as a forked process, and watching it:
//! the line it writes once its ring is accepting (or why it could not start), and how it
//! ended, told the way Gunicorn tells it.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::thread::JoinHandle;

use crate::app::DynApp;
use crate::config::WorkerClass;
use crate::worker::{self, Spec};

use super::Credentials;

/// A started worker.
pub struct Child {
    body: Body,
    /// Read end of the readiness pipe, until the worker has said whether it started.
    ready: Option<std::fs::File>,
    said: Vec<u8>,
}

enum Body {
    Thread(Option<JoinHandle<io::Result<()>>>),
    Process(libc::pid_t),
}

/// What the readiness pipe said.
pub enum Ready {
    /// Not yet.
    Pending,
    /// Accepting.
    Serving,
    /// Could not start: the ring (with its errno) or the handler.
    Failed { errno: Option<i32>, why: String },
}

/// How a worker ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// A worker thread failed with this error.
    Failed(String),
    /// A worker thread panicked outside a handler.
    Panicked,
}

impl Exit {
    /// Gunicorn's wording: `exited with code 1`, `was sent SIGKILL! Perhaps out of memory?`
    pub fn describe(&self) -> String {
        match self {
            Exit::Code(0) => "exited".into(),
            Exit::Code(c) => format!("exited with code {c}"),
            Exit::Signal(libc::SIGKILL) => "was sent SIGKILL! Perhaps out of memory?".into(),
            Exit::Signal(s) => format!("was sent {}!", signal_name(*s)),
            Exit::Failed(e) => format!("failed: {e}"),
            Exit::Panicked => "panicked".into(),
        }
    }
}

fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGABRT => "SIGABRT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGHUP => "SIGHUP",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        _ => return format!("signal {sig}"),
    };
    name.into()
}

/// Exit code of a worker process whose handler (or loop) panicked.
const EXIT_PANIC: i32 = 3;

/// Start a worker serving `app` with `spec`. A process worker closes every descriptor of the
/// master's except its own (`keep` and the spec's) before it builds its handler.
pub fn start(
    class: WorkerClass,
    spec: Spec,
    app: &DynApp,
    master_fds: &[RawFd],
    credentials: Option<&Credentials>,
) -> io::Result<Child> {
    let (read, write) = super::pipe()?;
    let body = match class {
        WorkerClass::Thread => {
            let app = app.clone();
            let thread = std::thread::Builder::new()
                .name(format!("ringcorn-w{}", spec.index))
                .spawn(move || worker::run(spec, &app, |r| say(&write, r)))?;
            Body::Thread(Some(thread))
        }
        WorkerClass::Process => {
            let keep: Vec<RawFd> = spec
                .listeners
                .iter()
                .map(|l| l.fd.as_raw_fd())
                .chain([spec.wake.raw_fd(), write.as_raw_fd()])
                .collect();
            let master = std::process::id() as libc::pid_t;
            // SAFETY: the master is single-threaded in process mode, so the child may go on
            // running ordinary code (no lock can be held by a thread that is not copied).
            let pid = unsafe { libc::fork() };
            if pid < 0 {
                return Err(io::Error::last_os_error());
            }
            if pid == 0 {
                // SAFETY: the child's copy of the read end is the master's to read, not ours.
                unsafe { libc::close(read.as_raw_fd()) };
                let code = in_child(spec, app, write, master, master_fds, &keep, credentials);
                std::process::exit(code);
            }
            drop(write);
            Body::Process(pid)
        }
    };
    let ready = std::fs::File::from(read);
    Ok(Child {
        body,
        ready: Some(ready),
        said: Vec::new(),
    })
}

/// The worker process: drop the master's descriptors, die with the master, run the loop.
fn in_child(
    spec: Spec,
    app: &DynApp,
    write: OwnedFd,
    master: libc::pid_t,
    master_fds: &[RawFd],
    keep: &[RawFd],
    credentials: Option<&Credentials>,
) -> i32 {
    for &fd in master_fds {
        if !keep.contains(&fd) {
            // SAFETY: closes a descriptor this copy of the master inherited and does not use.
            unsafe { libc::close(fd) };
        }
    }
    // SAFETY: prctl with integer arguments only. A worker whose master is killed is killed
    // too, rather than serve on unsupervised.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    // SAFETY: getppid has no arguments.
    if unsafe { libc::getppid() } != master {
        return 1;
    }
    // Before the handler is built: the app runs only as the unprivileged user.
    if let Some(c) = credentials {
        if let Err(why) = c.drop_privileges() {
            say(&write, Err(io::Error::other(why)));
            return 1;
        }
    }
    let index = spec.index;
    match catch_unwind(AssertUnwindSafe(|| {
        worker::run(spec, app, |r| say(&write, r))
    })) {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            tracing::error!("worker {index}: {e}");
            1
        }
        Err(_) => EXIT_PANIC,
    }
}

/// Write the readiness line: `+MODE` or `-ERRNO WHY`.
fn say(pipe: &OwnedFd, result: io::Result<String>) {
    let line = match result {
        Ok(mode) => format!("+{mode}\n"),
        Err(e) => format!("-{} {e}\n", e.raw_os_error().unwrap_or(0)),
    };
    // SAFETY: writes from a live buffer to our own pipe. The line is far below PIPE_BUF, so it
    // arrives whole; if the master is gone there is nothing to do.
    unsafe { libc::write(pipe.as_raw_fd(), line.as_ptr().cast(), line.len()) };
}

impl Child {
    pub fn pid(&self) -> Option<libc::pid_t> {
        match self.body {
            Body::Process(pid) => Some(pid),
            Body::Thread(_) => None,
        }
    }

    /// The master's descriptors for this worker (a process worker forked later closes them).
    pub fn raw_fds(&self) -> Option<RawFd> {
        self.ready.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// Whether the worker has said it is accepting, or why it could not start.
    pub fn poll_ready(&mut self) -> Ready {
        let Some(pipe) = &mut self.ready else {
            return Ready::Pending;
        };
        let mut buf = [0u8; 512];
        let mut eof = false;
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => self.said.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break, // WouldBlock: nothing more for now
            }
        }
        let Some(end) = self.said.iter().position(|&b| b == b'\n') else {
            if !eof {
                return Ready::Pending;
            }
            self.ready = None;
            return Ready::Failed {
                errno: None,
                why: "it exited before it was accepting (see the messages above)".into(),
            };
        };
        self.ready = None;
        let line = String::from_utf8_lossy(&self.said[..end]).into_owned();
        match line.strip_prefix('+') {
            Some(_mode) => Ready::Serving,
            None => {
                let rest = line.trim_start_matches('-');
                let (errno, why) = rest.split_once(' ').unwrap_or(("0", rest));
                Ready::Failed {
                    errno: errno.parse().ok().filter(|&e| e != 0),
                    why: why.to_string(),
                }
            }
        }
    }

    /// How the worker ended, once it has (reaping a process).
    pub fn poll_exit(&mut self) -> Option<Exit> {
        match &mut self.body {
            Body::Thread(handle) => {
                if !handle.as_ref()?.is_finished() {
                    return None;
                }
                Some(match handle.take()?.join() {
                    Ok(Ok(())) => Exit::Code(0),
                    Ok(Err(e)) => Exit::Failed(e.to_string()),
                    Err(_) => Exit::Panicked,
                })
            }
            Body::Process(pid) => {
                let mut status = 0;
                // SAFETY: waits for our own child without blocking.
                let rc = unsafe { libc::waitpid(*pid, &mut status, libc::WNOHANG) };
                if rc == 0 {
                    return None;
                }
                if rc < 0 {
                    // ECHILD: already reaped; nothing more to learn.
                    return Some(Exit::Code(-1));
                }
                Some(if libc::WIFSIGNALED(status) {
                    Exit::Signal(libc::WTERMSIG(status))
                } else {
                    Exit::Code(libc::WEXITSTATUS(status))
                })
            }
        }
    }

    /// Send a signal to a worker process (a thread cannot be signalled on its own).
    pub fn kill(&self, signal: i32) {
        if let Body::Process(pid) = self.body {
            // SAFETY: signals our own child, which is not reaped yet (so the pid is ours).
            unsafe { libc::kill(pid, signal) };
        }
    }
}
