//! `ringcorn --check`: a preflight that probes this host for what a configuration needs and
//! prints one line per check, `OK`, `WARN` or `FAIL`, with what it found and the fix; the
//! exit code is 0 when nothing failed, else 1. It takes the same command line and config
//! file as a run, and starts no worker.
//!
//! [`gather`] asks the host (the io_uring probe, rlimits, `uname`, `/proc/sys`, the affinity
//! mask) and [`judge`] turns those facts into results without touching it, so every
//! threshold is unit-tested. Binds are tried for real ([`check_binds`]): each address is
//! bound once on a throwaway socket, and only what `bind(2)` says is interpreted
//! ([`bind_failure`]).

use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use serde::Serialize;
use socket2::{Domain, SockAddr, SockRef, Socket, Type};

use crate::config::{available_cpus, Backend, Bind, CheckFormat, Cli, Config, WorkerClass};

/// Submission queue entries of a worker's ring (`ENTRIES` in `worker/uring.rs`).
const SQ_ENTRIES: u64 = 4096;
/// Completion queue entries of a worker's ring: four times the submission queue.
const CQ_ENTRIES: u64 = 4 * SQ_ENTRIES;
/// Descriptors each worker holds besides connections and listeners: its ring or epoll
/// instance, the master's eventfd, a pipe end.
const DESCRIPTORS_PER_WORKER: u64 = 4;
/// Descriptors the server holds whatever the configuration: stdio, the logs, the pidfile,
/// the metrics listener and its 16 scrapes, signal and supervision pipes.
const DESCRIPTORS_BASE: u64 = 64;
/// First kernel that charges io_uring rings to the memory cgroup, not RLIMIT_MEMLOCK.
const RINGS_OFF_MEMLOCK: (u32, u32) = (5, 12);
/// First kernel with `net.ipv4.tcp_migrate_req`.
const MIGRATE_REQ_SINCE: (u32, u32) = (5, 14);
/// Linux's `CAP_IPC_LOCK` bit: rings are not charged to RLIMIT_MEMLOCK for its holder.
const CAP_IPC_LOCK: u32 = 14;

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// The server starts, but something will not work as configured.
    Warn,
    /// The server would not start, or not as configured.
    Fail,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    /// What was found, with its numbers.
    pub detail: String,
    /// What to do about it (none when all is well).
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name,
            status: Status::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: Option<String>) -> Check {
        Check {
            name,
            status: Status::Fail,
            detail: detail.into(),
            fix,
        }
    }
}

/// The JSON document of `--format json`.
#[derive(Serialize)]
struct Report<'a> {
    ok: bool,
    checks: &'a [Check],
}

/// A soft and a hard resource limit (`u64::MAX`: unlimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub soft: u64,
    pub hard: u64,
}

/// A `/proc/sys` value: `Ok(None)` when the file does not exist (a kernel without it).
pub type Sysctl = Result<Option<u64>, String>;

/// Why the io_uring probe refused: the words (with the remedy) and the error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoRing {
    pub why: String,
    pub cause: String,
}

/// What the probes found on this host.
#[derive(Debug, Clone)]
pub struct Facts {
    /// `uname -r`.
    pub kernel_release: String,
    /// The io_uring probe: the ring's mode, or why the workers cannot have a ring.
    pub io_uring: Result<String, NoRing>,
    pub nofile: Result<Limit, String>,
    pub memlock: Result<Limit, String>,
    /// The process has CAP_IPC_LOCK (rings are then not charged to RLIMIT_MEMLOCK).
    pub ipc_lock: bool,
    pub page_size: u64,
    pub somaxconn: Sysctl,
    pub tcp_migrate_req: Sysctl,
    pub tcp_max_syn_backlog: Sysctl,
    /// The process's affinity mask.
    pub available_cpus: Vec<usize>,
    /// TCP addresses the binds resolved to: each gets a listening socket per worker.
    pub tcp_addresses: usize,
}

/// `--check`: probe, print the report in `cli.format`, and return the exit code. `app` is
/// the app the command line picks, or why it cannot be had.
pub fn run(cli: &Cli, app: Result<String, String>) -> i32 {
    let config = cli.config();
    let checks = check(&config, app);
    let ok = !checks.iter().any(|c| c.status == Status::Fail);
    let text = match cli.format {
        CheckFormat::Text => render_text(&checks),
        CheckFormat::Json => match serde_json::to_string_pretty(&Report {
            ok,
            checks: &checks,
        }) {
            Ok(json) => json + "\n",
            Err(e) => {
                eprintln!("error: cannot write the report as JSON: {e}");
                return 1;
            }
        },
    };
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        eprintln!("error: cannot write the report: {e}");
        return 1;
    }
    i32::from(!ok)
}

/// Every check, in the report's order.
pub fn check(config: &Config, app: Result<String, String>) -> Vec<Check> {
    // Descriptors named by fd://N first, before anything here opens one of its own.
    let (binds, tcp_addresses) = check_binds(config);
    let facts = gather(tcp_addresses);
    let mut checks = vec![match app {
        Ok(name) => Check::ok("app", format!("`{name}`")),
        Err(why) => {
            let fix = if why.contains("WSGI app") {
                "make the module importable from the working directory, --chdir or \
                 --pythonpath, and fix what the Python error says"
            } else {
                "name one of the available apps (the APP argument or `app` in the file)"
            };
            Check::fail("app", why, Some(fix.into()))
        }
    }];
    if let Some(tls) = check_tls(config) {
        checks.push(tls);
    }
    checks.extend(judge(config, &facts));
    checks.extend(binds);
    checks
}

