//! Configuration: the command line (clap; every flag can also come from a `RINGCORN_*`
//! environment variable) and the validated [`Config`] the server runs with.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::http::Limits;

mod bind;
mod cidr;
mod cpu_quota;
mod file;
pub use bind::{Bind, Host, DEFAULT_PORT};
pub use cidr::Cidrs;
pub use file::{load_cli, print_config};

/// Everything the server needs to run, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Worker threads, one pinned per CPU.
    pub workers: usize,
    /// Where `workers` came from, for the startup log: `--workers 4`, `--cpus 0,2 (2 CPUs)`,
    /// `auto: 8 CPUs in the affinity mask, cgroup v2 cpu.max 200000 100000 at ... → 2`.
    pub workers_from: String,
    /// CPUs to pin workers to: worker i runs on `cpus[i % cpus.len()]`. Empty: the CPUs this
    /// process may run on.
    pub cpus: Vec<usize>,
    /// Addresses to listen on; port 0 picks a free port (the same one for every worker).
    pub binds: Vec<Bind>,
    /// Listen backlog of each socket.
    pub backlog: u32,
    /// Idle keep-alive connections are closed after this long.
    pub keep_alive: Duration,
    /// A request head must arrive in full within this long of its first byte (408 otherwise).
    pub header_timeout: Duration,
    /// A request body must arrive in full within this long of the end of its head (408).
    pub body_timeout: Duration,
    /// A response send that makes no progress for this long drops the connection.
    pub send_timeout: Duration,
    /// `--tcp-notsent-lowat`: bytes a connection may queue in the kernel beyond the peer's
    /// window (0: the kernel's default, unbounded unless `net.ipv4.tcp_notsent_lowat` is set).
    pub notsent_lowat: u32,
    /// On SIGTERM/SIGINT, requests under way get this long to finish.
    pub graceful_timeout: Duration,
    /// Connections one worker serves at once; past it, new ones wait in the kernel backlog.
    pub max_connections: usize,
    /// Request size limits.
    pub limits: Limits,
    /// `--body-temp-dir`: where bodies past `limits.body_buffer` are spooled (`None`: the
    /// system's temporary directory).
    pub body_temp_dir: Option<PathBuf>,
    /// Workers as threads of the master, or as forked processes (Gunicorn's model).
    pub worker_class: WorkerClass,
    /// `--threads`: handler threads per worker, for handlers that block (0: handlers run on
    /// the worker's own thread).
    pub threads: usize,
    /// `--backend`: the workers' I/O driver.
    pub backend: Backend,
    /// A worker whose loop has not turned for this long is reported (and, as a process,
    /// killed and replaced). Zero: no heartbeat check.
    pub timeout: Duration,
    /// A worker that has answered this many requests (plus up to `max_requests_jitter`) is
    /// replaced by a fresh one on the same CPU and socket. Zero: never.
    pub max_requests: u64,
    pub max_requests_jitter: u64,
    /// Written with the master's pid once listening; removed on exit.
    pub pidfile: Option<PathBuf>,
    /// Serve as this user and group (after binding); `None`: as started.
    pub user: Option<String>,
    pub group: Option<String>,
    /// The file mode mask for the files the server creates (Unix sockets, logs, pidfile).
    pub umask: Option<u32>,
    /// A path the server answers itself, before the app: 200 while serving, 503 draining.
    pub health_path: Option<String>,
    /// `--root`: the directory the `static` app serves.
    pub root: Option<PathBuf>,
    /// WSGI apps: `--chdir` (before the import), `--pythonpath` (put first on `sys.path`),
    /// `--root-path` (SCRIPT_NAME), `--env` (set in the process before the workers start).
    pub chdir: Option<PathBuf>,
    pub pythonpath: Vec<PathBuf>,
    pub root_path: String,
    pub env: Vec<(String, String)>,
    /// On SIGTERM/SIGINT, serve on this long (the health path saying 503) before the
    /// listeners close, so that load balancers stop sending first.
    pub drain_delay: Duration,
    /// `--access-logfile`: each worker renders lines in this format (none: no access log).
    pub access_log: Option<crate::http::access_log::Format>,
    /// `--proxy-protocol`: connections from `proxy_allow_from` must begin with a PROXY
    /// header (others are closed at once).
    pub proxy_protocol: Option<crate::http::proxy::Version>,
    pub proxy_allow_from: Cidrs,
    /// `--forwarded-allow-ips`: peers whose `Forwarded` / `X-Forwarded-*` headers are
    /// believed (none by default).
    pub forwarded_allow_ips: Option<Cidrs>,
    /// `--metrics`: where the master serves Prometheus metrics (`/metrics`).
    pub metrics: Option<Bind>,
    /// `--certfile`, `--keyfile`, `--ca-certs`, `--cert-reqs` (`None`: no TLS asked for).
    pub tls: Option<crate::tls::Settings>,
    /// `--tls-bind`: the addresses of `binds` that speak TLS (none given: every one does,
    /// once `--certfile` is, as in Gunicorn). See [`Config::speaks_tls`].
    pub tls_binds: Vec<Bind>,
}

