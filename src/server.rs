//! The master: binds the listening sockets, spawns and pins the workers, supervises them
//! (a worker that dies is replaced), and shuts them down gracefully.

use std::io;
use std::net::SocketAddr;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::{available_cpus, Config};
use crate::listener::{self, BindError};
use crate::worker::{self, Mode, Wake};
use crate::App;

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    /// A listening socket could not be created or bound.
    Bind(BindError),
    /// The kernel refused io_uring (disabled by sysctl, blocked by seccomp, too old).
    IoUring(io::Error),
    /// Some other OS error while starting a worker.
    Worker(io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Bind(e) => e.fmt(f),
            StartError::IoUring(e) => write!(
                f,
                "io_uring is unavailable ({e}): ringcorn needs io_uring (Linux 5.19 or later). \
                 Enable it with `sysctl kernel.io_uring_disabled=0`, and in a container use a \
                 seccomp profile that allows io_uring_setup, io_uring_enter and io_uring_register"
            ),
            StartError::Worker(e) => write!(f, "cannot start a worker: {e}"),
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
    /// process exits); it installs no signal handling of its own.
    pub fn start<A: App>(config: Config, app: A) -> Result<Running, StartError> {
        let addrs = listener::resolve(&config.binds).map_err(StartError::Bind)?;
        let cpus = if config.cpus.is_empty() {
            available_cpus()
        } else {
            config.cpus.clone()
        };
        let spawner = Spawner {
            app: Arc::new(app),
            addrs: addrs.clone(),
            cpus,
            config: config.clone(),
        };
        let mut workers = Vec::with_capacity(config.workers);
        for index in 0..config.workers {
            // On error, the workers started so far are dropped with `workers`: told to drain.
            workers.push(spawner.spawn(index)?);
        }
        for addr in &addrs {
            tracing::info!("Listening at: http://{addr}");
        }
        Ok(Running {
            addrs,
            workers,
            spawner: Box::new(move |i| spawner.spawn(i)),
            graceful_timeout: config.graceful_timeout,
            draining: false,
        })
    }
}

/// A started server.
pub struct Running {
    addrs: Vec<SocketAddr>,
    workers: Vec<WorkerHandle>,
    spawner: Box<dyn Fn(usize) -> Result<WorkerHandle, StartError> + Send>,
    graceful_timeout: Duration,
    draining: bool,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("addrs", &self.addrs)
            .field("workers", &self.workers.len())
            .field("draining", &self.draining)
            .finish()
    }
}

/// A worker thread and the line to it.
struct WorkerHandle {
    thread: Option<JoinHandle<io::Result<()>>>,
    wake: Arc<Wake>,
    started: Instant,
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.wake.drain();
    }
}

/// Everything needed to (re)start worker `i`.
struct Spawner<A> {
    app: Arc<A>,
    addrs: Vec<SocketAddr>,
    cpus: Vec<usize>,
    config: Config,
}

impl<A: App> Spawner<A> {
    fn spawn(&self, index: usize) -> Result<WorkerHandle, StartError> {
        let listeners =
            listener::open(&self.addrs, self.config.backlog).map_err(StartError::Bind)?;
        let wake = Arc::new(Wake::new().map_err(StartError::Worker)?);
        let spec = worker::Spec {
            index,
            cpu: (!self.cpus.is_empty()).then(|| self.cpus[index % self.cpus.len()]),
            listeners,
            wake: wake.clone(),
            keep_alive: self.config.keep_alive,
            header_timeout: self.config.header_timeout,
            body_timeout: self.config.body_timeout,
            send_timeout: self.config.send_timeout,
            max_connections: self.config.max_connections,
            limits: self.config.limits.clone(),
        };
        let app = self.app.clone();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<io::Result<Mode>>(1);
        let thread = std::thread::Builder::new()
            .name(format!("ringcorn-w{index}"))
            .spawn(move || {
                worker::run(spec, &*app, |r| {
                    let _ = ready_tx.send(r);
                })
            })
            .map_err(StartError::Worker)?;
        let handle = WorkerHandle {
            thread: Some(thread),
            wake,
            started: Instant::now(),
        };
        match ready_rx.recv() {
            Ok(Ok(_mode)) => Ok(handle),
            Ok(Err(e)) => Err(StartError::IoUring(e)),
            // The thread ended without a word: building the app's handler panicked.
            Err(_) => Err(StartError::Worker(io::Error::other(format!(
                "worker {index} died while starting (see the panic above)"
            )))),
        }
    }
}

/// A worker that dies this soon after starting is not restarted: it would only die again.
const MIN_LIFETIME: Duration = Duration::from_secs(1);

impl Running {
    /// The addresses being served, with the real ports.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Begin a graceful shutdown: workers stop accepting, finish the requests under way, close
    /// idle connections, and exit.
    pub fn stop(&mut self) {
        self.draining = true;
        for w in &self.workers {
            w.wake.drain();
        }
    }

    /// Whether every worker has exited.
    pub fn finished(&self) -> bool {
        self.workers
            .iter()
            .all(|w| w.thread.as_ref().is_none_or(JoinHandle::is_finished))
    }

    /// Replace workers that exited while they should be serving. Errors when one died right
    /// after it started (a crash loop), or cannot be restarted.
    pub fn supervise(&mut self) -> Result<(), String> {
        if self.draining {
            return Ok(());
        }
        for i in 0..self.workers.len() {
            let w = &mut self.workers[i];
            if !w.thread.as_ref().is_some_and(JoinHandle::is_finished) {
                continue;
            }
            let lived = w.started.elapsed();
            let why = match w.thread.take().map(JoinHandle::join) {
                Some(Ok(Ok(()))) => "exited".to_string(),
                Some(Ok(Err(e))) => format!("failed: {e}"),
                Some(Err(_)) => "panicked".to_string(),
                None => continue,
            };
            tracing::error!("worker {i} {why} after {lived:?}");
            if lived < MIN_LIFETIME {
                return Err(format!(
                    "worker {i} {why} right after starting; not restarting it"
                ));
            }
            self.workers[i] = (self.spawner)(i).map_err(|e| e.to_string())?;
            tracing::info!("worker {i} restarted");
        }
        Ok(())
    }

    /// Wait until every worker has exited or `deadline` passes; true if all exited.
    pub fn wait_until(&mut self, deadline: Instant) -> bool {
        loop {
            if self.finished() {
                for w in &mut self.workers {
                    if let Some(t) = w.thread.take() {
                        match t.join() {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => tracing::error!("worker failed while draining: {e}"),
                            Err(_) => tracing::error!("worker panicked while draining"),
                        }
                    }
                }
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
        let deadline = Instant::now() + self.graceful_timeout;
        self.wait_until(deadline)
    }
}