/// The TLS certificates and keys load and are valid now (when TLS is asked for).
fn check_tls(config: &Config) -> Option<Check> {
    const NAME: &str = "tls";
    let fix = || Some("see the file named; each --certfile needs its --keyfile".to_string());
    let Some(settings) = &config.tls else {
        return config.tls_binds.first().map(|bind| {
            Check::fail(
                NAME,
                format!("--tls-bind {bind}: TLS needs --certfile and --keyfile"),
                fix(),
            )
        });
    };
    Some(match crate::tls::Tls::load(settings, None) {
        Ok(tls) => Check::ok(
            NAME,
            tls.loaded
                .iter()
                .map(|l| {
                    format!(
                        "{} for {} (valid until {})",
                        l.certfile.display(),
                        l.names.join(", "),
                        l.not_after
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        ),
        Err(why) => Check::fail(NAME, why, fix()),
    })
}

/// The report as text: one line per check, then a summary.
pub fn render_text(checks: &[Check]) -> String {
    let mut out = String::new();
    for c in checks {
        out.push_str(&format!(
            "{:<4} {:<19}  {}",
            c.status.label(),
            c.name,
            c.detail
        ));
        if let Some(fix) = &c.fix {
            out.push_str(&format!("; fix: {fix}"));
        }
        out.push('\n');
    }
    let count = |s| checks.iter().filter(|c| c.status == s).count();
    let failed = count(Status::Fail);
    out.push_str(&format!(
        "{} checks: {} OK, {} WARN, {failed} FAIL: {}\n",
        checks.len(),
        count(Status::Ok),
        count(Status::Warn),
        if failed == 0 {
            "ringcorn can start with this configuration"
        } else {
            "ringcorn would not start (or not as configured)"
        }
    ));
    out
}

// ---------------------------------------------------------------------------
// Judging the facts (no I/O)
// ---------------------------------------------------------------------------

/// The checks that judge [`Facts`] against the configuration, in the report's order.
pub fn judge(config: &Config, facts: &Facts) -> Vec<Check> {
    vec![
        io_uring(config, facts),
        backend(config, facts),
        nofile(config, facts),
        memlock(config, facts),
        somaxconn(config, facts),
        tcp_migrate_req(facts),
        tcp_max_syn_backlog(config, facts),
        cpus(config, facts),
    ]
}

fn io_uring(config: &Config, facts: &Facts) -> Check {
    const NAME: &str = "io_uring";
    match (&facts.io_uring, config.backend) {
        (Ok(mode), Backend::Epoll) => Check::ok(
            NAME,
            format!("available ({mode}), not used: --backend epoll"),
        ),
        (Ok(mode), _) => Check::ok(
            NAME,
            format!("{mode}: ring setup, the opcodes the workers submit and multishot accept work"),
        ),
        (Err(no), Backend::Epoll) => Check::ok(
            NAME,
            format!(
                "unavailable, not needed: --backend epoll ({}: {})",
                no.cause, no.why
            ),
        ),
        (Err(no), Backend::Auto) => Check::warn(
            NAME,
            format!(
                "unavailable, --backend auto serves with epoll instead: {} ({})",
                no.why, no.cause
            ),
            "allow io_uring as said, or choose `--backend epoll` to run without it knowingly",
        ),
        (Err(no), Backend::IoUring) => Check::fail(
            NAME,
            format!(
                "unavailable, and --backend io_uring asks for it: {} ({})",
                no.why, no.cause
            ),
            Some("allow io_uring as said, or `--backend auto` (epoll here)".into()),
        ),
    }
}

fn backend(config: &Config, facts: &Facts) -> Check {
    const NAME: &str = "backend";
    let ring = facts.io_uring.is_ok();
    match config.backend {
        Backend::Auto if ring => Check::ok(NAME, "io_uring (--backend auto: the probe passed)"),
        Backend::Auto => Check::ok(
            NAME,
            "epoll (--backend auto falls back: io_uring is unavailable, see the io_uring line)",
        ),
        Backend::Epoll => Check::ok(
            NAME,
            format!(
                "epoll (--backend epoll asked; auto would choose {})",
                if ring { "io_uring" } else { "epoll" }
            ),
        ),
        Backend::IoUring if ring => Check::ok(NAME, "io_uring (--backend io_uring asked)"),
        Backend::IoUring => Check::fail(
            NAME,
            "none: --backend io_uring asked and io_uring is unavailable, so the server would \
             exit 1 at start (auto would choose epoll)",
            Some("`--backend auto` or `--backend epoll`, or allow io_uring".into()),
        ),
    }
}

/// The descriptors one process needs: its connections, and a margin for the listening
/// sockets and the server's own.
fn descriptors_needed(config: &Config, tcp_addresses: usize) -> (u64, u64) {
    let workers = config.workers as u64;
    let per_process_workers = match config.worker_class {
        WorkerClass::Thread => workers,
        WorkerClass::Process => 1,
    };
    let connections = per_process_workers * config.max_connections as u64;
    let mut listeners = workers * tcp_addresses as u64;
    for bind in &config.binds {
        listeners += match bind {
            Bind::Tcp { .. } => 0,
            Bind::Unix(_) => 1,
            // With SO_REUSEPORT, a socket per worker is opened beside the passed one.
            Bind::Fd(_) => workers,
        };
    }
    let margin = listeners + workers * DESCRIPTORS_PER_WORKER + DESCRIPTORS_BASE;
    (connections, margin)
}

fn nofile(config: &Config, facts: &Facts) -> Check {
    const NAME: &str = "nofile";
    let limit = match &facts.nofile {
        Ok(limit) => *limit,
        Err(e) => {
            return Check::warn(
                NAME,
                format!("cannot read RLIMIT_NOFILE: {e}"),
                "check `ulimit -Hn`",
            )
        }
    };
    let (connections, margin) = descriptors_needed(config, facts.tcp_addresses);
    let needed = connections + margin;
    let whose = match config.worker_class {
        WorkerClass::Thread => format!(
            "{} workers × {} connections",
            config.workers, config.max_connections
        ),
        WorkerClass::Process => format!(
            "each worker process: {} connections",
            config.max_connections
        ),
    };
    let found = format!(
        "RLIMIT_NOFILE hard limit {} (soft {}, raised to the hard one at start)",
        show_limit(limit.hard),
        show_limit(limit.soft)
    );
    if limit.hard >= needed {
        return Check::ok(
            NAME,
            format!(
                "{found} ≥ {needed} needed: {whose} + {margin} for listeners and the server's own"
            ),
        );
    }
    let per_process_workers = match config.worker_class {
        WorkerClass::Thread => config.workers as u64,
        WorkerClass::Process => 1,
    };
    let lower = limit
        .hard
        .checked_sub(margin)
        .map(|room| room / per_process_workers.max(1))
        .filter(|&n| n >= 1)
        .map(|n| format!(", or lower --max-connections to {n}"))
        .unwrap_or_default();
    Check::warn(
        NAME,
        format!(
            "{found} < {needed} needed: {whose} + {margin} for listeners and the server's \
             own; accepts past it fail with EMFILE and wait until descriptors free up"
        ),
        format!(
            "raise the hard limit to {needed} or more (`ulimit -Hn {needed}` as root before \
             starting, `LimitNOFILE={needed}` in the systemd unit, `nofile` in \
             /etc/security/limits.conf){lower}"
        ),
    )
}

/// The bytes a Linux before 5.12 charges to RLIMIT_MEMLOCK for one ring (`ring_pages()`):
/// the CQ ring with the SQ index array, and the SQE array, each rounded up to a
/// power-of-two number of pages.
pub fn ring_bytes(sq_entries: u64, cq_entries: u64, page: u64) -> u64 {
    /// `struct io_rings` before its CQEs (heads, tails, masks, flags: cache-line aligned).
    const RINGS_HEADER: u64 = 320;
    let rings = (RINGS_HEADER + cq_entries * 16).div_ceil(64) * 64 + sq_entries * 4;
    let sqes = sq_entries * 64;
    let pages = |bytes: u64| bytes.div_ceil(page).next_power_of_two() * page;
    pages(rings) + pages(sqes)
}

fn memlock(config: &Config, facts: &Facts) -> Check {
    const NAME: &str = "memlock";
    let release = &facts.kernel_release;
    let version = kernel_version(release);
    if let Some(v) = version.filter(|v| *v >= RINGS_OFF_MEMLOCK) {
        return Check::ok(
            NAME,
            format!(
                "not charged: Linux {}.{} charges io_uring rings to the memory cgroup, not \
                 RLIMIT_MEMLOCK (5.12 and later)",
                v.0, v.1
            ),
        );
    }
    // Without io_uring, `--backend io_uring` does not start at all: the io_uring line says so.
    let rings_used = config.backend != Backend::Epoll && facts.io_uring.is_ok();
    if !rings_used {
        return Check::ok(NAME, "not used: the workers run epoll, no io_uring ring");
    }
    let per_ring = ring_bytes(SQ_ENTRIES, CQ_ENTRIES, facts.page_size);
    let needed = per_ring * config.workers as u64;
    let Some(v) = version else {
        return Check::warn(
            NAME,
            format!(
                "cannot tell the kernel version from `{release}`: before 5.12 the rings count \
                 against RLIMIT_MEMLOCK, {} KiB for {} workers",
                needed / 1024,
                config.workers
            ),
            format!(
                "make sure `ulimit -l` is at least {} (KiB)",
                needed.div_ceil(1024)
            ),
        );
    };
    if facts.ipc_lock {
        return Check::ok(
            NAME,
            format!(
                "not limited: Linux {}.{} charges rings to RLIMIT_MEMLOCK, but this process has \
                 CAP_IPC_LOCK",
                v.0, v.1
            ),
        );
    }
    let limit = match &facts.memlock {
        Ok(limit) => limit.soft,
        Err(e) => {
            return Check::warn(
                NAME,
                format!("cannot read RLIMIT_MEMLOCK: {e}"),
                "check `ulimit -l`",
            )
        }
    };
    let need = format!(
        "{} workers × {} KiB rings ({SQ_ENTRIES} SQ and {CQ_ENTRIES} CQ entries) = {} KiB, \
         charged to RLIMIT_MEMLOCK on Linux {}.{} (before 5.12)",
        config.workers,
        per_ring / 1024,
        needed / 1024,
        v.0,
        v.1
    );
    if limit >= needed {
        return Check::ok(
            NAME,
            format!("RLIMIT_MEMLOCK {} ≥ {need}", show_bytes(limit)),
        );
    }
    let kib = needed.div_ceil(1024);
    Check::fail(
        NAME,
        format!(
            "RLIMIT_MEMLOCK {} < {need}: the workers' rings fail with ENOMEM",
            show_bytes(limit)
        ),
        Some(format!(
            "raise it to {kib} KiB or more (`ulimit -l {kib}`, `LimitMEMLOCK={needed}` in the \
             systemd unit, `memlock` in /etc/security/limits.conf), run on Linux 5.12 or \
             later, or `--backend epoll`"
        )),
    )
}

fn somaxconn(config: &Config, facts: &Facts) -> Check {
    const NAME: &str = "somaxconn";
    const KEY: &str = "net.core.somaxconn";
    match &facts.somaxconn {
        Ok(Some(n)) if *n >= u64::from(config.backlog) => {
            Check::ok(NAME, format!("{KEY} = {n} ≥ --backlog {}", config.backlog))
        }
        Ok(Some(n)) => Check::warn(
            NAME,
            format!(
                "{KEY} = {n} < --backlog {}: the kernel silently caps each socket's backlog \
                 at {n}",
                config.backlog
            ),
            format!(
                "sysctl -w {KEY}={} (and in /etc/sysctl.d/ to keep it), or --backlog {n}",
                config.backlog
            ),
        ),
        Ok(None) => Check::warn(
            NAME,
            format!("{KEY} is missing from /proc/sys: the backlog cap is unknown"),
            "mount /proc/sys (a sandbox may hide it)",
        ),
        Err(e) => Check::warn(NAME, e.clone(), "make /proc/sys readable"),
    }
}

fn tcp_migrate_req(facts: &Facts) -> Check {
    const NAME: &str = "tcp_migrate_req";
    const KEY: &str = "net.ipv4.tcp_migrate_req";
    let safety_net = "ringcorn steers new connections away from a socket and drains it before \
                      closing it, so this is a safety net for handshakes still in flight then";
    match &facts.tcp_migrate_req {
        Ok(Some(0)) => Check::warn(
            NAME,
            format!(
                "{KEY} = 0: connections still queued on a worker's SO_REUSEPORT socket when it \
                 closes (resize, reload, recycle) are reset instead of moving to another \
                 worker's; {safety_net}"
            ),
            format!("sysctl -w {KEY}=1 (and in /etc/sysctl.d/ to keep it)"),
        ),
        Ok(Some(n)) => Check::ok(
            NAME,
            format!(
                "{KEY} = {n}: connections queued on a closing SO_REUSEPORT socket move to \
                 another worker's"
            ),
        ),
        Ok(None) => {
            let kernel = match kernel_version(&facts.kernel_release) {
                Some(v) if v < MIGRATE_REQ_SINCE => format!("Linux {}.{}", v.0, v.1),
                _ => format!("this kernel ({})", facts.kernel_release),
            };
            Check::warn(
                NAME,
                format!(
                    "{KEY} does not exist on {kernel}: it needs Linux 5.14 or later; \
                     connections queued on a closing SO_REUSEPORT socket are reset; \
                     {safety_net}"
                ),
                "a kernel 5.14 or later with `sysctl -w net.ipv4.tcp_migrate_req=1`",
            )
        }
        Err(e) => Check::warn(NAME, e.clone(), "make /proc/sys readable"),
    }
}

fn tcp_max_syn_backlog(config: &Config, facts: &Facts) -> Check {
    const NAME: &str = "tcp_max_syn_backlog";
    const KEY: &str = "net.ipv4.tcp_max_syn_backlog";
    match &facts.tcp_max_syn_backlog {
        Ok(Some(n)) if *n >= u64::from(config.backlog) => {
            Check::ok(NAME, format!("{KEY} = {n} ≥ --backlog {}", config.backlog))
        }
        Ok(Some(n)) => Check::warn(
            NAME,
            format!(
                "{KEY} = {n} < --backlog {}: past {n} half-open connections a socket answers \
                 new SYNs with SYN cookies, or drops them without",
                config.backlog
            ),
            format!(
                "sysctl -w {KEY}={} (and in /etc/sysctl.d/ to keep it)",
                config.backlog
            ),
        ),
        Ok(None) => Check::warn(
            NAME,
            format!("{KEY} is missing from /proc/sys"),
            "mount /proc/sys (a sandbox may hide it)",
        ),
        Err(e) => Check::warn(NAME, e.clone(), "make /proc/sys readable"),
    }
}

fn cpus(config: &Config, facts: &Facts) -> Check {
    const NAME: &str = "cpus";
    let available = &facts.available_cpus;
    if available.is_empty() {
        return Check::warn(
            NAME,
            "cannot read this process's CPU affinity mask (sched_getaffinity)",
            "check `taskset -p $$`",
        );
    }
    let shown_available = format!("available: {}", cpu_ranges(available));
    let missing: Vec<usize> = config
        .cpus
        .iter()
        .copied()
        .filter(|c| !available.contains(c))
        .collect();
    if !missing.is_empty() {
        let plural = if missing.len() == 1 { "is" } else { "are" };
        return Check::fail(
            NAME,
            format!(
                "--cpus {}: CPU {} {plural} not available to this process ({shown_available})",
                cpu_ranges(&config.cpus),
                cpu_ranges(&missing)
            ),
            Some(format!(
                "choose --cpus from {}, or give the process those CPUs (taskset, the cgroup's \
                 cpuset)",
                cpu_ranges(available)
            )),
        );
    }
    let mut used = if config.cpus.is_empty() {
        available.clone()
    } else {
        config.cpus.clone()
    };
    used.sort_unstable();
    used.dedup();
    let on = if config.cpus.is_empty() {
        format!(
            "the {} CPUs this process may use ({})",
            used.len(),
            cpu_ranges(&used)
        )
    } else {
        format!(
            "--cpus {} ({} CPUs; {shown_available})",
            cpu_ranges(&used),
            used.len()
        )
    };
    if config.workers > used.len() {
        return Check::warn(
            NAME,
            format!(
                "{} workers on {on}: {} workers share a CPU with another",
                config.workers,
                config.workers - used.len()
            ),
            format!(
                "--workers {} (or auto), or give the process more CPUs (taskset, the cgroup's \
                 cpuset)",
                used.len()
            ),
        );
    }
    Check::ok(
        NAME,
        format!(
            "{} workers, each on a CPU of its own, on {on}",
            config.workers
        ),
    )
}

/// `0-3,6` for [0, 1, 2, 3, 6] (sorted, duplicates dropped).
pub fn cpu_ranges(cpus: &[usize]) -> String {
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    crate::config::cpu_ranges(&sorted)
}

/// `(6, 1)` for `6.1.0-18-amd64`.
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split('.');
    let mut number = || -> Option<u32> {
        let digits: String = parts
            .next()?
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    Some((number()?, number()?))
}

/// Whether `/proc/self/status` text says the process holds capability `bit` (`CapEff`).
pub fn has_capability(status: &str, bit: u32) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << bit) != 0)
}