impl Config {
    /// Whether the listener for `bind` speaks TLS.
    pub fn speaks_tls(&self, bind: &Bind) -> bool {
        self.tls.is_some() && (self.tls_binds.is_empty() || self.tls_binds.contains(bind))
    }
}

/// `--backend`: which driver the workers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Backend {
    /// io_uring where the kernel and the sandbox allow it, else epoll (with a warning).
    #[default]
    Auto,
    /// io_uring or nothing: a server that cannot have it does not start.
    #[value(name = "io_uring", alias = "io-uring", alias = "uring")]
    IoUring,
    /// epoll, even where io_uring would work.
    Epoll,
}

/// `--worker-class`: how workers are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkerClass {
    /// Threads of the master process (the default for compiled-in apps).
    Thread,
    /// Forked processes, each building its handler after the fork.
    Process,
}

impl Default for Config {
    /// One worker on 127.0.0.1 with a free port: what tests and embedders want.
    fn default() -> Self {
        Config {
            workers: 1,
            workers_from: "1 (default)".to_string(),
            cpus: Vec::new(),
            binds: vec![Bind::addr(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))],
            backlog: 2048,
            keep_alive: Duration::from_secs(75),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
            notsent_lowat: 16 * 1024,
            graceful_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            limits: Limits::default(),
            worker_class: WorkerClass::Thread,
            threads: 0,
            backend: Backend::Auto,
            timeout: Duration::from_secs(30),
            max_requests: 0,
            max_requests_jitter: 0,
            pidfile: None,
            user: None,
            group: None,
            umask: None,
            health_path: None,
            body_temp_dir: None,
            root: None,
            chdir: None,
            pythonpath: Vec::new(),
            root_path: String::new(),
            env: Vec::new(),
            drain_delay: Duration::ZERO,
            access_log: None,
            proxy_protocol: None,
            proxy_allow_from: default_proxy_allow_from(),
            forwarded_allow_ips: None,
            metrics: None,
            tls: None,
            tls_binds: Vec::new(),
        }
    }
}

fn default_proxy_allow_from() -> Cidrs {
    // Two literal addresses: they parse.
    "127.0.0.1,::1".parse().unwrap_or_else(|_| unreachable!())
}

/// `ringcorn [OPTIONS] [APP]`: the command line, Gunicorn's where it has an equivalent.
#[derive(Debug, Parser)]
#[command(
    name = "ringcorn",
    version,
    about = "Thread-per-core io_uring HTTP/1.1 server for compiled-in Rust apps"
)]
pub struct Cli {
    /// The app to serve (like Gunicorn's `module:app`).
    #[arg(value_name = "APP")]
    pub app: Option<String>,

    /// Worker threads, each pinned to its own CPU: a number, or `auto` for one per CPU
    /// (no more than the cgroup's CPU quota, rounded up).
    #[arg(short, long, default_value = "auto", value_parser = parse_workers, env = "RINGCORN_WORKERS")]
    pub workers: Workers,

    /// CPUs to pin the workers to, e.g. `0,2-3` (default: every CPU this process may use).
    #[arg(long, value_parser = parse_cpus, env = "RINGCORN_CPUS")]
    pub cpus: Option<CpuList>,

