//! One worker: a thread pinned to its CPU that runs its own I/O loop over its own listening
//! sockets and connections. Nothing on the request path is shared with other threads.
//!
//! The loop is written once, against completions: its I/O driver ([`driver`]) is io_uring, or
//! epoll where io_uring is blocked, chosen by the master (`--backend`).
//!
//! The loop only moves bytes: a completed receive hands bytes to the connection's sans-IO
//! [`Connection`], which answers what it can; the loop then sends its output in one send, and
//! follows [`Want`] for the next step. Each connection has at most one operation in flight, so
//! its slot is reused only after that operation's completion (no stale completions). Deadlines
//! are checked on a periodic tick: an expired connection's socket is shut down, which completes
//! its pending operation and lets the normal path close it.

mod clock;
mod driver;
mod epoll;
mod health;
mod pool;
mod token;
mod uring;
mod wake;

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use io_uring::types::Timespec;
use slab::Slab;
use socket2::SockRef;

use crate::http::access_log::AccessLog;
use crate::http::{ConnInfo, Connection, Context, Defer, Limits, Plan, Respond, Scheme, Want};
use crate::master::Pulse;
use crate::metrics::Counter;
use crate::tls::Session;
use crate::{App, WorkerInfo};
use clock::Moment;
pub use driver::Chosen;
use driver::{Cqe, Driver, Sqe, MORE};
use epoll::Epoll;
use health::Health;
use pool::{Done, Pool, Ticket};
use token::{token, untoken, Op};
pub use uring::probe;
use uring::Uring;
pub use wake::Wake;

/// Most bytes one send copies from memory, and most one sendfile sends: a large body goes out
/// in parts, so that one connection's send does not hold up the worker's others (a 4 MiB copy
/// into a roomy socket takes about a millisecond).
const SEND_COPY_MAX: usize = 256 * 1024;
const SEND_FILE_MAX: usize = 1024 * 1024;

/// How often deadlines are checked and the Date header refreshed.
const TICK: Duration = Duration::from_millis(250);
/// The access log's lines are written out at least this often while requests come...
const LOG_FLUSH_EVERY: Duration = Duration::from_millis(100);
/// ... or when this many bytes are waiting.
const LOG_BUFFER: usize = 64 * 1024;
/// A failing access log is reported at most this often.
const LOG_ERROR_EVERY: Duration = Duration::from_secs(10);
/// Most connections a draining worker takes from a listener's queue in its last sweep.
const SWEEP_MAX: usize = 64;
/// How long accepting pauses when the process is out of descriptors or memory.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// A keep-alive connection idle this long is parked: its receive is cancelled, its buffers
/// freed, and a readiness poll waits for its next request. Busy connections never wait this
/// long between requests, so they keep their buffers (no allocation per request).
const PARK_AFTER: Duration = Duration::from_secs(1);
/// While draining, an idle keep-alive connection is closed only once it has been idle this
/// long: a client that was just answered is likely to send again at once, and closing under
/// it would race its request (the reset every HTTP/1.1 server shows). Its next request is
/// answered with `Connection: close` instead.
const DRAIN_IDLE: Duration = Duration::from_secs(1);

/// A listening socket a worker accepts on.
pub struct Listener {
    pub fd: OwnedFd,
    /// Its connections speak TLS (with [`Spec::tls`]).
    pub tls: bool,
    /// Every worker accepts on this one socket (a Unix socket, a passed one without
    /// SO_REUSEPORT), rather than on a socket of its own.
    pub shared: bool,
}

/// What a worker is started with.
pub struct Spec {
    pub index: usize,
    /// CPU to pin to; `None` leaves the thread unpinned.
    pub cpu: Option<usize>,
    /// One listening socket per bind address.
    pub listeners: Vec<Listener>,
    pub wake: Arc<Wake>,
    pub keep_alive: Duration,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub send_timeout: Duration,
    pub max_connections: usize,
    pub limits: Limits,
    /// `--body-temp-dir`.
    pub body_temp_dir: Option<std::path::PathBuf>,
    /// The worker's line on the master's board (heartbeat, requests served, retiring).
    pub pulse: Option<Pulse>,
    /// After answering this many requests, ask the master for a replacement (0: never).
    pub max_requests: u64,
    /// `--health-path`: answered by the worker itself, before the app.
    pub health_path: Option<String>,
    /// `--access-logfile`: the line format (`None`: no access log).
    pub access_log: Option<crate::http::access_log::Format>,
    /// `--proxy-protocol` and the peers allowed to send the header.
    pub proxy: Option<(crate::http::proxy::Version, crate::config::Cidrs)>,
    /// `--certfile`: the TLS configuration, shared by every worker (one session cache).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `--forwarded-allow-ips`.
    pub forwarded_allow: Option<crate::config::Cidrs>,
    /// `--metrics`: time requests, and publish the counters on each tick.
    pub metrics: bool,
    /// The I/O driver, chosen by the master.
    pub backend: Chosen,
    /// `--threads`: handler threads of the worker's own (0: handlers run on its thread).
    pub threads: usize,
}

/// Run a worker on the calling thread until it has drained. `ready` is told once its driver
/// is set up (what it runs, for the log), or why it could not be.
pub fn run<A: App + Clone>(
    spec: Spec,
    app: &A,
    ready: impl FnOnce(io::Result<String>),
) -> io::Result<()> {
    let pinned = spec
        .cpu
        .filter(|&id| core_affinity::set_for_current(core_affinity::CoreId { id }));
    if let (Some(cpu), None) = (spec.cpu, pinned) {
        tracing::warn!(
            "worker {} could not be pinned to CPU {cpu}; running unpinned",
            spec.index
        );
    }
    let copy = |e: &io::Error| match e.raw_os_error() {
        Some(errno) => io::Error::from_raw_os_error(errno),
        None => io::Error::new(e.kind(), e.to_string()),
    };
    match spec.backend {
        Chosen::IoUring => match Uring::create() {
            Ok((ring, mode)) => serve(ring, format!("io_uring {mode}"), spec, app, pinned, ready),
            Err(e) => {
                ready(Err(copy(&e)));
                Err(e)
            }
        },
        Chosen::Epoll => match Epoll::create() {
            Ok(epoll) => serve(epoll, "epoll".to_string(), spec, app, pinned, ready),
            Err(e) => {
                ready(Err(copy(&e)));
                Err(e)
            }
        },
    }
}