fn show_limit(n: u64) -> String {
    if n == u64::MAX {
        "unlimited".into()
    } else {
        n.to_string()
    }
}

fn show_bytes(n: u64) -> String {
    if n == u64::MAX {
        "unlimited".into()
    } else {
        format!("{} KiB", n / 1024)
    }
}

// ---------------------------------------------------------------------------
// Asking the host
// ---------------------------------------------------------------------------

/// Everything [`judge`] needs, from this host.
pub fn gather(tcp_addresses: usize) -> Facts {
    Facts {
        kernel_release: kernel_release(),
        io_uring: crate::worker::probe()
            .map(|mode| mode.to_string())
            .map_err(|u| NoRing {
                why: u.why,
                cause: u.cause.to_string(),
            }),
        nofile: rlimit(libc::RLIMIT_NOFILE),
        memlock: rlimit(libc::RLIMIT_MEMLOCK),
        ipc_lock: std::fs::read_to_string("/proc/self/status")
            .is_ok_and(|s| has_capability(&s, CAP_IPC_LOCK)),
        page_size: {
            // SAFETY: sysconf only reads a system value.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            u64::try_from(page).ok().filter(|&p| p > 0).unwrap_or(4096)
        },
        somaxconn: sysctl("/proc/sys/net/core/somaxconn"),
        tcp_migrate_req: sysctl("/proc/sys/net/ipv4/tcp_migrate_req"),
        tcp_max_syn_backlog: sysctl("/proc/sys/net/ipv4/tcp_max_syn_backlog"),
        available_cpus: available_cpus(),
        tcp_addresses,
    }
}