    /// Where to listen: `HOST:PORT` (a name binds every address it resolves to), `HOST`
    /// (port 8000), `[V6]:PORT`, `unix:PATH`, or `fd://N` (an inherited listening socket);
    /// repeat for several. Ignored when systemd passes sockets (socket activation).
    #[arg(
        short,
        long = "bind",
        value_name = "ADDR",
        default_value = "127.0.0.1:8000",
        env = "RINGCORN_BIND",
        value_delimiter = ','
    )]
    pub binds: Vec<Bind>,

    /// Listen backlog (pending connections the kernel queues per socket).
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u32).range(1..), env = "RINGCORN_BACKLOG")]
    pub backlog: u32,

    /// Seconds an idle keep-alive connection is kept open (Gunicorn's 2 s causes 502s behind
    /// load balancers; nginx uses 75).
    #[arg(long, value_name = "SECS", default_value_t = 75, value_parser = clap::value_parser!(u64).range(1..), env = "RINGCORN_KEEP_ALIVE")]
    pub keep_alive: u64,

    /// Seconds a request head may take to arrive in full, from its first byte (then 408).
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..), env = "RINGCORN_HEADER_TIMEOUT")]
    pub header_timeout: u64,

    /// Seconds requests under way get to finish after SIGTERM/SIGINT.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 30,
        env = "RINGCORN_GRACEFUL_TIMEOUT"
    )]
    pub graceful_timeout: u64,

    /// Seconds a request body may take to arrive in full, from the end of its head (then 408).
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..), env = "RINGCORN_BODY_TIMEOUT")]
    pub body_timeout: u64,

    /// Seconds a response send may make no progress before the connection is dropped.
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..), env = "RINGCORN_SEND_TIMEOUT")]
    pub send_timeout: u64,

    /// Bytes of a response each connection may have queued in the kernel beyond what the
    /// client's TCP window admits (TCP_NOTSENT_LOWAT; 0: the kernel's default,
    /// net.ipv4.tcp_notsent_lowat, unlimited unless set). Bounds the kernel memory a slow
    /// reader holds: without it, megabytes each.
    #[arg(long, value_name = "BYTES", default_value_t = 16 * 1024, value_parser = clap::value_parser!(u32).range(0..=1 << 30), env = "RINGCORN_TCP_NOTSENT_LOWAT")]
    pub tcp_notsent_lowat: u32,

    /// Connections each worker serves at once; past it the worker stops accepting (new
    /// connections wait in the kernel backlog) until one closes.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000), env = "RINGCORN_MAX_CONNECTIONS")]
    pub max_connections: u64,

    /// Longest request line in bytes (414 beyond).
    #[arg(long, value_name = "BYTES", default_value_t = 8 * 1024, value_parser = clap::value_parser!(u64).range(16..=1 << 20), env = "RINGCORN_LIMIT_REQUEST_LINE")]
    pub limit_request_line: u64,

    /// Longest header field line in bytes (431 beyond).
    #[arg(long, value_name = "BYTES", default_value_t = 8 * 1024, value_parser = clap::value_parser!(u64).range(16..=1 << 20), env = "RINGCORN_LIMIT_REQUEST_FIELD_SIZE")]
    pub limit_request_field_size: u64,

    /// Most header fields in a request (431 beyond; at most 256).
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=256), env = "RINGCORN_LIMIT_REQUEST_FIELDS")]
    pub limit_request_fields: u64,

    /// Largest request head (request line and headers) in bytes (431 beyond).
    #[arg(long, value_name = "BYTES", default_value_t = 32 * 1024, value_parser = clap::value_parser!(u64).range(64..=1 << 24), env = "RINGCORN_LIMIT_REQUEST_HEAD")]
    pub limit_request_head: u64,

    /// Largest request body in bytes, after chunked decoding (413 beyond, answered before the
    /// body is read when its length is declared). Bodies past --body-buffer-size are written
    /// to a temporary file as they arrive, so this may be gigabytes.
    #[arg(long, value_name = "BYTES", default_value_t = 1024 * 1024, value_parser = clap::value_parser!(u64).range(1..=1 << 40), env = "RINGCORN_MAX_BODY_SIZE")]
    pub max_body_size: u64,

    /// Request bodies up to this size are held in memory; a larger one is written to an
    /// unnamed temporary file in --body-temp-dir as it arrives (the handler gets it mapped,
    /// and as the file).
    #[arg(long, value_name = "BYTES", default_value_t = 1024 * 1024, value_parser = clap::value_parser!(u64).range(4096..=1 << 30), env = "RINGCORN_BODY_BUFFER_SIZE")]
    pub body_buffer_size: u64,

    /// The directory for request bodies larger than --body-buffer-size (default: $TMPDIR or
    /// /tmp; on tmpfs they take memory, so point it at a disk for large uploads).
    #[arg(long, value_name = "DIR", env = "RINGCORN_BODY_TEMP_DIR")]
    pub body_temp_dir: Option<PathBuf>,

    /// Log level.
    #[arg(long, value_enum, default_value_t = LogLevel::Info, env = "RINGCORN_LOG_LEVEL")]
    pub log_level: LogLevel,

    /// Run workers as threads of the master or as forked processes (Gunicorn's model).
    #[arg(long, value_enum, default_value_t = WorkerClass::Thread, env = "RINGCORN_WORKER_CLASS")]
    pub worker_class: WorkerClass,

    /// Handler threads per worker, for handlers that block (Gunicorn's gthread): the worker's
    /// loop hands each request to one of them and keeps serving its other connections
    /// meanwhile. 0 runs handlers on the worker's own thread (the fastest, for handlers that
    /// never block).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        value_parser = clap::value_parser!(u32).range(0..=1024),
        env = "RINGCORN_THREADS"
    )]
    pub threads: u32,

    /// The workers' I/O: `io_uring`, `epoll` (where io_uring is blocked: container seccomp
    /// profiles, `kernel.io_uring_disabled`), or `auto`: io_uring where it can be had, else
    /// epoll with a warning saying why.
    #[arg(long, value_enum, default_value_t = Backend::Auto, env = "RINGCORN_BACKEND")]
    pub backend: Backend,

    /// Seconds a worker's loop may go without turning before it is reported (as a process:
    /// killed and replaced); 0 turns the check off.
    #[arg(
        short,
        long,
        value_name = "SECS",
        default_value_t = 30,
        env = "RINGCORN_TIMEOUT"
    )]
    pub timeout: u64,

    /// Replace a worker after it has answered this many requests; 0 never.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        env = "RINGCORN_MAX_REQUESTS"
    )]
    pub max_requests: u64,

    /// Add a random 0..=J to each worker's --max-requests, so workers are not all replaced at
    /// once.
    #[arg(
        long,
        value_name = "J",
        default_value_t = 0,
        env = "RINGCORN_MAX_REQUESTS_JITTER"
    )]
    pub max_requests_jitter: u64,

    /// Write the master's pid to FILE once listening (removed on exit; renamed to
    /// FILE.oldbin during a USR2 upgrade).
    #[arg(short, long = "pid", value_name = "FILE", env = "RINGCORN_PID")]
    pub pidfile: Option<PathBuf>,

    /// Serve as this user (name or number) once the sockets are bound: the whole server with
    /// thread workers, each worker process with `--worker-class process` (the master stays).
    #[arg(short = 'u', long, value_name = "USER", env = "RINGCORN_USER")]
    pub user: Option<String>,

    /// Serve as this group (name or number; default: the user's primary group).
    #[arg(short = 'g', long, value_name = "GROUP", env = "RINGCORN_GROUP")]
    pub group: Option<String>,

    /// File mode mask (octal, e.g. 007) for the files the server creates: Unix sockets,
    /// logs, the pidfile. Default: the one it was started with.
    #[arg(short = 'm', long, value_name = "MASK", value_parser = parse_umask, env = "RINGCORN_UMASK")]
    pub umask: Option<Umask>,

    /// A path the server answers itself, before the app (e.g. /healthz): 200 while serving,
    /// 503 once a stop is announced or the worker drains.
    #[arg(long, value_name = "PATH", value_parser = parse_health_path, env = "RINGCORN_HEALTH_PATH")]
    pub health_path: Option<String>,

    /// The directory the `static` app serves (files under it only; symlinks out of it are
    /// refused).
    #[arg(long, value_name = "DIR", env = "RINGCORN_ROOT")]
    pub root: Option<PathBuf>,

    /// WSGI apps: change to DIR before importing the app (Gunicorn's --chdir).
    #[arg(long, value_name = "DIR", env = "RINGCORN_CHDIR")]
    pub chdir: Option<PathBuf>,

    /// WSGI apps: directories to put first on the module search path, comma-separated
    /// (Gunicorn's --pythonpath).
    #[arg(
        long,
        value_name = "DIRS",
        value_delimiter = ',',
        env = "RINGCORN_PYTHONPATH"
    )]
    pub pythonpath: Vec<PathBuf>,

    /// WSGI apps: the path prefix the app is mounted at, its SCRIPT_NAME (Gunicorn's
    /// --root-path); PATH_INFO is the rest.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "",
        env = "RINGCORN_ROOT_PATH"
    )]
    pub root_path: String,

    /// Set KEY=VALUE in the server's environment before the workers start (Gunicorn's
    /// --env); repeat for several.
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,

    /// Seconds to serve on after SIGTERM/SIGINT, with the health path answering 503, before
    /// the listeners close (load balancers stop sending first).
    #[arg(long, value_name = "SECS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=3600), env = "RINGCORN_DRAIN_DELAY")]
    pub drain_delay: u64,

    /// The access log: a file (appended to; SIGUSR1 reopens it) or `-` for stdout. Off by
    /// default.
    #[arg(long, value_name = "FILE", env = "RINGCORN_ACCESS_LOGFILE")]
    pub access_logfile: Option<PathBuf>,

    /// The access log's format: Gunicorn's `%(NAME)s` atoms, or `common`, `combined` (the
    /// default, Gunicorn's), `json`.
    #[arg(long, value_name = "FORMAT", default_value = "combined", value_parser = parse_log_format, env = "RINGCORN_ACCESS_LOGFORMAT")]
    pub access_logformat: String,

    /// Connections must begin with a PROXY protocol header (HAProxy, AWS NLB ...): `v1`,
    /// `v2`, `auto` (either) or `off`. Its source address becomes the request's peer.
    #[arg(long, value_enum, default_value_t = ProxyProtocol::Off, env = "RINGCORN_PROXY_PROTOCOL")]
    pub proxy_protocol: ProxyProtocol,

    /// Peers allowed to send a PROXY header (addresses or CIDR blocks, comma-separated, `*`
    /// for any); a connection from any other peer is closed at once.
    #[arg(long, value_name = "CIDRS", default_value = "127.0.0.1,::1", value_parser = parse_cidrs, env = "RINGCORN_PROXY_ALLOW_FROM")]
    pub proxy_allow_from: String,

    /// Peers (addresses or CIDR blocks, `*` for any) whose `Forwarded` or `X-Forwarded-For`
    /// / `X-Forwarded-Proto` headers give the request's client address and scheme; from
    /// anyone else they are ignored. None by default.
    #[arg(long, value_name = "CIDRS", value_parser = parse_cidrs, env = "RINGCORN_FORWARDED_ALLOW_IPS")]
    pub forwarded_allow_ips: Option<String>,

    /// Serve Prometheus metrics (text format 0.0.4) at `/metrics` on this address:
    /// `HOST:PORT` or `unix:PATH`, a listener of its own answered by the master, never by the
    /// workers. Off by default.
    #[arg(long, value_name = "ADDR", value_parser = parse_metrics_bind, env = "RINGCORN_METRICS")]
    pub metrics: Option<Bind>,

    /// A TLS certificate chain (PEM, the server's certificate first). Repeat it with one
    /// --keyfile each for several certificates: the client's SNI name picks one, and the
    /// first answers the rest. Without --tls-bind, every --bind speaks TLS.
    #[arg(
        long,
        value_name = "FILE",
        env = "RINGCORN_CERTFILE",
        value_delimiter = ','
    )]
    pub certfile: Vec<PathBuf>,

    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1) of the --certfile in the same position.
    #[arg(
        long,
        value_name = "FILE",
        env = "RINGCORN_KEYFILE",
        value_delimiter = ','
    )]
    pub keyfile: Vec<PathBuf>,

    /// CA certificates (PEM) that client certificates must chain to (--cert-reqs).
    #[arg(long, value_name = "FILE", env = "RINGCORN_CA_CERTS")]
    pub ca_certs: Option<PathBuf>,

    /// Client certificates: none (not asked for), optional (asked for; a client without one
    /// is served) or required. Gunicorn's 0, 1 and 2 are accepted too.
    #[arg(long, value_enum, default_value_t = crate::tls::CertReqs::None, env = "RINGCORN_CERT_REQS")]
    pub cert_reqs: crate::tls::CertReqs,

    /// An address that speaks TLS (repeatable; the --bind forms), beside the plain --bind
    /// ones. Without it, --certfile makes every --bind speak TLS.
    #[arg(
        long = "tls-bind",
        value_name = "ADDR",
        env = "RINGCORN_TLS_BIND",
        value_delimiter = ','
    )]
    pub tls_binds: Vec<Bind>,

    /// The server's own log: a file (appended to; SIGUSR1 reopens it, for logrotate) or `-`
    /// for stderr.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "-",
        env = "RINGCORN_ERROR_LOGFILE"
    )]
    pub error_logfile: PathBuf,

    /// A TOML file with any of these options (same names, `-` or `_`); the command line and
    /// RINGCORN_* variables override it.
    #[arg(
        short = 'c',
        long = "config",
        value_name = "FILE",
        env = "RINGCORN_CONFIG"
    )]
    pub config: Option<PathBuf>,

    /// Validate the configuration (file, values, that the app exists) and exit 0 or 1
    /// without binding.
    #[arg(long)]
    pub check_config: bool,

    /// Print the effective configuration as TOML (valid input for --config) and exit.
    #[arg(long)]
    pub print_config: bool,

    /// Preflight: probe this host for what the configuration needs (io_uring, open-file and
    /// locked-memory limits, the kernel's listen queues, CPUs, every address bound once) and
    /// print one line per check, OK, WARN or FAIL, with the fix; exit 0 without a FAIL, else
    /// 1. Starts no worker and serves nothing.
    #[arg(long)]
    pub check: bool,

    /// The output of --check: `text` (a line per check) or `json` (one document).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = CheckFormat::Text)]
    pub format: CheckFormat,
}