fn serve<A: App + Clone, D: Driver>(
    io: D,
    mut backend: String,
    spec: Spec,
    app: &A,
    pinned: Option<usize>,
    ready: impl FnOnce(io::Result<String>),
) -> io::Result<()> {
    let info = WorkerInfo {
        index: spec.index,
        cpu: pinned,
    };
    let threads = spec.threads.max(app.min_threads());
    if threads > 0 {
        backend = format!("{backend}, {threads} handler threads");
    }
    match pinned {
        Some(cpu) => tracing::info!("Booting worker {} on CPU {cpu} ({backend})", spec.index),
        None => tracing::info!("Booting worker {} unpinned ({backend})", spec.index),
    }
    if let Err(why) = app.prepare(info) {
        // The whole of it here (a traceback, say); its first line to the master.
        tracing::error!("worker {}: {why}", spec.index);
        let first = why.lines().next().unwrap_or_default();
        let short = format!("{first} (the whole error is above)");
        ready(Err(io::Error::other(short.clone())));
        return Err(io::Error::other(short));
    }
    let (health, pulse) = (spec.health_path.clone(), spec.pulse.clone());
    if threads == 0 {
        let handler = Health::new(health.as_deref(), pulse, app.handler(info));
        let mut worker = Worker::new(io, spec, handler, None);
        ready(Ok(backend));
        return worker.serve();
    }
    let pool = match Pool::start(threads, app, info) {
        Ok(pool) => pool,
        Err(e) => {
            ready(Err(io::Error::new(e.kind(), e.to_string())));
            return Err(e);
        }
    };
    let handler = Health::new(health.as_deref(), pulse, Defer);
    let mut worker = Worker::new(io, spec, handler, Some(pool));
    ready(Ok(backend));
    worker.serve()
}

/// A connection: its socket, its protocol state, and its deadline.
struct Conn {
    fd: OwnedFd,
    http: Connection,
    /// When the pending operation should have completed by (checked on each tick).
    deadline: Moment,
    /// When the request under way must have arrived in full: its head is due by
    /// `--header-timeout` after its first bytes, then its body by `--body-timeout` after that.
    request_deadline: Moment,
    /// When the first bytes of the request under way were received (`--metrics`).
    started: Moment,
    /// The request under way has its head; `request_deadline` is the body's.
    in_body: bool,
    /// Its receive is being cancelled so that it can be parked.
    parking: bool,
    /// The socket has been shut down; its pending operation will complete and close it.
    shut: bool,
    /// The socket is non-blocking (set for its first file body, which is sent with sendfile).
    nonblocking: bool,
    /// Its peer and local addresses, for its requests.
    info: ConnInfo,
    /// A TLS connection's session: the socket's bytes are ciphertext.
    tls: Option<Box<Session>>,
    /// Tells this connection's replies from a later one's in the same slot (`--threads`).
    serial: u64,
    /// It has no operation in flight: it waits for its handler thread (`--threads`).
    waiting: bool,
    /// Its handler thread's reply, to be encoded once it has no operation in flight.
    reply: Option<Box<crate::http::Reply>>,
}

impl Conn {
    /// When the connection went idle (nothing received or owed), if it is idle. An idle
    /// connection's deadline is always `keep_alive` after it went idle (set by `open_conn`
    /// and `advance`).
    fn idle_since(&self, keep_alive: Duration) -> Option<Moment> {
        let idle = !self.mid_request() && self.want() == Want::Read;
        idle.then(|| self.deadline - keep_alive)
    }

    /// What the connection needs next (a TLS session has its own say).
    fn want(&self) -> Want {
        match &self.tls {
            None => self.http.want(),
            Some(tls) => tls.want(&self.http),
        }
    }

    /// Part of a request has arrived (or, over TLS, the handshake is under way): the request
    /// deadline applies rather than the keep-alive one.
    fn mid_request(&self) -> bool {
        self.http.mid_request() || self.tls.as_ref().is_some_and(|t| t.handshaking())
    }

    /// Bytes its buffers hold.
    fn buffered_bytes(&self) -> usize {
        self.http.buffered_bytes() + self.tls.as_ref().map_or(0, |t| t.buffered_bytes())
    }
}

struct Worker<R, D: Driver> {
    io: D,
    index: usize,
    listeners: Vec<Option<OwnedFd>>,
    /// Listener i is shared with the other workers: accepted one connection at a time.
    shared: Vec<bool>,
    /// Listener i's address (`None`: a Unix socket).
    local: Vec<Option<std::net::SocketAddr>>,
    /// `--proxy-protocol`: the header version, and who may send it.
    proxy: Option<(crate::http::proxy::Version, crate::config::Cidrs)>,
    /// When the access log's lines were last written out; when a write last failed (the
    /// error is reported at most every [`LOG_ERROR_EVERY`]) and the bytes dropped since.
    log_flushed: Moment,
    log_failed: Option<(Moment, usize)>,
    /// A multishot accept is armed on listener i.
    accepting: Vec<bool>,
    /// Accepting is paused after running out of descriptors or memory (until a timer).
    accept_paused: bool,
    /// Accepting is paused at `max_connections` (until a connection closes).
    full: bool,
    max_connections: usize,
    conns: Slab<Conn>,
    handler: Health<R>,
    /// `--threads`: the handler threads; `None`: handlers run on this thread.
    pool: Option<Pool>,
    /// The read of the pool's eventfd lands here (leaked, as `wake_buf` is).
    pool_buf: &'static mut u64,
    /// What the pool handed back, taken in one batch per wakeup.
    handed_back: Vec<(Ticket, Done)>,
    /// The next connection's serial.
    serial: u64,
    ctx: Context,
    wake: Arc<Wake>,
    /// The eventfd read lands here. Leaked on purpose: the kernel may write it until a ring
    /// is torn down, which can finish after the ring's descriptor is closed.
    wake_buf: &'static mut u64,
    tick: Box<Timespec>,
    retry: Box<Timespec>,
    keep_alive: Duration,
    header_timeout: Duration,
    body_timeout: Duration,
    send_timeout: Duration,
    /// Coarse clock, read once per completion batch.
    now: Moment,
    draining: bool,
    /// A connection was parked since the last tick (its freed buffers can be trimmed).
    parked_since_tick: bool,
    pulse: Option<Pulse>,
    /// Requests answered or refused so far.
    served: u64,
    /// `--metrics`: requests are timed and the counters published.
    metrics: bool,
    /// `--metrics`: when the requests answered in this batch began, and how many there were.
    answered_in_batch: Vec<(Moment, u32)>,
    /// Completions of operations the worker did itself (sendfile), handled after the
    /// driver's, before it waits again.
    done_here: std::collections::VecDeque<Cqe>,
    /// Ask for a replacement at this many requests (`u64::MAX`: never, or already asked).
    retire_at: u64,
    /// Listener i's connections speak TLS with this configuration.
    tls: Vec<Option<Arc<rustls::ServerConfig>>>,
    /// Where a file body is read before it is encrypted (TLS), shared by all connections.
    scratch: Vec<u8>,
}