fn kernel_release() -> String {
    // SAFETY: uname fills a local utsname; its fields are NUL-terminated on success.
    unsafe {
        let mut name: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut name) != 0 {
            return String::from("unknown");
        }
        std::ffi::CStr::from_ptr(name.release.as_ptr())
            .to_string_lossy()
            .into_owned()
    }
}

/// getrlimit's resource type: glibc's enum, an int elsewhere.
#[cfg(target_env = "gnu")]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type Resource = libc::c_int;

fn rlimit(resource: Resource) -> Result<Limit, String> {
    // SAFETY: getrlimit writes a local rlimit struct.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(resource, &mut lim) != 0 {
            return Err(io::Error::last_os_error().to_string());
        }
        Ok(Limit {
            soft: lim.rlim_cur,
            hard: lim.rlim_max,
        })
    }
}

fn sysctl(path: &str) -> Sysctl {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("{path} holds `{}`, not a number", text.trim())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {path}: {e}")),
    }
}

/// One check per address the binds (and `--metrics`) stand for, and how many TCP addresses
/// the binds resolved to.
pub fn check_binds(config: &Config) -> (Vec<Check>, usize) {
    let mut checks = Vec::new();
    let mut tcp_addresses = 0;
    for bind in &config.binds {
        let (found, addresses) = check_bind("bind", bind, false);
        checks.extend(found);
        tcp_addresses += addresses;
    }
    if let Some(metrics) = &config.metrics {
        // The metrics listener is the first address a name resolves to.
        checks.extend(check_bind("metrics", metrics, true).0);
    }
    (checks, tcp_addresses)
}