/// `--format`: how `--check` prints its results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckFormat {
    /// One line per check: `OK`, `WARN` or `FAIL`, its name, what it found and the fix.
    Text,
    /// One JSON document: `{"ok": bool, "checks": [{"name", "status", "detail", "fix"}]}`.
    Json,
}

/// `--workers`: a count, or one per CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    Auto,
    Count(usize),
}

/// `--cpus`: a list of CPU numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuList(pub Vec<usize>);

/// `--log-level`, with Gunicorn's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

impl LogLevel {
    pub fn filter(self) -> tracing::Level {
        match self {
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Warning => tracing::Level::WARN,
            LogLevel::Error | LogLevel::Critical => tracing::Level::ERROR,
        }
    }
}

/// The most workers `--workers` takes.
pub const MAX_WORKERS: usize = 1024;

fn parse_workers(s: &str) -> Result<Workers, String> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(Workers::Auto);
    }
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1 (or `auto`)".into()),
        Ok(n) if n > MAX_WORKERS => Err(format!("at most {MAX_WORKERS} workers")),
        Ok(n) => Ok(Workers::Count(n)),
        Err(_) => Err("expected a number of workers or `auto`".into()),
    }
}

/// `--umask`: octal digits, as `umask(1)` takes them (a config file writes a string, "022").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Umask(pub u32);

