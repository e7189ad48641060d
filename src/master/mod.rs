//! The master: the only part of the server that knows processes and signals. It owns every
//! listening socket for the server's whole life ([`sockets`]), starts the workers on them as
//! threads or forked processes ([`workers`]), and supervises them: a worker that dies is
//! replaced on the same CPU and socket, a stuck one is reported (and, as a process, killed),
//! one that has served `--max-requests` is replaced by a fresh one, and reloads and resizes
//! start new workers before the old ones drain, so no connection is ever dropped.
//!
//! Slots: worker slot i runs on CPU `cpus[i % len]` and accepts on socket i of every bind
//! address. Connections go only to *live* slots (a serving worker, below the target count);
//! the sockets of other slots are steered away from ([`steer`]) until a worker serves them or,
//! for slots above the target, until their queues have run dry and the socket can close.

mod board;
mod descriptors;
mod metrics;
pub mod notify;
mod pidfile;
mod privileges;
pub mod signals;
mod sockets;
mod steer;
pub mod upgrade;
mod workers;

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::app::DynApp;
use crate::config::{available_cpus, Backend, Bind, Config, WorkerClass};
use crate::metrics::text::{Restart, Slot, Snapshot};
use crate::metrics::Counters;
use crate::tls::Tls;
use crate::worker::{self, Wake};
use crate::App;
use board::Board;
pub use board::{now_ms, Pulse};
pub use pidfile::Pidfile;
pub use privileges::Credentials;
pub use signals::Signal;
pub(crate) use sockets::new_tcp_socket;
pub use sockets::BindError;
use sockets::{Inherited, Sockets, Tuning};
pub use upgrade::{Upgrade, UpgradeState};
use workers::{Child, Exit, Ready};

/// A worker that dies this soon after starting is not restarted at once: it would only die
/// again. Its slot backs off (1 s, 2 s, 4 s ... up to [`MAX_BACKOFF`]).
const MIN_LIFETIME: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A slot above the target count is drained once its queue has been empty this long after
/// new connections were steered away from it (handshakes under way when steering changed
/// complete within a round trip; this covers a lost SYN-ACK retransmitted after 1 s).
const RETIRE_QUIET: Duration = Duration::from_secs(2);
/// After SIGABRT, a stuck worker process gets this long before SIGKILL.
const ABORT_GRACE: Duration = Duration::from_secs(1);
/// Most workers at once (a reload briefly runs two per slot).
const BOARD_LINES: usize = 2 * crate::config::MAX_WORKERS + 64;

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    /// A listening socket could not be created or bound.
    Bind(BindError),
    /// The kernel refused io_uring (disabled by sysctl, blocked by seccomp, too old).
    IoUring(io::Error),
    /// Some other OS error while starting a worker.
    Worker(io::Error),
    /// `--user`/`--group` cannot be resolved or taken, or a startup step failed.
    Setup(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Bind(e) => e.fmt(f),
            StartError::IoUring(e) => write!(
                f,
                "io_uring is unavailable ({e}) and --backend io_uring asks for it (Linux 5.19 \
                 or later). Enable it with `sysctl kernel.io_uring_disabled=0`, and in a \
                 container use a seccomp profile that allows io_uring_setup, io_uring_enter and \
                 io_uring_register; or run with --backend auto (epoll where io_uring is \
                 blocked)"
            ),
            StartError::Worker(e) => write!(f, "cannot start a worker: {e}"),
            StartError::Setup(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for StartError {}

/// Entry point of the engine; see [`Server::start`].
#[derive(Debug)]
pub struct Server;

impl Server {
    /// Bind every address, start `config.workers` pinned workers serving `app`, and return once
    /// all of them are accepting. The server runs until [`Running::shutdown`] (or until the
    /// process exits); it installs no signal handling of its own: call [`Running::supervise`]
    /// now and then to have dead workers replaced.
    ///
    /// With [`WorkerClass::Process`] the workers are forked: the calling process must be
    /// single-threaded (as the `ringcorn` command's master is).
    pub fn start<A: App>(config: Config, app: A) -> Result<Running, StartError> {
        Running::start_erased(config, DynApp::new(app))
    }
}

/// Where a worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Started; not yet accepting.
    Starting,
    /// Accepting.
    Serving,
    /// Told to drain: finishing its connections, then exiting.
    Draining,
}

/// One worker, as the master sees it.
struct Worker {
    slot: usize,
    /// Its line on the board; unique among the workers alive.
    line: usize,
    child: Child,
    wake: Arc<Wake>,
    state: State,
    started: Instant,
    /// Workers (by line) to drain once this one is accepting: the ones it replaces.
    replaces: Vec<usize>,
    /// A replacement has been started for it (max-requests).
    replaced: bool,
    /// When a heartbeat timeout was last reported, and whether SIGABRT was sent.
    timed_out: Option<(Instant, bool)>,
}

impl Worker {
    fn who(&self) -> String {
        match self.child.pid() {
            Some(pid) => format!("worker {} (pid {pid})", self.slot),
            None => format!("worker {}", self.slot),
        }
    }
}

/// A slot whose workers died young: when it may be tried again.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    failures: u32,
    until: Instant,
    /// The last one never got as far as accepting (its ring or its handler failed).
    never_served: bool,
}