fn check_bind(name: &'static str, bind: &Bind, first_only: bool) -> (Vec<Check>, usize) {
    match bind {
        Bind::Tcp { .. } => match bind.resolve() {
            Err(why) => (
                vec![Check::fail(
                    name,
                    format!("{bind}: {why}"),
                    Some(
                        "bind an address, or a name this host resolves (`getent hosts NAME`)"
                            .into(),
                    ),
                )],
                0,
            ),
            Ok(mut addrs) => {
                if first_only {
                    addrs.truncate(1);
                }
                let literal = bind.to_string();
                let checks = addrs
                    .iter()
                    .map(|&addr| {
                        let shown = if literal == addr.to_string() {
                            literal.clone()
                        } else {
                            format!("{literal} ({addr})")
                        };
                        check_tcp(name, &shown, addr)
                    })
                    .collect();
                (checks, addrs.len())
            }
        },
        Bind::Unix(path) => (vec![check_unix(name, path)], 0),
        Bind::Fd(fd) => (vec![check_fd(name, *fd)], 0),
    }
}

/// Bind a throwaway TCP socket to `addr` and close it again.
fn try_bind(addr: SocketAddr, reuse_port: bool) -> io::Result<()> {
    // The server's own socket set-up (IPv6-only, as the server binds `[::]` and `0.0.0.0`
    // apart).
    let socket = crate::master::new_tcp_socket(addr, true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.bind(&addr.into())
}

/// A TCP address is tried the way the server first probes it at start: bound without
/// SO_REUSEPORT, so that one another server holds, SO_REUSEPORT or not, is in use. When it
/// is, a second try with SO_REUSEPORT tells whether that holder is a reuseport group of
/// this user.
fn check_tcp(name: &'static str, shown: &str, addr: SocketAddr) -> Check {
    match try_bind(addr, false) {
        Ok(()) if addr.port() == 0 => Check::ok(
            name,
            format!(
                "{shown} can be bound (port 0: {} free port picked at start)",
                if name == "metrics" {
                    "a"
                } else {
                    "the workers share a"
                }
            ),
        ),
        Ok(()) => Check::ok(name, format!("{shown} is free and can be bound")),
        Err(e) => {
            let group = e.raw_os_error() == Some(libc::EADDRINUSE) && try_bind(addr, true).is_ok();
            bind_failure(name, shown, addr, &e, group)
        }
    }
}

/// What a failed `bind(2)` of `addr` means, and its fix. `reuseport_group`: a socket with
/// SO_REUSEPORT would have been let in (the holder is a reuseport group of this user).
pub fn bind_failure(
    name: &'static str,
    shown: &str,
    addr: SocketAddr,
    error: &io::Error,
    reuseport_group: bool,
) -> Check {
    let port = addr.port();
    match error.raw_os_error() {
        Some(libc::EADDRINUSE) => {
            let holder = if reuseport_group {
                "; its holder has SO_REUSEPORT and is this user (another ringcorn?), but \
                 ringcorn does not join another server's group"
            } else {
                ""
            };
            Check::fail(
                name,
                format!("{shown}: address in use ({error}){holder}"),
                Some(format!(
                    "stop what listens there (`ss -ltnp 'sport = :{port}'` names it), or bind \
                     another port"
                )),
            )
        }
        Some(libc::EACCES) if port < 1024 => Check::fail(
            name,
            format!("{shown}: {error}: ports below 1024 need root or CAP_NET_BIND_SERVICE"),
            Some(
                "start as root (with --user to serve unprivileged), grant the capability \
                 (systemd `AmbientCapabilities=CAP_NET_BIND_SERVICE`, or `setcap \
                 cap_net_bind_service=+ep` on the binary), or bind a port from 1024 up"
                    .into(),
            ),
        ),
        Some(libc::EADDRNOTAVAIL) => Check::fail(
            name,
            format!(
                "{shown}: {error}: no interface of this host has the address {}",
                addr.ip()
            ),
            Some("bind an address this host has (`ip -brief address`), or 0.0.0.0 / [::]".into()),
        ),
        Some(libc::EAFNOSUPPORT) => Check::fail(
            name,
            format!(
                "{shown}: {error}: this host has no {}",
                if addr.is_ipv6() { "IPv6" } else { "IPv4" }
            ),
            Some("bind an address of the other family".into()),
        ),
        _ => Check::fail(name, format!("{shown}: cannot bind: {error}"), None),
    }
}

/// `unix:PATH`: its directory exists and is writable, and nothing but a stale socket is at
/// the path (the server replaces a socket nobody answers on, and leaves anything else).
fn check_unix(name: &'static str, path: &Path) -> Check {
    let shown = format!("unix:{}", path.display());
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Check::fail(
            name,
            format!("{shown}: the directory {} does not exist", dir.display()),
            Some(format!(
                "create it (`mkdir -p {}`) or bind elsewhere",
                dir.display()
            )),
        );
    }
    if let Err(e) = writable(dir) {
        return Check::fail(
            name,
            format!(
                "{shown}: cannot create the socket in {}: {e}",
                dir.display()
            ),
            Some(format!(
                "make {} writable for this user (uid {}), or bind elsewhere",
                dir.display(),
                // SAFETY: getuid cannot fail.
                unsafe { libc::getuid() }
            )),
        );
    }
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Check::ok(
            name,
            format!(
                "{shown}: {} is writable; the socket will be created",
                dir.display()
            ),
        ),
        Err(e) => Check::fail(name, format!("{shown}: cannot look at the path: {e}"), None),
        Ok(m) if !m.file_type().is_socket() => Check::fail(
            name,
            format!("{shown}: the path exists and is not a socket (ringcorn leaves it alone)"),
            Some("remove it, or bind another path".into()),
        ),
        Ok(_) => match answered(path) {
            Ok(true) => Check::fail(
                name,
                format!("{shown}: address in use: another server answers on this socket"),
                Some("stop that server, or bind another path".into()),
            ),
            Ok(false) => Check::ok(
                name,
                format!("{shown}: a stale socket nobody answers on is there; it will be replaced"),
            ),
            Err(e) => Check::fail(
                name,
                format!("{shown}: a socket exists there and cannot be checked: {e}"),
                None,
            ),
        },
    }
}