impl<R: Respond, D: Driver> Worker<R, D> {
    fn new(io: D, spec: Spec, handler: Health<R>, pool: Option<Pool>) -> Self {
        let n = spec.listeners.len();
        for l in &spec.listeners {
            // The ring accepts the same either way; the drain's last sweep must not block.
            // SAFETY: fcntl sets a flag on a descriptor we hold; no memory is involved.
            unsafe { libc::fcntl(l.fd.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
        }
        let mut ctx = Context::new(spec.limits);
        ctx.body_temp_dir = spec.body_temp_dir;
        ctx.access_log = spec.access_log.map(AccessLog::new);
        ctx.forwarded_allow = spec.forwarded_allow;
        let shared = spec.listeners.iter().map(|l| l.shared).collect();
        let tls = spec
            .listeners
            .iter()
            .map(|l| if l.tls { spec.tls.clone() } else { None })
            .collect();
        let local = spec
            .listeners
            .iter()
            .map(|l| {
                SockRef::from(&l.fd)
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_socket())
            })
            .collect();
        Worker {
            io,
            index: spec.index,
            listeners: spec.listeners.into_iter().map(|l| Some(l.fd)).collect(),
            shared,
            local,
            accepting: vec![false; n],
            accept_paused: false,
            full: false,
            max_connections: spec.max_connections,
            conns: Slab::with_capacity(1024),
            handler,
            pool,
            pool_buf: Box::leak(Box::new(0)),
            handed_back: Vec::new(),
            serial: 0,
            ctx,
            proxy: spec.proxy,
            log_flushed: Moment::now(),
            log_failed: None,
            wake: spec.wake,
            wake_buf: Box::leak(Box::new(0)),
            tick: Box::new(timespec(TICK)),
            retry: Box::new(timespec(ACCEPT_RETRY)),
            keep_alive: spec.keep_alive,
            header_timeout: spec.header_timeout,
            body_timeout: spec.body_timeout,
            send_timeout: spec.send_timeout,
            now: Moment::now(),
            draining: false,
            parked_since_tick: false,
            pulse: spec.pulse,
            served: 0,
            metrics: spec.metrics,
            answered_in_batch: Vec::new(),
            done_here: std::collections::VecDeque::new(),
            retire_at: match spec.max_requests {
                0 => u64::MAX,
                n => n,
            },
            tls,
            scratch: Vec::new(),
        }
    }

    fn serve(&mut self) -> io::Result<()> {
        for i in 0..self.listeners.len() {
            self.arm_accept(i)?;
        }
        self.arm_tick()?;
        self.arm_wake()?;
        self.arm_pool()?;
        let mut batch: [Cqe; 256] = [(0, 0, 0); 256];
        while !(self.draining && self.conns.is_empty() && !self.accepting.contains(&true)) {
            self.io.submit_and_wait()?;
            self.now = Moment::now();
            loop {
                let n = self.io.complete(&mut batch);
                for &(user_data, result, flags) in &batch[..n] {
                    self.complete(user_data, result, flags)?;
                }
                if n < batch.len() {
                    break;
                }
            }
            while let Some((user_data, result, flags)) = self.done_here.pop_front() {
                self.complete(user_data, result, flags)?;
            }
            self.time_batch();
            self.flush_access_log(false);
        }
        self.flush_access_log(true);
        self.publish();
        tracing::debug!("worker {} drained", self.index);
        Ok(())
    }

    /// `--metrics`: how long the requests answered in this batch took, from their first byte
    /// to now.
    fn time_batch(&mut self) {
        if self.answered_in_batch.is_empty() {
            return;
        }
        let now = Moment::now();
        for &(started, n) in &self.answered_in_batch {
            self.ctx.counters.observe(now.since(started), u64::from(n));
        }
        self.answered_in_batch.clear();
    }

    /// Write the access log's pending lines out, in one write, when `now` is asked for, the
    /// buffer is full, or it has waited [`LOG_FLUSH_EVERY`]. A failed write drops the lines
    /// (the worker never stalls on its log) and is reported, at most every
    /// [`LOG_ERROR_EVERY`].
    fn flush_access_log(&mut self, now: bool) {
        let Some(log) = &mut self.ctx.access_log else {
            return;
        };
        let pending = log.pending().len();
        if pending == 0
            || !(now || pending >= LOG_BUFFER || self.now >= self.log_flushed + LOG_FLUSH_EVERY)
        {
            return;
        }
        let result = crate::log::write_access(log.pending());
        log.clear();
        self.log_flushed = self.now;
        if let Err(e) = result {
            let (since, dropped) = self.log_failed.get_or_insert((self.now, 0));
            *dropped += pending;
            if self.now >= *since + LOG_ERROR_EVERY || *dropped == pending {
                tracing::error!(
                    "worker {}: cannot write the access log ({e}); {} bytes of lines dropped",
                    self.index,
                    dropped
                );
                self.log_failed = Some((self.now, 0));
            }
        }
    }

    fn complete(&mut self, user_data: u64, result: i32, flags: u32) -> io::Result<()> {
        let Some((op, index)) = untoken(user_data) else {
            return Ok(());
        };
        match op {
            Op::Accept => self.on_accept(index, result, flags),
            Op::Recv => self.on_recv(index, result),
            Op::Send => self.on_send(index, result),
            Op::Tick => self.on_tick(),
            Op::Wake => self.on_wake(result),
            Op::AcceptRetry => self.on_accept_retry(),
            Op::Cancel => Ok(()),
            Op::Poll => self.on_poll(index, result),
            Op::Writable => self.on_writable(index, result),
            Op::Pool => self.on_pool(),
        }
    }

    // --- accepting ---

    fn arm_accept(&mut self, i: usize) -> io::Result<()> {
        let Some(listener) = &self.listeners[i] else {
            return Ok(());
        };
        // A listener shared by every worker is accepted on one connection at a time, so that
        // the workers take turns (see the ring driver).
        let op = Sqe::Accept {
            fd: listener.as_raw_fd(),
            multishot: !self.shared[i],
        };
        // SAFETY: an accept without an address buffer points at no memory.
        unsafe { self.io.push(op, token(Op::Accept, i))? };
        self.accepting[i] = true;
        Ok(())
    }

    fn on_accept(&mut self, i: usize, result: i32, flags: u32) -> io::Result<()> {
        let more = flags & MORE != 0;
        if !more {
            self.accepting[i] = false;
        }
        if result >= 0 {
            // SAFETY: a successful accept returns a new descriptor that only we hold.
            let fd = unsafe { OwnedFd::from_raw_fd(result) };
            // Accepted while draining too (the cancel raced it): it is served like the rest,
            // its first request answered with `Connection: close`.
            self.open_conn(fd, i)?;
        } else {
            match -result {
                libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => {
                    // Out of descriptors or memory: retrying at once would spin. Connections
                    // wait in the kernel's backlog until the retry timer.
                    if !self.accept_paused {
                        let reason = match -result {
                            libc::EMFILE | libc::ENFILE => Counter::PausedDescriptors,
                            _ => Counter::PausedMemory,
                        };
                        self.ctx.counters.add(reason, 1);
                        tracing::warn!(
                            "worker {}: accept failed ({}); pausing accepts for {ACCEPT_RETRY:?}",
                            self.index,
                            io::Error::from_raw_os_error(-result)
                        );
                        self.accept_paused = true;
                        self.arm_accept_retry()?;
                    }
                    if more {
                        self.cancel_accept(i)?;
                    }
                }
                libc::ECANCELED => {}
                errno => tracing::debug!(
                    "worker {}: accept: {}",
                    self.index,
                    io::Error::from_raw_os_error(errno)
                ),
            }
        }
        if !self.accepting[i] {
            if self.draining {
                self.sweep(i)?;
                self.close_listener(i);
            } else if self.may_accept() {
                self.arm_accept(i)?;
            }
        }
        Ok(())
    }

    /// A draining worker's last look at listener `i` once its accept has ended. The kernel
    /// wakes one waiting accept per new connection; a wakeup that reached this worker's
    /// accept as it was cancelled is lost to the others, and its connection would wait in
    /// the queue until the next one arrives. Whatever is queued now is taken and served
    /// here (answered with `Connection: close`).
    fn sweep(&mut self, i: usize) -> io::Result<()> {
        let Some(listener) = &self.listeners[i] else {
            return Ok(());
        };
        let fd = listener.as_raw_fd();
        for _ in 0..SWEEP_MAX {
            // SAFETY: accept4 on a listener we hold, asking for no address; the listener is
            // non-blocking, so an empty queue returns EAGAIN at once.
            let accepted = unsafe {
                libc::accept4(
                    fd,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_CLOEXEC,
                )
            };
            if accepted < 0 {
                break;
            }
            // SAFETY: a successful accept returns a new descriptor that only we hold.
            let conn = unsafe { OwnedFd::from_raw_fd(accepted) };
            self.open_conn(conn, i)?;
        }
        Ok(())
    }

    /// Neither out of descriptors, at the connection limit, nor draining.
    fn may_accept(&self) -> bool {
        !self.accept_paused && !self.full && !self.draining
    }

    /// Arm the accepts that are not armed, if accepting is allowed.
    fn resume_accepting(&mut self) -> io::Result<()> {
        if !self.may_accept() {
            return Ok(());
        }
        for i in 0..self.listeners.len() {
            if !self.accepting[i] {
                self.arm_accept(i)?;
            }
        }
        Ok(())
    }

    fn arm_accept_retry(&mut self) -> io::Result<()> {
        let op = Sqe::Timeout {
            ts: &*self.retry,
            after: ACCEPT_RETRY,
        };
        // SAFETY: `self.retry` is boxed and lives as long as the worker, past the ring.
        unsafe { self.io.push(op, token(Op::AcceptRetry, 0)) }
    }

    fn on_accept_retry(&mut self) -> io::Result<()> {
        self.accept_paused = false;
        self.resume_accepting()
    }

    // --- connections ---

    /// A TCP connection's addresses: the peer (one getpeername per connection, not per
    /// request) and the local address (the listener's, unless it is bound to every
    /// interface). A Unix connection has neither.
    fn conn_info(&self, fd: &OwnedFd, listener: usize) -> ConnInfo {
        let Some(bound) = self.local.get(listener).copied().flatten() else {
            return ConnInfo::default();
        };
        let sock = SockRef::from(fd);
        let local = if bound.ip().is_unspecified() {
            sock.local_addr().ok().and_then(|a| a.as_socket())
        } else {
            Some(bound)
        };
        ConnInfo {
            peer: sock.peer_addr().ok().and_then(|a| a.as_socket()),
            local,
            scheme: Scheme::Http,
            tls: None,
        }
    }

    fn open_conn(&mut self, fd: OwnedFd, listener: usize) -> io::Result<()> {
        self.ctx.counters.add(Counter::Accepted, 1);
        let mut info = self.conn_info(&fd, listener);
        let mut http = Connection::new();
        let mut tls = match &self.tls[listener] {
            None => None,
            Some(config) => match Session::new(config) {
                Ok(session) => {
                    info.scheme = Scheme::Https;
                    Some(Box::new(session))
                }
                Err(e) => {
                    tracing::warn!("worker {}: cannot start a TLS session: {e}", self.index);
                    return Ok(());
                }
            },
        };
        if let Some((version, allowed)) = &self.proxy {
            // A Unix peer is local (the socket's permissions say who may connect).
            if info.peer.is_some_and(|p| !allowed.contains(p.ip())) {
                self.ctx.counters.add(Counter::ProxyUntrusted, 1);
                tracing::debug!(
                    "worker {}: {:?} may not send a PROXY header (--proxy-allow-from); closed",
                    self.index,
                    info.peer
                );
                return Ok(());
            }
            match &mut tls {
                // The PROXY header comes before the handshake.
                Some(session) => session.expect_proxy_header(*version),
                None => http.expect_proxy_header(*version),
            }
        }
        if self.draining {
            http.answer_with_close();
        }
        let key = self.conns.insert(Conn {
            fd,
            http,
            deadline: self.now + self.keep_alive,
            request_deadline: self.now + self.header_timeout,
            started: self.now,
            in_body: false,
            parking: false,
            shut: false,
            nonblocking: false,
            info,
            tls,
            serial: self.serial,
            waiting: false,
            reply: None,
        });
        self.serial += 1;
        if self.conns.len() >= self.max_connections && !self.full {
            // At the limit: stop taking connections; they wait in the kernel's backlog.
            // Accepts already completed are still served, so the count may pass the limit by
            // those few.
            self.full = true;
            self.ctx.counters.add(Counter::PausedFull, 1);
            for i in 0..self.listeners.len() {
                if self.accepting[i] {
                    self.cancel_accept(i)?;
                }
            }
        }
        self.arm_recv(key)
    }

    fn arm_recv(&mut self, key: usize) -> io::Result<()> {
        let conn = &mut self.conns[key];
        let buf = match &mut conn.tls {
            None => conn.http.recv_buf(&self.ctx),
            Some(tls) => tls.recv_buf(),
        };
        let (ptr, len) = (
            buf.as_mut_ptr(),
            u32::try_from(buf.len()).unwrap_or(u32::MAX),
        );
        let op = Sqe::Recv {
            fd: conn.fd.as_raw_fd(),
            buf: ptr,
            len,
        };
        // SAFETY: the buffer is the connection's input buffer (its TLS session's, over TLS),
        // heap-allocated and owned by the connection, which stays in the slab until this
        // receive completes; nothing touches the input buffer before then (a connection has
        // one operation in flight at a time).
        unsafe { self.io.push(op, token(Op::Recv, key)) }
    }

    fn arm_send(&mut self, key: usize) -> io::Result<()> {
        let conn = &mut self.conns[key];
        conn.deadline = self.now + self.send_timeout;
        let fd = conn.fd.as_raw_fd();
        // At most SEND_COPY_MAX in all (which also fits the completion's i32 count).
        let clamp = |len: usize| len.min(SEND_COPY_MAX) as u32;
        if let Some(tls) = &mut conn.tls {
            if !tls.has_output() {
                tls.encrypt(&mut conn.http, &mut self.scratch);
            }
            if !tls.has_output() {
                // Nothing could be encrypted after all: a completion of 0 bytes closes it.
                self.done_here
                    .push_back((token(Op::Send, key), -libc::EIO, 0));
                return Ok(());
            }
            let out = tls.output();
            let op = Sqe::Send {
                fd,
                buf: out.as_ptr(),
                len: clamp(out.len()),
            };
            // SAFETY: the buffer is the TLS session's output, owned by the connection, which
            // stays in the slab until this send completes; it is not changed meanwhile (more
            // is encrypted into it only once it has all been sent).
            return unsafe { self.io.push(op, token(Op::Send, key)) };
        }
        let op = match conn.http.plan() {
            Plan::Bytes(out) => Sqe::Send {
                fd,
                buf: out.as_ptr(),
                len: clamp(out.len()),
            },
            Plan::Vectored(first, second) => Sqe::SendV {
                fd,
                first: first.as_ptr(),
                first_len: clamp(first.len()),
                second: second.as_ptr(),
                second_len: clamp(second.len()).min(SEND_COPY_MAX as u32 - clamp(first.len())),
            },
            Plan::File {
                head,
                fd: file,
                offset,
                len,
            } => {
                let head = (head.as_ptr(), head.len());
                return self.send_file(key, head, file, offset, len);
            }
            Plan::Idle => {
                // Nothing is owed after all: a completion of 0 bytes closes it.
                self.done_here
                    .push_back((token(Op::Send, key), -libc::EIO, 0));
                return Ok(());
            }
        };
        // SAFETY: the buffers are the connection's output and the body it holds, owned by the
        // connection, which stays in the slab until this send completes; neither is changed
        // while a send is in flight (the output is only appended to between sends).
        unsafe { self.io.push(op, token(Op::Send, key)) }
    }

    /// Send the head before a file body (`head`, possibly empty), then part of the file with
    /// sendfile, now, on the connection's (non-blocking) socket, as nginx does: the head goes
    /// with MSG_MORE, so that it leaves in one segment with the file's first bytes, and the
    /// kernel sends the file from the page cache, as much as the socket takes. What was sent
    /// is handled as a send's completion; when the socket is full, a poll waits for room.
    fn send_file(
        &mut self,
        key: usize,
        head: (*const u8, usize),
        file: RawFd,
        offset: u64,
        len: u64,
    ) -> io::Result<()> {
        let conn = &mut self.conns[key];
        let fd = conn.fd.as_raw_fd();
        if !conn.nonblocking {
            // SAFETY: fcntl sets a flag on a socket we own; no memory is involved. Both
            // drivers work on non-blocking sockets alike.
            unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_RDWR | libc::O_NONBLOCK) };
            conn.nonblocking = true;
        }
        let mut sent = 0;
        if head.1 > 0 {
            let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL | libc::MSG_MORE;
            // SAFETY: `head` is the connection's output, live and unchanged during this call.
            let n = unsafe { libc::send(fd, head.0.cast(), head.1, flags) };
            if n < 0 {
                return self.file_send_failed(key, fd, 0);
            }
            sent = n as usize;
            if sent < head.1 {
                self.done_here
                    .push_back((token(Op::Send, key), sent as i32, 0));
                return Ok(());
            }
        }
        let mut off = i64::try_from(offset).unwrap_or(i64::MAX);
        let count = usize::try_from(len)
            .unwrap_or(usize::MAX)
            .min(SEND_FILE_MAX);
        // SAFETY: sendfile between two descriptors we hold, with a live offset to update.
        let n = unsafe { libc::sendfile(fd, file, &mut off, count) };
        let result = match n {
            0 => {
                // The file ends before its length: it shrank while being sent.
                self.conns[key].http.file_ended_early();
                0
            }
            n if n > 0 => i32::try_from(sent + n as usize).unwrap_or(i32::MAX),
            _ => return self.file_send_failed(key, fd, sent),
        };
        self.done_here.push_back((token(Op::Send, key), result, 0));
        Ok(())
    }

    /// A send or sendfile of [`Self::send_file`] failed (errno is still set), after `sent`
    /// bytes: when the socket is full, report what was sent, or wait for room; otherwise the
    /// error closes the connection.
    fn file_send_failed(&mut self, key: usize, fd: RawFd, sent: usize) -> io::Result<()> {
        let result = match io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN | libc::EINTR) if sent > 0 => sent as i32,
            Some(libc::EAGAIN | libc::EINTR) => {
                let op = Sqe::Poll {
                    fd,
                    events: libc::POLLOUT as u32,
                };
                // SAFETY: a poll points at no memory of ours.
                return unsafe { self.io.push(op, token(Op::Writable, key)) };
            }
            errno => -errno.unwrap_or(libc::EIO),
        };
        self.done_here.push_back((token(Op::Send, key), result, 0));
        Ok(())
    }

    /// The socket has room for more of a file body (or was hung up, or shut down).
    fn on_writable(&mut self, key: usize, result: i32) -> io::Result<()> {
        let Some(conn) = self.conns.get(key) else {
            return Ok(());
        };
        if result < 0 || conn.shut || result & i32::from(libc::POLLOUT) == 0 {
            return self.close(key);
        }
        self.arm_send(key)
    }

    fn on_recv(&mut self, key: usize, result: i32) -> io::Result<()> {
        let Some(conn) = self.conns.get_mut(key) else {
            return Ok(());
        };
        conn.parking = false;
        if result == -libc::ECANCELED && !conn.shut {
            // Cancelled to park an idle connection (or, if a request arrived meanwhile, a
            // cancel that came late): park it if it is still idle, else read on.
            let parked = conn.http.park() && conn.tls.as_mut().is_none_or(|t| t.park());
            return if parked {
                self.parked_since_tick = true;
                self.arm_poll(key)
            } else {
                self.arm_recv(key)
            };
        }
        if result <= 0 || conn.shut {
            // End of stream, a reset, or a deadline that shut the socket.
            return self.close(key);
        }
        // Over TLS, the handshake counts as part of the first request: its deadline runs on.
        let was_mid_request = conn.mid_request();
        if !was_mid_request {
            conn.started = self.now;
        }
        self.ctx.counters.add(Counter::BytesIn, result as u64);
        self.ctx.conn.clone_from(&conn.info);
        match &mut conn.tls {
            None => conn.http.received(result as usize),
            Some(tls) => tls.received(result as usize, &mut conn.http, &mut self.ctx),
        }
        let answered = conn.http.process(&mut self.handler, &mut self.ctx);
        if self.ctx.conn_changed {
            self.ctx.conn_changed = false;
            conn.info.clone_from(&self.ctx.conn);
        }
        self.hand_over(key);
        self.count(key, answered);
        let conn = &mut self.conns[key];
        if !was_mid_request || answered > 0 {
            // A new request began in this read: its head must arrive in full by this deadline,
            // however slowly it trickles in.
            conn.request_deadline = self.now + self.header_timeout;
            conn.started = self.now;
            conn.in_body = false;
        }
        self.advance(key)
    }

    fn on_send(&mut self, key: usize, result: i32) -> io::Result<()> {
        let Some(conn) = self.conns.get_mut(key) else {
            return Ok(());
        };
        if result <= 0 || conn.shut {
            return self.close(key);
        }
        self.ctx.counters.add(Counter::BytesOut, result as u64);
        match &mut conn.tls {
            None => conn.http.sent(result as usize),
            Some(tls) => {
                // The plaintext was counted sent when it was encrypted.
                tls.sent(result as usize);
                if tls.has_output() {
                    return self.arm_send(key);
                }
            }
        }
        if conn.http.want() == Want::Write {
            return self.arm_send(key);
        }
        // Output flushed: answer requests still buffered (pipelining past the high-water mark).
        self.ctx.conn.clone_from(&conn.info);
        let answered = conn.http.process(&mut self.handler, &mut self.ctx);
        self.hand_over(key);
        if answered > 0 {
            self.count(key, answered);
            let conn = &mut self.conns[key];
            conn.request_deadline = self.now + self.header_timeout;
            conn.started = self.now;
            conn.in_body = false;
        }
        self.advance(key)
    }

    /// Count the requests connection `key` has just answered (and, with `--metrics`, how
    /// long they took since their first byte); at `--max-requests`, ask the master for a
    /// replacement (it starts one on this CPU and socket, then tells this worker to drain).
    fn count(&mut self, key: usize, answered: usize) {
        if answered == 0 {
            return;
        }
        if self.metrics {
            // Timed when the batch ends (one clock read for the whole batch), which is when
            // the ring is handed the responses queued in it.
            self.answered_in_batch
                .push((self.conns[key].started, answered as u32));
        }
        self.served += answered as u64;
        if self.served >= self.retire_at {
            self.retire_at = u64::MAX;
            if let Some(pulse) = &self.pulse {
                tracing::info!(
                    "worker {}: served {} requests (--max-requests); asking for a replacement",
                    self.index,
                    self.served
                );
                pulse.served(self.served);
                pulse.retire();
            }
        }
    }

    /// With `--threads`: the request connection `key` left unanswered goes to the pool.
    fn hand_over(&mut self, key: usize) {
        if let Some(pool) = &self.pool {
            let conn = &mut self.conns[key];
            if let Some(job) = conn.http.take_job() {
                pool.submit(
                    Ticket {
                        key,
                        serial: conn.serial,
                    },
                    job,
                );
            }
        }
    }

    /// Do what the connection wants next, under the deadline that goes with it. Its reply
    /// from a handler thread, if one came while it was busy, is encoded first.
    fn advance(&mut self, key: usize) -> io::Result<()> {
        let conn = &mut self.conns[key];
        if let Some(reply) = conn.reply.take() {
            let answered = conn.http.finish(*reply, &mut self.ctx);
            self.count(key, answered);
        }
        let conn = &mut self.conns[key];
        match conn.want() {
            Want::Wait => {
                // Its handler thread (or its stream's) says when there is more.
                conn.waiting = true;
                Ok(())
            }
            Want::Write => self.arm_send(key),
            Want::Read if conn.tls.as_ref().is_some_and(|t| t.holds_input()) => {
                // Decrypted input the connection had no room for before: give it now, rather
                // than read more.
                self.ctx.conn.clone_from(&conn.info);
                let Some(tls) = conn.tls.as_mut() else {
                    return Ok(());
                };
                if !tls.take_input(&mut conn.http, &mut self.ctx) {
                    // No room still: the request is beyond the limits; it was refused.
                    return self.close(key);
                }
                let answered = conn.http.process(&mut self.handler, &mut self.ctx);
                self.hand_over(key);
                self.count(key, answered);
                self.advance(key)
            }
            Want::Read => {
                if !conn.mid_request() {
                    conn.deadline = self.now + self.keep_alive;
                } else {
                    if conn.http.awaiting_body() && !conn.in_body {
                        // The head is complete: from now on the body has its own deadline.
                        conn.in_body = true;
                        conn.request_deadline = self.now + self.body_timeout;
                    }
                    conn.deadline = conn.request_deadline;
                }
                self.arm_recv(key)
            }
            Want::Close => {
                if conn.tls.as_mut().is_some_and(|t| t.close_notify()) {
                    // close_notify (or an alert) goes out first.
                    return self.arm_send(key);
                }
                self.close(key)
            }
        }
    }

    /// Wait for a parked connection to become readable (or to be hung up or shut down).
    fn arm_poll(&mut self, key: usize) -> io::Result<()> {
        let fd = self.conns[key].fd.as_raw_fd();
        let op = Sqe::Poll {
            fd,
            events: (libc::POLLIN | libc::POLLRDHUP) as u32,
        };
        // SAFETY: a poll points at no memory of ours.
        unsafe { self.io.push(op, token(Op::Poll, key)) }
    }

    fn on_poll(&mut self, key: usize, result: i32) -> io::Result<()> {
        let Some(conn) = self.conns.get(key) else {
            return Ok(());
        };
        if result < 0 || conn.shut {
            return self.close(key);
        }
        // Readable, or hung up: a receive (with a fresh buffer) finds out which.
        self.advance(key)
    }

    fn close(&mut self, key: usize) -> io::Result<()> {
        // Dropping the connection closes its socket; no operation of it is in flight.
        let conn = self.conns.remove(key);
        self.io.forget(conn.fd.as_raw_fd());
        drop(conn);
        if self.full && self.conns.len() < self.max_connections {
            self.full = false;
            self.resume_accepting()?;
        }
        Ok(())
    }

    /// Shut a connection's socket down: its pending operation completes at once, and the
    /// completion closes it.
    fn shut_down(conn: &mut Conn) {
        conn.shut = true;
        // SAFETY: shutdown on a descriptor we own; it touches no memory of ours.
        unsafe { libc::shutdown(conn.fd.as_raw_fd(), libc::SHUT_RDWR) };
    }

    // --- time ---

    fn arm_tick(&mut self) -> io::Result<()> {
        let op = Sqe::Timeout {
            ts: &*self.tick,
            after: TICK,
        };
        // SAFETY: `self.tick` is boxed and lives as long as the worker, past the ring.
        unsafe { self.io.push(op, token(Op::Tick, 0)) }
    }

    fn on_tick(&mut self) -> io::Result<()> {
        self.ctx.date.refresh(SystemTime::now());
        if let Some(pulse) = &self.pulse {
            pulse.beat(self.pool.as_ref().and_then(Pool::busy_since));
            pulse.served(self.served);
        }
        self.publish();
        let now = self.now;
        let keep_alive = self.keep_alive;
        let mut to_park = Vec::new();
        for (key, conn) in self.conns.iter_mut() {
            // A connection waiting on its handler thread has no operation to cut short: how
            // long a handler may take is `--timeout`'s business.
            if conn.shut || conn.waiting {
                continue;
            }
            let idle = conn.idle_since(keep_alive);
            if self.draining && idle.is_some_and(|since| now >= since + DRAIN_IDLE) {
                // Draining, and idle long enough that closing is unlikely to race a request.
                Self::shut_down(conn);
                continue;
            }
            if now < conn.deadline {
                // Idle checks first: only an idle connection's deadline says when it went idle.
                if !conn.parking
                    && conn.buffered_bytes() > 0
                    && idle.is_some_and(|since| now >= since + PARK_AFTER)
                {
                    to_park.push(key);
                }
                continue;
            }
            let deadline = match (conn.want(), conn.mid_request()) {
                (Want::Write, _) => Counter::DeadlineSend,
                (_, true) if conn.in_body => Counter::DeadlineBody,
                (_, true) => Counter::DeadlineHeader,
                (_, false) => Counter::DeadlineKeepAlive,
            };
            self.ctx.counters.add(deadline, 1);
            if conn.tls.as_ref().is_some_and(|t| t.handshaking()) {
                // A handshake that stalled: nothing to say in plaintext.
                self.ctx.counters.add(Counter::TlsFailures, 1);
            } else if conn.mid_request() && conn.want() == Want::Read {
                // Too slow to send its request: say so before closing. The receive in flight
                // owns the input buffer, not the (empty) output, and the socket is blocking,
                // so the send must not wait.
                self.ctx.conn.clone_from(&conn.info);
                conn.http.time_out(&mut self.ctx);
                let out = match &mut conn.tls {
                    None => conn.http.output(),
                    Some(tls) => {
                        tls.encrypt(&mut conn.http, &mut self.scratch);
                        tls.output()
                    }
                };
                // SAFETY: sends from a live slice; MSG_DONTWAIT never blocks the loop.
                let sent = unsafe {
                    libc::send(
                        conn.fd.as_raw_fd(),
                        out.as_ptr().cast(),
                        out.len(),
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                };
                self.ctx.counters.add(Counter::BytesOut, sent.max(0) as u64);
            }
            Self::shut_down(conn);
        }
        for key in to_park {
            // Its receive completes with ECANCELED; `on_recv` then parks it.
            self.conns[key].parking = true;
            let fd = self.conns[key].fd.as_raw_fd();
            self.cancel(token(Op::Recv, key), fd)?;
        }
        if std::mem::take(&mut self.parked_since_tick) {
            // Buffers freed by parking stay resident in the allocator's arena until trimmed;
            // give the free pages back to the kernel (at most once per tick, off the hot path).
            // SAFETY: malloc_trim only releases free memory of the allocator's own.
            unsafe { libc::malloc_trim(0) };
        }
        self.arm_tick()
    }

    /// `--metrics`: copy the counters into the board for the master to read.
    fn publish(&mut self) {
        if let (true, Some(pulse)) = (self.metrics, &self.pulse) {
            self.ctx
                .counters
                .set(Counter::Open, self.conns.len() as u64);
            pulse.publish(&self.ctx.counters);
        }
    }

    // --- shutdown ---

    fn arm_wake(&mut self) -> io::Result<()> {
        let buf: *mut u64 = &mut *self.wake_buf;
        let op = Sqe::Read {
            fd: self.wake.raw_fd(),
            buf: buf.cast(),
            len: 8,
        };
        // SAFETY: `wake_buf` is leaked, so it is valid for as long as the kernel may write it;
        // the eventfd is kept open by `self.wake` for the worker's whole life.
        unsafe { self.io.push(op, token(Op::Wake, 0)) }
    }

    fn on_wake(&mut self, result: i32) -> io::Result<()> {
        if result < 0 {
            return self.arm_wake();
        }
        if self.draining {
            return Ok(());
        }
        self.draining = true;
        self.handler.set_draining();
        for i in 0..self.listeners.len() {
            if self.accepting[i] {
                self.cancel_accept(i)?;
            } else {
                self.sweep(i)?;
                self.close_listener(i);
            }
        }
        let now = self.now;
        for (_, conn) in self.conns.iter_mut() {
            // Requests from now on are answered with `Connection: close`. A connection idle
            // for a while is closed now; one answered a moment ago is given `DRAIN_IDLE` to
            // send its next request (the tick closes it after that).
            conn.http.answer_with_close();
            let idle = conn.idle_since(self.keep_alive);
            if !conn.shut && idle.is_some_and(|since| now >= since + DRAIN_IDLE) {
                // The pending receive (or poll) ends with the shutdown.
                Self::shut_down(conn);
            }
        }
        Ok(())
    }

    // --- handler threads ---

    /// Keep a read armed on the pool's eventfd (`--threads`).
    fn arm_pool(&mut self) -> io::Result<()> {
        let Some(pool) = &self.pool else {
            return Ok(());
        };
        let buf: *mut u64 = &mut *self.pool_buf;
        let op = Sqe::Read {
            fd: pool.eventfd(),
            buf: buf.cast(),
            len: 8,
        };
        // SAFETY: `pool_buf` is leaked, so it is valid for as long as the kernel may write
        // it; the eventfd is kept open by the pool, which lives as long as the worker.
        unsafe { self.io.push(op, token(Op::Pool, 0)) }
    }

    /// The handler threads handed replies back (or fed streams that were waiting): a
    /// connection with nothing in flight goes on at once; a busy one takes its reply when
    /// its operation completes. Replies for connections gone since are dropped.
    fn on_pool(&mut self) -> io::Result<()> {
        let mut done = std::mem::take(&mut self.handed_back);
        if let Some(pool) = &self.pool {
            pool.take_done(&mut done);
        }
        for (ticket, what) in done.drain(..) {
            let Some(conn) = self.conns.get_mut(ticket.key) else {
                continue;
            };
            if conn.serial != ticket.serial {
                continue;
            }
            match what {
                Done::Reply(reply) => conn.reply = Some(reply),
                // Pulled when its operation in flight completes, if it has one.
                Done::Fed if conn.waiting => conn.http.resume(),
                Done::Fed => {}
            }
            if std::mem::take(&mut conn.waiting) {
                self.advance(ticket.key)?;
            }
        }
        self.handed_back = done;
        self.arm_pool()
    }

    /// Stop listening on listener `i` (the worker's copy of it).
    fn close_listener(&mut self, i: usize) {
        if let Some(l) = self.listeners[i].take() {
            self.io.forget(l.as_raw_fd());
        }
    }

    /// Cancel the operation tagged `target`, pending on `fd`.
    fn cancel(&mut self, target: u64, fd: std::os::fd::RawFd) -> io::Result<()> {
        // SAFETY: a cancellation points at no memory.
        unsafe {
            self.io
                .push(Sqe::Cancel { target, fd }, token(Op::Cancel, 0))
        }
    }

    /// Cancel listener `i`'s accept.
    fn cancel_accept(&mut self, i: usize) -> io::Result<()> {
        match &self.listeners[i] {
            Some(l) => self.cancel(token(Op::Accept, i), l.as_raw_fd()),
            None => Ok(()),
        }
    }
}

impl<R, D: Driver> Drop for Worker<R, D> {
    fn drop(&mut self) {
        // Only an error or a panic leaves connections here, with operations possibly in flight
        // on their buffers. Dropping the ring (after this) cancels them, but its teardown may
        // finish after its descriptor is closed: leak the buffers rather than free them under
        // the kernel. Their sockets close normally.
        for conn in self.conns.drain() {
            std::mem::forget(conn.http);
        }
    }
}

fn timespec(d: Duration) -> Timespec {
    Timespec::new().sec(d.as_secs()).nsec(d.subsec_nanos())
}