/// A started server: the master's state.
pub struct Running {
    config: Config,
    app: DynApp,
    cpus: Vec<usize>,
    sockets: Sockets,
    board: Arc<Board>,
    workers: Vec<Worker>,
    /// Workers wanted (`--workers`, changed by TTIN/TTOU and reloads).
    target: usize,
    /// Per slot: backing off after failed starts.
    backoff: Vec<Option<Backoff>>,
    /// Per slot above the target: since when its queue has been empty and steered away.
    quiet_since: Vec<Option<Instant>>,
    /// Sockets of addresses dropped by a reload, closed once the workers of earlier
    /// configurations (lines listed) have exited.
    closing: Vec<(Sockets, Vec<usize>)>,
    /// The steering last applied (live slots).
    live: Vec<usize>,
    /// Socket activation: the sockets systemd passed, served instead of `--bind`.
    activated: Option<Vec<Bind>>,
    /// `--user`/`--group`: taken by the whole process (threads) or by each worker process.
    credentials: Option<Credentials>,
    /// Requests answered by workers that have exited.
    served_before: u64,
    /// A stop is announced (`--drain-delay`): health paths answer 503.
    stop_announced: bool,
    stopping: bool,
    /// xorshift state for `--max-requests-jitter`.
    rng: u64,
    /// `--metrics`: the master's listener for scrapes.
    metrics: Option<metrics::Endpoint>,
    /// Per slot: what its exited workers had counted, and why workers were replaced.
    carried: Vec<Counters>,
    restarts: Vec<[u64; 3]>,
    started: (Instant, SystemTime),
    /// The workers' I/O driver (`--backend auto`: probed once).
    backend: worker::Chosen,
    /// `--certfile`: the certificates loaded, shared by every worker.
    tls: Option<Arc<Tls>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("addrs", &self.addrs())
            .field("workers", &self.workers.len())
            .field("target", &self.target)
            .field("stopping", &self.stopping)
            .finish()
    }
}

impl Running {
    /// [`Server::start`] for an app whose type is already erased.
    pub(crate) fn start_erased(config: Config, app: DynApp) -> Result<Running, StartError> {
        Running::start_with(config, app, || Ok(()))
    }

