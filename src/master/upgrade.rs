//! USR2, nginx's zero-downtime binary upgrade: the master fork+execs the binary at the path it
//! was started from (so a replaced file is the new version) with the same arguments, passing
//! every listening socket in slot order through the environment. The new master starts its
//! workers on them and, once all are accepting, writes `ready PID` on a socket pair; the old
//! master tells systemd the new main pid (when under systemd), answers `go` so that the new
//! one may speak to systemd from now on, and drains and exits. If the new one exits first,
//! or is not ready in time, the old master says so, restores its pidfile and serves on.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::sockets::{self, Sockets, INHERIT_ENV};
use super::Pidfile;

/// Names the socket on which a new master says it is ready.
const READY_ENV: &str = "RINGCORN_UPGRADE_FD";
/// A new master that is not serving within this long is killed and the upgrade abandoned.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

static ORIGIN: OnceLock<(PathBuf, Vec<OsString>)> = OnceLock::new();

/// Remember the binary's path and arguments at startup, before the file can be replaced.
pub fn remember_origin() {
    let exe = std::env::current_exe()
        .ok()
        .or_else(|| std::env::args_os().next().map(PathBuf::from))
        .unwrap_or_default();
    let _ = ORIGIN.set((exe, std::env::args_os().skip(1).collect()));
}

/// An upgrade under way.
pub struct Upgrade {
    pid: libc::pid_t,
    ready: UnixStream,
    said: Vec<u8>,
    started: Instant,
    pidfile: Option<Pidfile>,
}

/// Where an upgrade stands.
pub enum UpgradeState {
    Pending,
    /// The new master (this pid) is serving.
    Ready(libc::pid_t),
    /// It failed; the old master serves on.
    Failed(String),
}

impl Upgrade {
    /// Start the new master.
    pub fn begin(sockets: &Sockets, pidfile: Option<&Pidfile>) -> io::Result<Upgrade> {
        let (exe, args) = ORIGIN
            .get()
            .cloned()
            .ok_or_else(|| io::Error::other("the binary's path was not recorded at startup"))?;
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        let mut pass: Vec<RawFd> = sockets.raw_fds();
        pass.push(write.as_raw_fd());
        if let Some(p) = pidfile {
            p.to_oldbin()?;
        }
        let mut cmd = Command::new(&exe);
        cmd.args(&args)
            .env(INHERIT_ENV, sockets.export())
            .env(READY_ENV, write.as_raw_fd().to_string())
            // systemd's watchdog variable names this master; the new one pings as itself
            // once it is the main process.
            .env_remove("WATCHDOG_PID");
        // SAFETY: the closure runs between fork and exec and only calls fcntl, which is
        // async-signal-safe, on descriptors that are open in the child.
        unsafe {
            cmd.pre_exec(move || {
                for &fd in &pass {
                    sockets::set_cloexec(fd, false)?;
                }
                Ok(())
            });
        }
        let child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                if let Some(p) = pidfile {
                    let _ = p.restore();
                }
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot start {}: {e}", exe.display()),
                ));
            }
        };
        drop(write);
        tracing::info!(
            "SIGUSR2: upgrading: started {} (pid {}); this master serves until it is ready",
            exe.display(),
            child.id()
        );
        Ok(Upgrade {
            pid: child.id() as libc::pid_t,
            ready: read,
            said: Vec::new(),
            started: Instant::now(),
            pidfile: pidfile.cloned(),
        })
    }

    /// The new master is the main process now: let it speak to systemd.
    pub fn release(mut self) {
        if let Err(e) = self.ready.write_all(b"go\n") {
            tracing::warn!("cannot tell the new master to take over: {e}");
        }
    }

    /// Whether the new master is ready, has failed, or is still starting.
    pub fn poll(&mut self) -> UpgradeState {
        let mut buf = [0u8; 128];
        let mut eof = false;
        loop {
            match self.ready.read(&mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => self.said.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        if self.said.ends_with(b"\n") {
            let line = String::from_utf8_lossy(&self.said).into_owned();
            if let Some(pid) = line
                .trim()
                .strip_prefix("ready ")
                .and_then(|p| p.parse().ok())
            {
                return UpgradeState::Ready(pid);
            }
        }
        let mut status = 0;
        // SAFETY: a non-blocking wait for our own child.
        let exited = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) } == self.pid;
        let why = if exited {
            Some(if libc::WIFSIGNALED(status) {
                format!("was killed by signal {}", libc::WTERMSIG(status))
            } else {
                format!("exited with code {}", libc::WEXITSTATUS(status))
            })
        } else if eof {
            // It closed the pipe without saying it is ready: it is exiting or will never be
            // ready. Make sure it is gone (it holds every listening socket) and reap it.
            // SAFETY: signals our own, unreaped child.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            // SAFETY: reaps it (it cannot survive SIGKILL).
            unsafe { libc::waitpid(self.pid, &mut status, 0) };
            Some(if libc::WIFEXITED(status) {
                format!("exited with code {}", libc::WEXITSTATUS(status))
            } else {
                "closed its ready pipe without being ready and was killed".to_string()
            })
        } else if self.started.elapsed() > READY_TIMEOUT {
            // SAFETY: signals our own, unreaped child.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            // SAFETY: reaps it (it cannot survive SIGKILL).
            unsafe { libc::waitpid(self.pid, &mut status, 0) };
            Some(format!(
                "was not ready within {READY_TIMEOUT:?} and was killed"
            ))
        } else {
            None
        };
        match why {
            None => UpgradeState::Pending,
            Some(why) => {
                if let Some(p) = &self.pidfile {
                    if let Err(e) = p.restore() {
                        tracing::error!("cannot restore {}: {e}", p.path().display());
                    }
                }
                UpgradeState::Failed(format!("the new master (pid {}) {why}", self.pid))
            }
        }
    }
}