fn parse_umask(s: &str) -> Result<Umask, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o777 => Ok(Umask(m)),
        _ => Err("expected an octal mask from 0 to 777 (e.g. 022)".into()),
    }
}

/// `--proxy-protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProxyProtocol {
    Off,
    V1,
    V2,
    Auto,
}

fn parse_cidrs(s: &str) -> Result<String, String> {
    s.parse::<Cidrs>().map(|_| s.to_string())
}

fn parse_log_format(s: &str) -> Result<String, String> {
    crate::http::access_log::Format::parse(s).map(|_| s.to_string())
}

fn parse_metrics_bind(s: &str) -> Result<Bind, String> {
    match s.parse::<Bind>()? {
        Bind::Fd(_) => Err(
            "the metrics listener is bound by the server: use HOST:PORT or \
                            unix:PATH, not fd://N"
                .to_string(),
        ),
        bind => Ok(bind),
    }
}

/// `--env KEY=VALUE`: a non-empty key without `=` or NUL, then any value.
fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.is_empty() && !s.contains('\0') => {
            Ok((key.to_string(), value.to_string()))
        }
        _ => Err("expected KEY=VALUE (a non-empty KEY)".into()),
    }
}

fn parse_health_path(s: &str) -> Result<String, String> {
    if !s.starts_with('/') || s.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'?') {
        return Err(
            "expected a path like /healthz (starting with `/`, no query, no spaces)".into(),
        );
    }
    Ok(s.to_string())
}