/// `access(dir, W_OK | X_OK)`: may this process create a file in `dir`?
fn writable(dir: &Path) -> io::Result<()> {
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "the path contains NUL"))?;
    // SAFETY: access reads a NUL-terminated path that lives across the call.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Does a server answer on the Unix socket at `path`? (A refused connection: a stale file.)
fn answered(path: &Path) -> io::Result<bool> {
    let addr = SockAddr::unix(path)?;
    let client = Socket::new(Domain::UNIX, Type::STREAM.cloexec(), None)?;
    client.set_nonblocking(true)?;
    match client.connect(&addr) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(false),
        Err(e) => Err(e),
    }
}

/// `fd://N`: the descriptor is open, a stream socket (TCP, or Unix with a path), listening.
fn check_fd(name: &'static str, fd: RawFd) -> Check {
    let shown = format!("fd://{fd}");
    let pass = format!(
        "pass a listening socket as descriptor {fd} (or let systemd pass it: socket activation)"
    );
    // SAFETY: fcntl only queries the descriptor number; a closed one gives EBADF.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Check::fail(
            name,
            format!("{shown}: descriptor {fd} is not open in this process"),
            Some(pass),
        );
    }
    // SAFETY: the descriptor is open (checked above); it is only queried, never closed.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let socket = SockRef::from(&borrowed);
    let kind = match socket.r#type() {
        Ok(kind) => kind,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSOCK) => {
            return Check::fail(
                name,
                format!("{shown}: descriptor {fd} is open but not a socket"),
                Some(pass),
            )
        }
        Err(e) => return Check::fail(name, format!("{shown}: {e}"), Some(pass)),
    };
    if kind != Type::STREAM {
        return Check::fail(
            name,
            format!("{shown}: descriptor {fd} is a socket but not a stream socket"),
            Some(pass),
        );
    }
    match socket.is_listener() {
        Ok(true) => {}
        Ok(false) => {
            return Check::fail(
                name,
                format!(
                    "{shown}: descriptor {fd} is a stream socket but not listening \
                     (SO_ACCEPTCONN is 0)"
                ),
                Some("call listen() on it before passing it".into()),
            )
        }
        Err(e) => return Check::fail(name, format!("{shown}: SO_ACCEPTCONN: {e}"), Some(pass)),
    }
    let local = match socket.local_addr() {
        Ok(local) => local,
        Err(e) => return Check::fail(name, format!("{shown}: getsockname: {e}"), Some(pass)),
    };
    if let Some(addr) = local.as_socket() {
        let spread = if socket.reuse_port().unwrap_or(false) {
            "SO_REUSEPORT: a socket per worker is opened beside it"
        } else {
            "no SO_REUSEPORT: every worker shares it"
        };
        Check::ok(
            name,
            format!("{shown}: a TCP socket listening on {addr} ({spread})"),
        )
    } else if let Some(path) = local.as_pathname() {
        Check::ok(
            name,
            format!(
                "{shown}: a Unix socket listening at {} (shared by every worker)",
                path.display()
            ),
        )
    } else {
        Check::fail(
            name,
            format!("{shown}: not a TCP socket or a Unix socket with a path"),
            Some(pass),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host where everything is fine for the default configuration.
    fn good_host() -> Facts {
        Facts {
            kernel_release: "6.1.0-18-amd64".into(),
            io_uring: Ok("single_issuer+defer_taskrun".into()),
            nofile: Ok(Limit {
                soft: 1024,
                hard: 1 << 20,
            }),
            memlock: Ok(Limit {
                soft: 64 << 10,
                hard: 64 << 10,
            }),
            ipc_lock: false,
            page_size: 4096,
            somaxconn: Ok(Some(4096)),
            tcp_migrate_req: Ok(Some(1)),
            tcp_max_syn_backlog: Ok(Some(4096)),
            available_cpus: vec![0, 1, 2, 3],
            tcp_addresses: 1,
        }
    }

    fn config(workers: usize) -> Config {
        Config {
            workers,
            ..Config::default()
        }
    }

    fn find(checks: &[Check], name: &str) -> Check {
        checks
            .iter()
            .find(|c| c.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} check in {checks:?}"))
    }

    fn no_ring() -> NoRing {
        NoRing {
            why: "io_uring_setup is not permitted (EPERM)".into(),
            cause: "Operation not permitted (os error 1)".into(),
        }
    }

    #[test]
    fn a_good_host_is_all_ok() {
        let checks = judge(&config(4), &good_host());
        for c in &checks {
            assert_eq!(c.status, Status::Ok, "{c:?}");
            assert_eq!(c.fix, None, "{c:?}");
        }
        let names: Vec<&str> = checks.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "io_uring",
                "backend",
                "nofile",
                "memlock",
                "somaxconn",
                "tcp_migrate_req",
                "tcp_max_syn_backlog",
                "cpus"
            ]
        );
    }

    #[test]
    fn io_uring_missing_warns_under_auto_and_fails_when_asked_for() {
        let facts = Facts {
            io_uring: Err(no_ring()),
            ..good_host()
        };
        let mut c = config(2);
        let checks = judge(&c, &facts);
        let line = find(&checks, "io_uring");
        assert_eq!(line.status, Status::Warn);
        assert!(line.detail.contains("EPERM"), "{line:?}");
        let backend = find(&checks, "backend");
        assert_eq!(backend.status, Status::Ok);
        assert!(backend.detail.starts_with("epoll"), "{backend:?}");

        c.backend = Backend::IoUring;
        let checks = judge(&c, &facts);
        assert_eq!(find(&checks, "io_uring").status, Status::Fail);
        assert_eq!(find(&checks, "backend").status, Status::Fail);

        c.backend = Backend::Epoll;
        let checks = judge(&c, &facts);
        assert_eq!(find(&checks, "io_uring").status, Status::Ok);
        assert!(find(&checks, "backend")
            .detail
            .contains("auto would choose epoll"));
    }

    #[test]
    fn the_hard_descriptor_limit_is_compared_with_a_margin() {
        // 2 workers × 10000 + (2 listeners + 2 × 4 + 64) = 20074.
        let mut facts = good_host();
        facts.nofile = Ok(Limit {
            soft: 1024,
            hard: 20074,
        });
        let ok = nofile(&config(2), &facts);
        assert_eq!(ok.status, Status::Ok, "{ok:?}");
        assert!(ok.detail.contains("20074 needed"), "{ok:?}");
        facts.nofile = Ok(Limit {
            soft: 20073,
            hard: 20073,
        });
        let warn = nofile(&config(2), &facts);
        assert_eq!(warn.status, Status::Warn);
        let fix = warn.fix.expect("a fix");
        assert!(
            fix.contains("ulimit -Hn 20074") && fix.contains("LimitNOFILE=20074"),
            "{fix}"
        );
        assert!(fix.contains("--max-connections to 9999"), "{fix}");
        // A worker process holds only its own connections.
        let mut c = config(2);
        c.worker_class = WorkerClass::Process;
        assert_eq!(nofile(&c, &facts).status, Status::Ok);
    }

    #[test]
    fn memlock_matters_only_before_5_12_with_rings() {
        assert_eq!(ring_bytes(4096, 16384, 4096), 768 * 1024);
        let facts = Facts {
            kernel_release: "5.10.0-28-amd64".into(),
            ..good_host()
        };
        let fail = memlock(&config(2), &facts);
        assert_eq!(fail.status, Status::Fail, "{fail:?}");
        assert!(fail.detail.contains("1536 KiB"), "{fail:?}");
        assert!(fail
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("ulimit -l 1536")));
        let roomy = Facts {
            memlock: Ok(Limit {
                soft: 8 << 20,
                hard: 8 << 20,
            }),
            ..facts.clone()
        };
        assert_eq!(memlock(&config(2), &roomy).status, Status::Ok);
        let capable = Facts {
            ipc_lock: true,
            ..facts.clone()
        };
        assert!(memlock(&config(2), &capable)
            .detail
            .contains("CAP_IPC_LOCK"));
        let mut epoll = config(2);
        epoll.backend = Backend::Epoll;
        assert_eq!(memlock(&epoll, &facts).status, Status::Ok);
        let new = memlock(&config(2), &good_host());
        assert!(
            new.detail.contains("not charged") && new.detail.contains("6.1"),
            "{new:?}"
        );
    }

    #[test]
    fn sysctls_below_the_backlog_warn_with_the_command() {
        let mut facts = good_host();
        facts.somaxconn = Ok(Some(128));
        facts.tcp_max_syn_backlog = Ok(Some(1024));
        facts.tcp_migrate_req = Ok(Some(0));
        let c = config(1);
        let s = somaxconn(&c, &facts);
        assert_eq!(s.status, Status::Warn);
        assert!(
            s.detail.contains("caps") && s.detail.contains("128"),
            "{s:?}"
        );
        assert!(s
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("sysctl -w net.core.somaxconn=2048")));
        let t = tcp_max_syn_backlog(&c, &facts);
        assert_eq!(t.status, Status::Warn);
        assert!(t
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("tcp_max_syn_backlog=2048")));
        let m = tcp_migrate_req(&facts);
        assert_eq!(m.status, Status::Warn);
        assert!(m.detail.contains("safety net"), "{m:?}");
        assert!(m
            .fix
            .as_deref()
            .is_some_and(|f| f.contains("tcp_migrate_req=1")));
        let old = Facts {
            kernel_release: "5.10.0".into(),
            tcp_migrate_req: Ok(None),
            ..good_host()
        };
        let m = tcp_migrate_req(&old);
        assert_eq!(m.status, Status::Warn);
        assert!(
            m.detail.contains("Linux 5.10") && m.detail.contains("5.14"),
            "{m:?}"
        );
    }

    #[test]
    fn cpus_unavailable_fail_and_too_many_workers_warn() {
        let mut c = config(2);
        c.cpus = vec![1, 7];
        let f = cpus(&c, &good_host());
        assert_eq!(f.status, Status::Fail);
        assert!(
            f.detail.contains("CPU 7 is not available") && f.detail.contains("0-3"),
            "{f:?}"
        );
        let w = cpus(&config(6), &good_host());
        assert_eq!(w.status, Status::Warn);
        assert!(
            w.detail.contains("6 workers") && w.detail.contains("4 CPUs"),
            "{w:?}"
        );
        assert!(w.fix.as_deref().is_some_and(|f| f.contains("--workers 4")));
        let mut c = config(3);
        c.cpus = vec![2, 3];
        assert_eq!(cpus(&c, &good_host()).status, Status::Warn);
        assert_eq!(cpus(&config(4), &good_host()).status, Status::Ok);
    }

    #[test]
    fn bind_errors_say_what_bind_said_and_the_fix() {
        let addr: SocketAddr = "0.0.0.0:80".parse().expect("addr");
        let eacces = io::Error::from_raw_os_error(libc::EACCES);
        let c = bind_failure("bind", "0.0.0.0:80", addr, &eacces, false);
        assert_eq!(c.status, Status::Fail);
        assert!(c.detail.contains("CAP_NET_BIND_SERVICE"), "{c:?}");
        assert!(c.fix.as_deref().is_some_and(|f| f.contains("--user")));
        let inuse = io::Error::from_raw_os_error(libc::EADDRINUSE);
        let c = bind_failure("bind", "0.0.0.0:80", addr, &inuse, true);
        assert!(c.detail.contains("address in use") && c.detail.contains("SO_REUSEPORT"));
        assert!(c.fix.as_deref().is_some_and(|f| f.contains("sport = :80")));
    }

    #[test]
    fn parsing_helpers() {
        assert_eq!(kernel_version("6.18.44-fc-v857"), Some((6, 18)));
        assert_eq!(kernel_version("5.4.0-150-generic"), Some((5, 4)));
        assert_eq!(kernel_version("6.1-rc1"), Some((6, 1)));
        assert_eq!(kernel_version("garbage"), None);
        assert_eq!(cpu_ranges(&[3, 0, 1, 2, 6, 6]), "0-3,6");
        let status = "Name:\tx\nCapEff:\t0000000000004000\n";
        assert!(has_capability(status, CAP_IPC_LOCK));
        assert!(!has_capability(status, 10));
        assert!(!has_capability("", CAP_IPC_LOCK));
    }

    #[test]
    fn the_text_report_has_a_line_per_check_and_a_summary() {
        let checks = vec![
            Check::ok("a", "fine"),
            Check::warn("b", "meh", "do this"),
            Check::fail("c", "bad", None),
        ];
        let text = render_text(&checks);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("OK   a "), "{text}");
        assert!(lines[1].starts_with("WARN b ") && lines[1].ends_with("meh; fix: do this"));
        assert!(lines[2].starts_with("FAIL c "), "{text}");
        assert!(lines[3].contains("1 FAIL"), "{text}");
    }
}