/// In a new master started by an upgrade: the socket to the old master.
pub struct Handover {
    stream: UnixStream,
    said: Vec<u8>,
}

/// Whether this process is a new master started by an upgrade.
pub fn started_by_upgrade() -> bool {
    std::env::var_os(READY_ENV).is_some()
}

/// In a new master started by an upgrade: tell the old one that every worker is accepting.
/// The answer (`go`, or the old master gone) comes through [`Handover::taken_over`].
pub fn notify_ready() -> Option<Handover> {
    let fd = std::env::var_os(READY_ENV)?;
    std::env::remove_var(READY_ENV);
    let Some(fd) = fd.to_str().and_then(|s| s.parse::<RawFd>().ok()) else {
        tracing::warn!("{READY_ENV} is not a descriptor; the old master is not told");
        return None;
    };
    // SAFETY: fcntl only checks that the descriptor is open before we take ownership.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        tracing::warn!("{READY_ENV}={fd} is not open; the old master is not told");
        return None;
    }
    // SAFETY: the descriptor was passed to this process to own (and is closed with it).
    let mut stream = UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
    if let Err(e) = sockets::set_cloexec(fd, true) {
        tracing::warn!("{READY_ENV}: {e}");
    }
    if let Err(e) = stream.write_all(format!("ready {}\n", std::process::id()).as_bytes()) {
        tracing::warn!("cannot tell the old master that this one is ready: {e}");
        return None;
    }
    if let Err(e) = stream.set_nonblocking(true) {
        tracing::warn!("{READY_ENV}: {e}");
        return None;
    }
    Some(Handover {
        stream,
        said: Vec::new(),
    })
}

impl Handover {
    /// The old master has handed over (said `go`) or is gone.
    pub fn taken_over(&mut self) -> bool {
        let mut buf = [0u8; 16];
        loop {
            match self.stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(n) => self.said.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return true,
            }
        }
        self.said.ends_with(b"go\n")
    }
}