fn parse_cpus(s: &str) -> Result<CpuList, String> {
    let mut cpus = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        let number = |t: &str| {
            t.trim()
                .parse::<usize>()
                .map_err(|_| format!("`{t}` is not a CPU number (expected a list like 0,2-3)"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (number(a)?, number(b)?);
                if a > b {
                    return Err(format!("range `{part}` runs backwards"));
                }
                if b - a > 4096 {
                    return Err(format!("range `{part}` is too large"));
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(number(part)?),
        }
    }
    Ok(CpuList(cpus))
}

impl Cli {
    /// Resolve `auto` against the CPUs this process may run on, and build the [`Config`].
    pub fn config(&self) -> Config {
        let cpus = match &self.cpus {
            Some(CpuList(list)) => list.clone(),
            None => Vec::new(),
        };
        let (workers, workers_from) = match self.workers {
            Workers::Count(n) => (n, format!("--workers {n}")),
            Workers::Auto if !cpus.is_empty() => {
                let from = format!("--cpus {} ({})", cpu_ranges(&cpus), count_cpus(cpus.len()));
                (cpus.len(), from)
            }
            Workers::Auto => auto_workers(available_cpus().len()),
        };
        Config {
            workers,
            workers_from,
            cpus,
            binds: self.binds.iter().chain(&self.tls_binds).cloned().collect(),
            backlog: self.backlog,
            keep_alive: Duration::from_secs(self.keep_alive),
            header_timeout: Duration::from_secs(self.header_timeout),
            body_timeout: Duration::from_secs(self.body_timeout),
            send_timeout: Duration::from_secs(self.send_timeout),
            notsent_lowat: self.tcp_notsent_lowat,
            graceful_timeout: Duration::from_secs(self.graceful_timeout),
            // The value parsers bound these far below usize::MAX.
            max_connections: self.max_connections as usize,
            limits: Limits {
                max_request_line: self.limit_request_line as usize,
                max_header_line: self.limit_request_field_size as usize,
                max_header_count: self.limit_request_fields as usize,
                max_head: self.limit_request_head as usize,
                max_body: self.max_body_size as usize,
                body_buffer: self.body_buffer_size as usize,
                ..Limits::default()
            },
            worker_class: self.worker_class,
            threads: self.threads as usize,
            backend: self.backend,
            timeout: Duration::from_secs(self.timeout),
            max_requests: self.max_requests,
            max_requests_jitter: self.max_requests_jitter,
            pidfile: self.pidfile.clone(),
            user: self.user.clone(),
            group: self.group.clone(),
            umask: self.umask.map(|m| m.0),
            health_path: self.health_path.clone(),
            body_temp_dir: self.body_temp_dir.clone(),
            root: self.root.clone(),
            chdir: self.chdir.clone(),
            pythonpath: self.pythonpath.clone(),
            root_path: self.root_path.clone(),
            env: self.env.clone(),
            drain_delay: Duration::from_secs(self.drain_delay),
            // The value parser accepted the format already.
            proxy_protocol: match self.proxy_protocol {
                ProxyProtocol::Off => None,
                ProxyProtocol::V1 => Some(crate::http::proxy::Version::V1),
                ProxyProtocol::V2 => Some(crate::http::proxy::Version::V2),
                ProxyProtocol::Auto => Some(crate::http::proxy::Version::Auto),
            },
            // The value parser accepted the list already.
            proxy_allow_from: self
                .proxy_allow_from
                .parse()
                .unwrap_or_else(|_| default_proxy_allow_from()),
            forwarded_allow_ips: self
                .forwarded_allow_ips
                .as_deref()
                .and_then(|s| s.parse().ok()),
            metrics: self.metrics.clone(),
            tls: (!self.certfile.is_empty() || !self.keyfile.is_empty()).then(|| {
                crate::tls::Settings {
                    certfiles: self.certfile.clone(),
                    keyfiles: self.keyfile.clone(),
                    ca_certs: self.ca_certs.clone(),
                    cert_reqs: self.cert_reqs,
                }
            }),
            tls_binds: self.tls_binds.clone(),
            access_log: self
                .access_logfile
                .as_ref()
                .and_then(|_| crate::http::access_log::Format::parse(&self.access_logformat).ok()),
        }
    }
}

/// `--workers auto` without `--cpus`: one worker per CPU in the affinity mask (`mask` CPUs),
/// but no more than the cgroup's CPU quota; at least 1. Also says where the count came from.
fn auto_workers(mask: usize) -> (usize, String) {
    let from_mask = format!("auto: {} in the affinity mask", count_cpus(mask));
    match cpu_quota::detect() {
        None => (mask.max(1), from_mask),
        Some(quota) => (
            mask.min(quota.cpus).max(1),
            format!("{from_mask}, {} → {}", quota.source, quota.cpus),
        ),
    }
}

/// A CPU list the way `--cpus` takes it: runs of consecutive CPUs as ranges (`0,2-3`).
pub(crate) fn cpu_ranges(cpus: &[usize]) -> String {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &cpu in cpus {
        match runs.last_mut() {
            Some((_, last)) if last.checked_add(1) == Some(cpu) => *last = cpu,
            _ => runs.push((cpu, cpu)),
        }
    }
    let shown: Vec<String> = runs
        .iter()
        .map(|&(first, last)| {
            if first == last {
                first.to_string()
            } else {
                format!("{first}-{last}")
            }
        })
        .collect();
    shown.join(",")
}

/// `1 CPU`, `8 CPUs`.
fn count_cpus(n: usize) -> String {
    format!("{n} CPU{}", if n == 1 { "" } else { "s" })
}

/// The CPUs this process may run on (its affinity mask, as `taskset` set it).
pub fn available_cpus() -> Vec<usize> {
    core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ringcorn").chain(args.iter().copied()))
    }

    #[test]
    fn defaults() {
        let cli = parse(&[]).expect("parses");
        let config = cli.config();
        assert_eq!(
            config.binds,
            vec!["127.0.0.1:8000".parse::<Bind>().expect("addr")]
        );
        assert_eq!(config.backlog, 2048);
        assert_eq!(config.keep_alive, Duration::from_secs(75));
        assert_eq!(config.graceful_timeout, Duration::from_secs(30));
        assert!(config.workers >= 1);
        assert_eq!(config.limits, Limits::default());
        assert_eq!(config.max_connections, 10_000);
        assert_eq!(cli.app, None);
    }

    #[test]
    fn workers_and_cpus() {
        let cli = parse(&[
            "--workers",
            "3",
            "--cpus",
            "0,2-3",
            "-b",
            "[::1]:0",
            "-b",
            "0.0.0.0:80",
            "echo",
        ])
        .expect("parses");
        let config = cli.config();
        assert_eq!(config.workers, 3);
        assert_eq!(config.workers_from, "--workers 3");
        assert_eq!(config.cpus, vec![0, 2, 3]);
        assert_eq!(config.binds.len(), 2);
        assert_eq!(cli.app.as_deref(), Some("echo"));
        let config = parse(&["--cpus", "1,4-5"]).expect("parses").config();
        assert_eq!(config.workers, 3);
        assert_eq!(config.workers_from, "--cpus 1,4-5 (3 CPUs)");
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            &["--workers", "two"][..],
            &["--workers", "0"],
            &["--bind", "no such host"],
            &["--bind", "127.0.0.1:65536"],
            &["--bind", "unix:"],
            &["--bind", "fd://three"],
            &["--umask", "8"],
            &["--cpus", "x"],
            &["--cpus", "3-1"],
            &["--backlog", "0"],
            &["--keep-alive", "-1"],
            &["--max-connections", "0"],
            &["--limit-request-fields", "257"],
            &["--limit-request-line", "lots"],
            &["--max-body-size", "-5"],
        ] {
            let err = parse(args).expect_err("must fail");
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
        let msg = parse(&["--workers", "two"]).expect_err("fails").to_string();
        assert!(msg.contains("--workers") && msg.contains("two"), "{msg}");
    }
}