    /// Start: take the sockets passed to this process (an upgrade's, or systemd's) or bind
    /// the configured ones, run `bound` (the pidfile), drop privileges, start the workers.
    pub(crate) fn start_with(
        config: Config,
        app: DynApp,
        bound: impl FnOnce() -> Result<(), String>,
    ) -> Result<Running, StartError> {
        // Before binding or dropping privileges: a key file may be readable by root only.
        let tls = load_tls(&config, None).map_err(StartError::Setup)?;
        let credentials = Credentials::resolve(config.user.as_deref(), config.group.as_deref())
            .map_err(StartError::Setup)?;
        // Before any worker thread: growing a shared table later stalls the worker that does.
        descriptors::reserve(
            config
                .workers
                .saturating_mul(config.max_connections)
                .saturating_add(1024),
        );
        let mut inherited = Inherited::take().map_err(StartError::Worker)?;
        let activated = inherited.activated();
        if let Some(binds) = &activated {
            tracing::info!(
                "Socket activation: serving the {} socket(s) systemd passed (--bind is not used)",
                binds.len()
            );
        }
        let binds = activated.clone().unwrap_or_else(|| config.binds.clone());
        let slots = config.workers.max(inherited.slots());
        let owner = credentials.as_ref().map(|c| (c.uid, c.gid));
        let sockets = Sockets::bind(&binds, slots, tuning(&config), owner, &mut inherited)
            .map_err(StartError::Bind)?;
        bound().map_err(StartError::Setup)?;
        // Before privileges drop, like the other sockets (a port below 1024).
        let metrics = match &config.metrics {
            Some(bind) => Some(
                metrics::Endpoint::open(bind, owner, inherited.upgrade())
                    .map_err(StartError::Bind)?,
            ),
            None => None,
        };
        if let (WorkerClass::Thread, Some(c)) = (config.worker_class, &credentials) {
            // What the server must still open or remove as the user: new sockets in the same
            // reuseport groups (TTIN, reloads), the log it reopens, the pidfile.
            if let Err(e) = sockets.give_to(c.uid, c.gid) {
                tracing::warn!("cannot give the listening sockets to {}: {e}", c.shown());
            }
            let files = [
                crate::log::current(),
                crate::log::access_path(),
                config.pidfile.clone(),
            ];
            for path in files.iter().flatten() {
                if let Err(e) = std::os::unix::fs::chown(path, Some(c.uid), Some(c.gid)) {
                    tracing::warn!("cannot give {} to {}: {e}", path.display(), c.shown());
                }
            }
            c.drop_privileges().map_err(StartError::Setup)?;
            tracing::info!("Serving as {} (uid {}, gid {})", c.shown(), c.uid, c.gid);
        }
        let backend = choose_backend(config.backend);
        let board = Board::new(BOARD_LINES).map_err(StartError::Worker)?;
        let cpus = if config.cpus.is_empty() {
            available_cpus()
        } else {
            config.cpus.clone()
        };
        let rng = seed();
        let mut master = Running {
            target: config.workers,
            config,
            app,
            cpus,
            sockets,
            board,
            workers: Vec::new(),
            backoff: Vec::new(),
            quiet_since: Vec::new(),
            closing: Vec::new(),
            live: Vec::new(),
            activated,
            credentials,
            served_before: 0,
            stop_announced: false,
            stopping: false,
            rng,
            metrics,
            carried: Vec::new(),
            restarts: Vec::new(),
            started: (Instant::now(), SystemTime::now()),
            backend,
            tls,
        };
        // Inherited slots above the target get a worker too, to serve what waits in their
        // queues until they are retired.
        for slot in 0..slots {
            master.spawn(slot, Vec::new()).map_err(StartError::Worker)?;
        }
        // On error, the workers started so far are told to drain when `master` drops.
        while master.workers.iter().any(|w| w.state == State::Starting) {
            for i in 0..master.workers.len() {
                match master.workers[i].child.poll_ready() {
                    Ready::Pending => {}
                    Ready::Serving => master.workers[i].state = State::Serving,
                    Ready::Failed { errno, why } => {
                        let who = master.workers[i].who();
                        return Err(match errno {
                            Some(e) => StartError::IoUring(io::Error::from_raw_os_error(e)),
                            None => StartError::Worker(io::Error::other(format!("{who}: {why}"))),
                        });
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        master.steer();
        for shown in master.sockets.shown_tls(|b| master.config.speaks_tls(b)) {
            tracing::info!("Listening at: {shown}");
        }
        if let Some(m) = &master.metrics {
            tracing::info!("Metrics at: {}", m.shown());
        }
        Ok(master)
    }

    /// The addresses being served, with the real ports (none once stopping).
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.sockets.addrs()
    }

    /// The configuration the server runs with now.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Start a worker on `slot`, to replace the workers (by line) in `replaces` once it is
    /// accepting.
    fn spawn(&mut self, slot: usize, replaces: Vec<usize>) -> io::Result<()> {
        let line = (0..self.board.len())
            .find(|l| !self.workers.iter().any(|w| w.line == *l))
            .ok_or_else(|| io::Error::other("too many workers at once"))?;
        self.board.reset(line);
        let wake = Arc::new(Wake::new()?);
        let max_requests = match self.config.max_requests {
            0 => 0,
            n => n + self.jitter(),
        };
        let spec = worker::Spec {
            index: slot,
            cpu: (!self.cpus.is_empty()).then(|| self.cpus[slot % self.cpus.len()]),
            listeners: self
                .sockets
                .for_slot(slot, |bind| self.config.speaks_tls(bind))?,
            tls: self.tls.as_ref().map(|t| t.config.clone()),
            wake: wake.clone(),
            keep_alive: self.config.keep_alive,
            header_timeout: self.config.header_timeout,
            body_timeout: self.config.body_timeout,
            send_timeout: self.config.send_timeout,
            max_connections: self.config.max_connections,
            limits: self.config.limits.clone(),
            body_temp_dir: self.config.body_temp_dir.clone(),
            pulse: Some(Pulse::new(self.board.clone(), line)),
            max_requests,
            health_path: self.config.health_path.clone(),
            access_log: self.config.access_log.clone(),
            proxy: self
                .config
                .proxy_protocol
                .map(|v| (v, self.config.proxy_allow_from.clone())),
            forwarded_allow: self.config.forwarded_allow_ips.clone(),
            metrics: self.config.metrics.is_some(),
            backend: self.backend,
            threads: self.config.threads,
        };
        if self.stop_announced {
            self.board.announce_stop(line);
        }
        let master_fds = self.raw_fds();
        let child = workers::start(
            self.config.worker_class,
            spec,
            &self.app,
            &master_fds,
            self.credentials.as_ref(),
        )?;
        if let Some(pid) = child.pid() {
            tracing::info!("Booting worker {slot} with pid: {pid}");
        }
        self.workers.push(Worker {
            slot,
            line,
            child,
            wake,
            state: State::Starting,
            started: Instant::now(),
            replaces,
            replaced: false,
            timed_out: None,
        });
        Ok(())
    }

    /// A worker on `slot` is starting or serving (not draining).
    fn active_on(&self, slot: usize) -> bool {
        self.workers
            .iter()
            .any(|w| w.slot == slot && w.state != State::Draining)
    }

    /// A worker on `slot` is accepting.
    fn serving_on(&self, slot: usize) -> bool {
        self.workers
            .iter()
            .any(|w| w.slot == slot && w.state == State::Serving)
    }

    /// Every descriptor of the master's, for a forked worker to close.
    fn raw_fds(&self) -> Vec<RawFd> {
        let mut fds = self.sockets.raw_fds();
        for (s, _) in &self.closing {
            fds.extend(s.raw_fds());
        }
        for w in &self.workers {
            fds.push(w.wake.raw_fd());
            fds.extend(w.child.raw_fds());
        }
        fds
    }

    fn jitter(&mut self) -> u64 {
        if self.config.max_requests_jitter == 0 {
            return 0;
        }
        // xorshift64: plenty for spreading restarts.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % (self.config.max_requests_jitter + 1)
    }

    /// Begin a graceful shutdown: workers stop accepting, finish the requests under way, close
    /// idle connections, and exit.
    pub fn stop(&mut self) {
        self.stopping = true;
        for w in &mut self.workers {
            w.wake.drain();
            w.state = State::Draining;
        }
        // The workers let go of their copies as they stop accepting.
        self.sockets.close_all();
        self.closing.clear();
    }

    /// `--drain-delay`: a stop is coming; every worker's health path answers 503 from now on
    /// while it serves on.
    pub fn announce_stop(&mut self) {
        self.stop_announced = true;
        for w in &self.workers {
            self.board.announce_stop(w.line);
        }
    }

    /// Quick stop: worker processes are killed at once (threads end with the process).
    pub fn kill(&mut self) {
        self.stopping = true;
        for w in &self.workers {
            w.child.kill(libc::SIGKILL);
        }
        for w in &mut self.workers {
            while w.child.pid().is_some() && w.child.poll_exit().is_none() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        self.workers.retain(|w| w.child.pid().is_none());
    }

    /// Whether every worker has exited.
    pub fn finished(&mut self) -> bool {
        self.reap();
        self.workers.is_empty()
    }

    /// Wait until every worker has exited or `deadline` passes; true if all exited.
    pub fn wait_until(&mut self, deadline: Instant) -> bool {
        loop {
            if self.finished() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Graceful shutdown: [`Self::stop`], then wait up to the graceful timeout. Returns whether
    /// every worker finished in time (connections left are closed when the process exits).
    pub fn shutdown(mut self) -> bool {
        self.stop();
        let deadline = Instant::now() + self.config.graceful_timeout;
        self.wait_until(deadline)
    }

    /// One round of supervision: note workers that became ready or exited, replace the dead,
    /// the stuck and the retiring, retire slots above the target, steer connections to the
    /// live slots. Errors when no worker can be started at all.
    pub fn supervise(&mut self) -> Result<(), String> {
        self.poll_ready();
        self.reap();
        if self.stopping {
            return Ok(());
        }
        self.check_heartbeats();
        self.replace_retiring();
        self.retire_slots();
        self.fill_slots();
        self.steer();
        self.close_dropped_addresses();
        // Exit only when no worker runs and every slot's last attempt could not even start
        // (workers that served before dying young are retried, backing off).
        let alive = self.workers.iter().any(|w| w.state != State::Draining);
        let none_can_start = (0..self.target).all(|s| {
            self.backoff
                .get(s)
                .copied()
                .flatten()
                .is_some_and(|b| b.never_served)
        });
        if !alive && none_can_start {
            return Err("no worker can start".into());
        }
        Ok(())
    }

    fn poll_ready(&mut self) {
        for i in 0..self.workers.len() {
            if self.workers[i].state != State::Starting {
                continue;
            }
            match self.workers[i].child.poll_ready() {
                Ready::Pending => {}
                Ready::Serving => {
                    let w = &mut self.workers[i];
                    w.state = State::Serving;
                    let replaces = std::mem::take(&mut w.replaces);
                    for old in self
                        .workers
                        .iter_mut()
                        .filter(|o| replaces.contains(&o.line))
                    {
                        if old.state != State::Draining {
                            old.wake.drain();
                            old.state = State::Draining;
                        }
                    }
                }
                Ready::Failed { why, .. } => {
                    // It exits (or has exited); `reap` backs its slot off.
                    let w = &mut self.workers[i];
                    tracing::error!("{} could not start: {why}", w.who());
                    w.state = State::Draining;
                    w.replaced = true;
                    let (slot, replaces) = (w.slot, std::mem::take(&mut w.replaces));
                    // The workers it was to replace serve on.
                    for old in self
                        .workers
                        .iter_mut()
                        .filter(|o| replaces.contains(&o.line))
                    {
                        old.replaced = false;
                    }
                    self.fail_slot(slot, true);
                }
            }
        }
    }

    /// Back a slot off after its worker died young (`never_served`: before accepting).
    fn fail_slot(&mut self, slot: usize, never_served: bool) {
        if self.backoff.len() <= slot {
            self.backoff.resize(slot + 1, None);
        }
        let failures = self.backoff[slot].map_or(0, |b| b.failures) + 1;
        let wait = (MIN_LIFETIME * 2u32.saturating_pow(failures - 1)).min(MAX_BACKOFF);
        tracing::warn!(
            "worker {slot} failed to start {failures} time(s) in a row; retrying in {wait:?}"
        );
        self.backoff[slot] = Some(Backoff {
            failures,
            until: Instant::now() + wait,
            never_served,
        });
    }

    /// Collect workers that have exited; say why when they should still be serving.
    fn reap(&mut self) {
        let mut i = 0;
        while i < self.workers.len() {
            let Some(exit) = self.workers[i].child.poll_exit() else {
                i += 1;
                continue;
            };
            let w = self.workers.swap_remove(i);
            self.served_before += self.board.served(w.line);
            self.carry(w.slot, w.line);
            let lived = w.started.elapsed();
            let expected = w.state == State::Draining && exit == Exit::Code(0);
            if expected {
                tracing::debug!("{} {} after draining", w.who(), exit.describe());
                continue;
            }
            if self.stopping || w.state == State::Draining {
                tracing::warn!("{} {} while draining", w.who(), exit.describe());
                continue;
            }
            tracing::error!("{} {} (after {lived:.1?})", w.who(), exit.describe());
            self.restarted(w.slot, Restart::Died);
            if lived < MIN_LIFETIME {
                self.fail_slot(w.slot, w.state == State::Starting);
            } else if let Some(b) = self.backoff.get_mut(w.slot) {
                *b = None;
            }
        }
    }

    /// `--timeout`: a worker whose loop has not turned for that long is reported; a process
    /// is sent SIGABRT, then SIGKILL, and replaced when reaped.
    fn check_heartbeats(&mut self) {
        let timeout = self.config.timeout;
        if timeout.is_zero() {
            return;
        }
        let now = Instant::now();
        for w in &mut self.workers {
            if w.state == State::Starting {
                continue;
            }
            let age = Duration::from_millis(self.board.beat_age_ms(w.line));
            if age <= timeout {
                w.timed_out = None;
                continue;
            }
            match w.timed_out {
                None => {
                    let pid = w
                        .child
                        .pid()
                        .map_or_else(|| std::process::id().to_string(), |p| p.to_string());
                    tracing::error!("WORKER TIMEOUT (worker {}, pid {pid})", w.slot);
                    match w.child.pid() {
                        Some(_) => {
                            w.child.kill(libc::SIGABRT);
                            w.timed_out = Some((now, true));
                        }
                        None => w.timed_out = Some((now, false)),
                    }
                }
                Some((at, true)) if now >= at + ABORT_GRACE => {
                    w.child.kill(libc::SIGKILL);
                }
                Some((at, false)) if now >= at + timeout => {
                    // A thread cannot be killed: say so again every timeout.
                    tracing::error!(
                        "WORKER TIMEOUT (worker {}, pid {}): stuck for {age:.0?}; a worker thread cannot be \
                         killed (use --worker-class process to have it replaced)",
                        w.slot,
                        std::process::id()
                    );
                    w.timed_out = Some((now, false));
                }
                Some(_) => {}
            }
        }
    }

    /// `--max-requests`: a worker that asked to retire gets a replacement on its slot; it
    /// drains once the replacement is accepting.
    fn replace_retiring(&mut self) {
        let asking: Vec<(usize, usize)> = self
            .workers
            .iter()
            .filter(|w| w.state == State::Serving && !w.replaced && self.board.wants_retire(w.line))
            .map(|w| (w.slot, w.line))
            .collect();
        for (slot, line) in asking {
            if slot >= self.target {
                continue; // retired with its slot instead
            }
            match self.spawn(slot, vec![line]) {
                Ok(()) => {
                    self.restarted(slot, Restart::MaxRequests);
                    if let Some(w) = self.workers.iter_mut().find(|w| w.line == line) {
                        w.replaced = true;
                        tracing::info!(
                            "{} served {} requests (--max-requests); replacing it",
                            w.who(),
                            self.board.served(line)
                        );
                    }
                }
                Err(e) => tracing::error!("cannot start a replacement for worker {slot}: {e}"),
            }
        }
    }

    /// Slots at or above the target: steered away; drained once their queue has been quiet;
    /// the top one closed once no worker is left on it and nothing waits in it.
    fn retire_slots(&mut self) {
        let slots = self.sockets.slots();
        self.quiet_since
            .resize(slots.max(self.quiet_since.len()), None);
        let now = Instant::now();
        for slot in 0..slots {
            if slot < self.target {
                self.quiet_since[slot] = None;
                continue;
            }
            if self.sockets.queued(slot) > 0 {
                self.quiet_since[slot] = None;
                continue;
            }
            let since = *self.quiet_since[slot].get_or_insert(now);
            if now < since + RETIRE_QUIET {
                continue;
            }
            for w in self
                .workers
                .iter_mut()
                .filter(|w| w.slot == slot && w.state != State::Draining)
            {
                tracing::info!("{}: slot retired, draining", w.who());
                w.wake.drain();
                w.state = State::Draining;
            }
        }
        loop {
            let top = self.sockets.slots();
            if top <= self.target {
                break;
            }
            let slot = top - 1;
            let quiet = self
                .quiet_since
                .get(slot)
                .copied()
                .flatten()
                .is_some_and(|s| now >= s + RETIRE_QUIET);
            let empty = !self.workers.iter().any(|w| w.slot == slot);
            if !(quiet && empty && self.sockets.queued(slot) == 0) {
                break;
            }
            self.sockets.close_top();
            self.quiet_since.truncate(slot);
            tracing::debug!("slot {slot} closed");
        }
    }

    /// Start a worker on every slot below the target that has none (unless it is backing
    /// off), and on a retired slot that still has connections waiting and no worker.
    fn fill_slots(&mut self) {
        let now = Instant::now();
        for slot in 0..self.sockets.slots().max(self.target) {
            if self.active_on(slot) {
                continue;
            }
            let wanted = slot < self.target || self.sockets.queued(slot) > 0;
            let waiting = self
                .backoff
                .get(slot)
                .copied()
                .flatten()
                .is_some_and(|b| now < b.until);
            if !wanted || waiting {
                continue;
            }
            if let Err(e) = self.sockets.grow(slot + 1, &self.live) {
                tracing::error!("cannot add worker {slot}: {e}");
                self.fail_slot(slot, true);
                continue;
            }
            if let Err(e) = self.spawn(slot, Vec::new()) {
                tracing::error!("cannot start worker {slot}: {e}");
                self.fail_slot(slot, true);
            } else {
                tracing::info!("worker {slot} starting");
            }
        }
    }

    /// Steer new connections to the live slots: below the target, with a worker accepting.
    fn steer(&mut self) {
        let live: Vec<usize> = (0..self.target.min(self.sockets.slots()))
            .filter(|&s| self.serving_on(s))
            .collect();
        if live == self.live {
            return;
        }
        match self.sockets.steer(&live) {
            Ok(()) => self.live = live,
            Err(e) => tracing::error!("cannot steer connections to workers {live:?}: {e}"),
        }
    }

    fn close_dropped_addresses(&mut self) {
        self.closing
            .retain(|(_, lines)| self.workers.iter().any(|w| lines.contains(&w.line)));
    }

    /// TTIN: one worker more.
    pub fn grow(&mut self) {
        if self.target >= crate::config::MAX_WORKERS {
            tracing::warn!("SIGTTIN: already at the most workers ({})", self.target);
            return;
        }
        self.target += 1;
        let slot = self.target - 1;
        if self.active_on(slot) {
            // Its slot was being retired and its worker still serves: it simply stays.
            tracing::info!(
                "SIGTTIN: {} workers (worker {slot} stays: its retirement is called off)",
                self.target
            );
        } else {
            tracing::info!("SIGTTIN: {} workers", self.target);
        }
        self.fill_slots();
        self.steer();
    }

    /// TTOU: one worker fewer (never below one).
    pub fn shrink(&mut self) {
        if self.target <= 1 {
            tracing::warn!("SIGTTOU ignored: already at one worker");
            return;
        }
        self.target -= 1;
        tracing::info!(
            "SIGTTOU: {} workers (worker {} retires once its queue is empty)",
            self.target,
            self.target
        );
        self.steer();
    }

    /// HUP: run `config` and `app` from now on. New workers start on every slot (with new
    /// sockets for new addresses); each old worker drains once its slot's new worker is
    /// accepting; slots past the new count retire. On a bind error nothing changes.
    pub(crate) fn reload(&mut self, config: Config, app: DynApp) -> Result<(), String> {
        if config.worker_class != self.config.worker_class {
            // Forking beside running worker threads is unsafe, and threads beside a forking
            // master would be too: a new class needs a new master.
            let name = |c: crate::config::WorkerClass| format!("{c:?}").to_lowercase();
            return Err(format!(
                "key `worker-class`: cannot change from {} to {} on reload (use USR2, the \
                 binary upgrade, or a restart)",
                name(self.config.worker_class),
                name(config.worker_class)
            ));
        }
        if (&config.user, &config.group, config.umask)
            != (&self.config.user, &self.config.group, self.config.umask)
        {
            return Err(
                "keys `user`, `group` and `umask` cannot change on reload (use USR2, the binary \
                 upgrade, or a restart)"
                    .into(),
            );
        }
        let tls = load_tls(&config, self.tls.as_deref())?;
        let slots = config.workers;
        let binds = self
            .activated
            .clone()
            .unwrap_or_else(|| config.binds.clone());
        let dropped = self
            .sockets
            .rebind(
                &binds,
                slots,
                tuning(&config),
                &mut Inherited::default(),
                false,
            )
            .map_err(|e| e.to_string())?;
        let old_lines: Vec<usize> = self.workers.iter().map(|w| w.line).collect();
        let gone = dropped.shown();
        if !gone.is_empty() {
            for shown in gone {
                tracing::info!("No longer listening at: {shown}");
            }
            self.closing.push((dropped, old_lines));
        }
        if let Err(e) = self.sockets.grow(slots, &self.live) {
            tracing::error!("{e}");
        }
        if config.backend != self.config.backend {
            self.backend = choose_backend(config.backend);
        }
        self.config = config;
        self.app = app;
        self.tls = tls;
        self.target = slots;
        self.cpus = if self.config.cpus.is_empty() {
            available_cpus()
        } else {
            self.config.cpus.clone()
        };
        for slot in 0..slots {
            let old: Vec<usize> = self
                .workers
                .iter()
                .filter(|w| w.slot == slot && w.state != State::Draining)
                .map(|w| w.line)
                .collect();
            for w in self.workers.iter_mut().filter(|w| old.contains(&w.line)) {
                w.replaced = true;
            }
            if !old.is_empty() {
                self.restarted(slot, Restart::Reload);
            }
            if let Err(e) = self.spawn(slot, old) {
                tracing::error!("cannot start worker {slot}: {e}");
            }
        }
        self.reopen_metrics();
        for shown in self.sockets.shown_tls(|b| self.config.speaks_tls(b)) {
            tracing::info!("Listening at: {shown}");
        }
        Ok(())
    }

    /// Wait up to `timeout` for one of the master's signals, serving `--metrics` scrapes
    /// meanwhile (the signals must be blocked: [`signals::block`]).
    pub fn wait(&mut self, timeout: Duration) -> Option<Signal> {
        let mut fds = Vec::new();
        if let Some(m) = &self.metrics {
            m.poll_fds(&mut fds);
        }
        let signal = signals::wait(timeout, &mut fds);
        if fds.iter().any(|fd| fd.revents != 0) {
            if let Some(mut m) = self.metrics.take() {
                m.serve(&mut || self.render_metrics());
                self.metrics = Some(m);
            }
        }
        signal
    }

    /// The Prometheus text of every slot's counters (exited workers' included) and the
    /// server's own figures.
    fn render_metrics(&self) -> String {
        let slots = self
            .carried
            .len()
            .max(self.target)
            .max(self.workers.iter().map(|w| w.slot + 1).max().unwrap_or(0));
        let mut view: Vec<Slot> = (0..slots)
            .map(|i| Slot {
                counters: self.carried.get(i).cloned().unwrap_or_default(),
                heartbeat_age: None,
                restarts: self.restarts.get(i).copied().unwrap_or_default(),
            })
            .collect();
        for w in self.workers.iter().filter(|w| w.state != State::Starting) {
            let slot = &mut view[w.slot];
            slot.counters.absorb(&self.board.counters(w.line), true);
            let age = Duration::from_millis(self.board.beat_age_ms(w.line));
            slot.heartbeat_age = Some(slot.heartbeat_age.map_or(age, |a| a.max(age)));
        }
        let serving = self
            .workers
            .iter()
            .filter(|w| w.state == State::Serving)
            .count();
        let start_time = self
            .started
            .1
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let class = match self.config.worker_class {
            WorkerClass::Thread => "thread",
            WorkerClass::Process => "process",
        };
        crate::metrics::text::render(&Snapshot {
            slots: &view,
            workers: serving,
            target: self.target,
            uptime: self.started.0.elapsed(),
            start_time,
            version: env!("CARGO_PKG_VERSION"),
            worker_class: class,
        })
    }

    /// Keep what the worker on `line` counted (it has exited) with its slot's.
    fn carry(&mut self, slot: usize, line: usize) {
        if self.carried.len() <= slot {
            self.carried.resize(slot + 1, Counters::default());
        }
        self.carried[slot].absorb(&self.board.counters(line), false);
    }

    fn restarted(&mut self, slot: usize, why: Restart) {
        if self.restarts.len() <= slot {
            self.restarts.resize(slot + 1, [0; 3]);
        }
        self.restarts[slot][why as usize] += 1;
    }

    /// A reload changed `--metrics`: listen on the new address (the old listener stays if
    /// the new one cannot be had).
    fn reopen_metrics(&mut self) {
        let wanted = self.config.metrics.clone();
        if self.metrics.as_ref().map(|m| m.bind()) == wanted.as_ref() {
            return;
        }
        let Some(bind) = wanted else {
            tracing::info!("Metrics no longer served");
            self.metrics = None;
            return;
        };
        // The old listener closes once the new one listens (SO_REUSEPORT lets the same TCP
        // address, spelt differently, bind beside it).
        let owner = self.credentials.as_ref().map(|c| (c.uid, c.gid));
        match metrics::Endpoint::open(&bind, owner, false) {
            Ok(m) => {
                tracing::info!("Metrics at: {}", m.shown());
                self.metrics = Some(m);
            }
            Err(e) => tracing::error!("{e}; metrics stay where they were"),
        }
    }

    /// Whether every worker's loop has turned within `max_age` (the systemd watchdog pings
    /// only then). Starting workers have not been asked to beat yet.
    pub fn heartbeats_fresh(&self, max_age: Duration) -> bool {
        self.workers.iter().all(|w| {
            w.state == State::Starting
                || Duration::from_millis(self.board.beat_age_ms(w.line)) <= max_age
        })
    }

    /// Every started worker is accepting (a reload or resize has settled).
    pub fn settled(&self) -> bool {
        !self.workers.iter().any(|w| w.state == State::Starting)
    }

    /// systemd's STATUS= line: workers serving and requests answered.
    pub fn status(&self) -> String {
        let serving = self
            .workers
            .iter()
            .filter(|w| w.state == State::Serving)
            .count();
        let served: u64 = self.served_before
            + self
                .workers
                .iter()
                .map(|w| self.board.served(w.line))
                .sum::<u64>();
        format!("{serving} workers serving, {served} requests answered")
    }

    /// SIGUSR1: worker processes reopen their log files (threads share the master's, which
    /// the caller reopens).
    pub fn reopen_logs(&self) {
        if self.config.worker_class == WorkerClass::Process {
            for w in &self.workers {
                self.board.ask_reopen_logs(w.line);
            }
        }
    }

    /// An upgrade handed over: the socket files are the new master's to remove.
    pub fn hand_over(&mut self) {
        self.sockets.hand_over_files();
        for (s, _) in &mut self.closing {
            s.hand_over_files();
        }
    }

    /// This master (started by an upgrade) has taken over: the socket files are its own.
    pub fn take_over(&mut self) {
        self.sockets.own_files();
    }

    /// Start a binary upgrade: the new master gets every socket.
    pub(crate) fn upgrade(&self, pidfile: Option<&Pidfile>) -> io::Result<Upgrade> {
        Upgrade::begin(&self.sockets, pidfile)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Workers still running are told to drain (threads end with the process; processes
        // would otherwise serve on alone).
        for w in &self.workers {
            w.wake.drain();
        }
    }
}

/// A pipe whose read end does not block (both ends close on exec).
/// `--backend`: io_uring or epoll as asked; `auto` probes io_uring once and falls back to
/// epoll, saying why in one line (an explicit `io_uring` that cannot be had fails when the
/// workers start, as a startup error).
/// `--certfile` and the rest, loaded (`previous`: a reload's, whose session keys carry over).
fn load_tls(config: &Config, previous: Option<&Tls>) -> Result<Option<Arc<Tls>>, String> {
    let Some(settings) = &config.tls else {
        if let Some(bind) = config.tls_binds.first() {
            return Err(format!(
                "--tls-bind {bind}: TLS needs --certfile and --keyfile"
            ));
        }
        return Ok(None);
    };
    if let Some(both) = config
        .tls_binds
        .iter()
        .find(|b| config.binds.iter().filter(|c| c == b).count() > 1)
    {
        return Err(format!(
            "--tls-bind {both} is also a --bind: an address speaks TLS or plain HTTP, not both"
        ));
    }
    let tls = Tls::load(settings, previous)?;
    for l in &tls.loaded {
        tracing::info!(
            "TLS certificate {} for {} (valid until {})",
            l.certfile.display(),
            if l.names.is_empty() {
                "no DNS name".to_string()
            } else {
                l.names.join(", ")
            },
            l.not_after
        );
    }
    Ok(Some(Arc::new(tls)))
}

/// The listening sockets' setup from the configuration.
fn tuning(config: &Config) -> Tuning {
    Tuning {
        backlog: config.backlog,
        notsent_lowat: config.notsent_lowat,
    }
}

fn choose_backend(asked: Backend) -> worker::Chosen {
    match asked {
        Backend::IoUring => worker::Chosen::IoUring,
        Backend::Epoll => worker::Chosen::Epoll,
        Backend::Auto => match worker::probe() {
            Ok(_) => worker::Chosen::IoUring,
            Err(u) => {
                tracing::warn!(
                    "io_uring is unavailable, serving with epoll instead: {} ({})",
                    u.why,
                    u.cause
                );
                worker::Chosen::Epoll
            }
        },
    }
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into a live array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: fcntl on our own descriptor; the master polls the read end.
    unsafe { libc::fcntl(r.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    Ok((r, w))
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (t ^ (u64::from(std::process::id()) << 32)) | 1
}
