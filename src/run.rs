//! The `ringcorn` command's life: parse the command line (with its `--config` file), start the
//! master, then act on signals until it stops: TERM/INT graceful stop, QUIT quick stop, HUP
//! reload, TTIN/TTOU resize, USR2 binary upgrade, USR1 reopen the logs; supervise the workers
//! in between, and keep systemd told (`master::notify`).

use std::ffi::OsString;
use std::time::{Duration, Instant};

use clap::CommandFactory;

use crate::app::DynApp;
use crate::config::{self, available_cpus, Cli, Config, WorkerClass};
use crate::master::notify::Notifier;
use crate::master::signals::{self, Signal};
use crate::master::{upgrade, Pidfile, Running, UpgradeState};
use crate::{App, Apps};

/// Exit code when a second SIGINT cuts a graceful shutdown short (128 + SIGINT).
const EXIT_INTERRUPTED: i32 = 130;
/// How often the master supervises when no signal comes.
const SUPERVISE_EVERY: Duration = Duration::from_millis(50);

/// The apps the command line can choose from.
enum Choice {
    /// A binary serving one compiled-in app (`APP` is not accepted).
    One(String, DynApp),
    /// The built-in apps, or a user's registry: `APP` picks one.
    Named(Apps),
}

impl Choice {
    /// The app the command line asks for, with its name.
    fn pick(&self, cli: &Cli) -> Result<(String, DynApp), String> {
        match self {
            Choice::One(name, app) => match &cli.app {
                Some(asked) => Err(format!(
                    "this program serves one compiled-in app; APP `{asked}` is not accepted"
                )),
                None => Ok((name.clone(), app.clone())),
            },
            Choice::Named(apps) => {
                let names: Vec<&str> = apps.names().collect();
                let name = cli
                    .app
                    .clone()
                    .or_else(|| names.first().map(|n| n.to_string()))
                    .unwrap_or_default();
                let config = cli.config();
                match apps
                    .get(&name, &config)
                    .or_else(|| wsgi_app(&name, &config))
                {
                    Some(app) => app.map(|app| (name.clone(), app)),
                    None => Err(format!(
                        "unknown app `{name}`; available apps: {}{}",
                        names.join(", "),
                        wsgi_hint(&name)
                    )),
                }
            }
        }
    }
}

/// `APP` names no compiled-in app but reads as `module:callable`: the WSGI app it names.
#[cfg(feature = "wsgi")]
fn wsgi_app(name: &str, config: &Config) -> Option<Result<DynApp, String>> {
    let (module, callable) = crate::wsgi::parse_target(name)?;
    Some(Ok(DynApp::new(crate::wsgi::Wsgi::new(
        module, callable, config,
    ))))
}

/// This build has no WSGI bridge.
#[cfg(not(feature = "wsgi"))]
fn wsgi_app(_name: &str, _config: &Config) -> Option<Result<DynApp, String>> {
    None
}

/// For an unknown `APP` that reads as `module:callable`: how to serve it as a WSGI app.
fn wsgi_hint(name: &str) -> &'static str {
    if cfg!(feature = "wsgi") || crate::wsgi::parse_target(name).is_none() {
        return "";
    }
    "; a WSGI app (module:callable) needs the WSGI bridge, which this build leaves out: \
     build with `cargo build --release --features wsgi` (Python 3.9+ with its headers: \
     Debian's python3-dev)"
}

/// Serve one compiled-in app with the full `ringcorn` command line (`APP` is not accepted).
pub fn run<A: App>(app: A) -> ! {
    let name = std::env::args()
        .next()
        .and_then(|p| {
            std::path::Path::new(&p)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "app".into());
    std::process::exit(main(Choice::One(name, DynApp::new(app))))
}

/// Serve the app named by the command line's `APP` argument (default: the first registered).
pub fn run_apps(apps: Apps) -> ! {
    std::process::exit(main(Choice::Named(apps)))
}

/// Everything a reload re-reads is derived from these arguments (and the file they name).
fn args() -> Vec<OsString> {
    std::env::args_os().collect()
}

/// Parse, check and build the configuration: the command line, the `RINGCORN_*` environment
/// and the `--config` file. Errors are one message (the caller decides how to exit).
fn load(choice: &Choice, args: &[OsString]) -> Result<(Cli, Config, String, DynApp), String> {
    // clap's message without its usage footer: the first line says what is wrong.
    let cli = config::load_cli(args.iter().cloned()).map_err(|e| {
        let text = e.to_string();
        let first = text
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default();
        first.trim_start_matches("error: ").to_string()
    })?;
    check_cpus(&cli)?;
    let (name, app) = choice.pick(&cli)?;
    let config = cli.config();
    Ok((cli, config, name, app))
}

/// The command line at startup: usage errors exit 2 (1 under `--check-config`); help and
/// version print and exit 0; `--print-config` prints the effective configuration.
fn main(choice: Choice) -> i32 {
    upgrade::remember_origin();
    let args = args();
    let checking = args.iter().any(|a| a == "--check-config");
    let cli = match config::load_cli(args.iter().cloned()) {
        Ok(cli) => cli,
        Err(e) if checking && e.use_stderr() => {
            let _ = e.print();
            return 1;
        }
        Err(e) => e.exit(),
    };
    let usage = |kind, msg: String| -> i32 {
        if checking {
            eprintln!("error: {msg}");
            return 1;
        }
        Cli::command().error(kind, msg).exit()
    };
    if cli.check {
        // Before the CPU and app checks below: `--check` reports them as FAIL lines.
        // The app is prepared too: a WSGI app is imported, so that one that cannot be
        // loaded fails the check with its traceback.
        let info = crate::WorkerInfo {
            index: 0,
            cpu: None,
        };
        let app = choice
            .pick(&cli)
            .and_then(|(name, app)| app.prepare(info).map(|()| name));
        return crate::check::run(&cli, app);
    }
    if let Err(msg) = check_cpus(&cli) {
        return usage(clap::error::ErrorKind::ValueValidation, msg);
    }
    let (name, app) = match choice.pick(&cli) {
        Ok(picked) => picked,
        Err(msg) => return usage(clap::error::ErrorKind::InvalidValue, msg),
    };
    if cli.print_config {
        print!("{}", config::print_config(&cli));
        return 0;
    }
    if cli.check_config {
        println!(
            "configuration OK: app `{name}`, {} worker(s)",
            cli.config().workers
        );
        return 0;
    }
    serve(&choice, &args, &cli, &name, app)
}

/// Refuse `--cpus` naming a CPU this process may not run on, rather than run a worker unpinned.
fn check_cpus(cli: &Cli) -> Result<(), String> {
    let Some(list) = &cli.cpus else {
        return Ok(());
    };
    let available = available_cpus();
    match list.0.iter().find(|c| !available.contains(c)) {
        None => Ok(()),
        Some(cpu) => {
            let available: Vec<String> = available.iter().map(usize::to_string).collect();
            Err(format!(
                "invalid value for '--cpus': CPU {cpu} is not available to this process \
                 (available: {})",
                available.join(",")
            ))
        }
    }
}

/// Raise the soft limit on open descriptors to the hard limit (connections are descriptors),
/// and warn when the configured connections cannot all fit: accepts past the limit fail with
/// EMFILE and are retried after a pause, so the server degrades rather than spins.
fn raise_fd_limit(config: &Config) {
    // SAFETY: getrlimit/setrlimit read and write a local rlimit struct.
    let limit = unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        lim.rlim_cur
    };
    let wanted = (config.workers * config.max_connections) as u64;
    if wanted > limit {
        tracing::warn!(
            "{} workers x --max-connections {} exceeds the open-file limit {limit}; \
             connections past it wait until descriptors free up (raise `ulimit -n`)",
            config.workers,
            config.max_connections
        );
    }
}

/// How the master's life ends.
enum End {
    /// TERM or INT (or the upgrade handed over): drain, then exit.
    Graceful(String),
    /// QUIT: at once.
    Quick,
    /// No worker could run.
    Failed(String),
}

/// Run until shut down; returns the exit code.
fn serve(choice: &Choice, args: &[OsString], cli: &Cli, name: &str, app: DynApp) -> i32 {
    let config = cli.config();
    if let Some(mask) = config.umask {
        // SAFETY: umask sets the process's file mode mask and cannot fail.
        unsafe { libc::umask(mask as libc::mode_t) };
    }
    if let Err(e) = crate::log::init(&cli.error_logfile, cli.log_level.filter()) {
        eprintln!("error: {e}");
        return 1;
    }
    if let Some(path) = &cli.access_logfile {
        if let Err(e) = crate::log::init_access(path) {
            tracing::error!("{e}");
            return 1;
        }
    }
    // Before any worker exists (and before any other thread): --env.
    for (key, value) in &config.env {
        std::env::set_var(key, value);
    }
    // Before any worker exists, so that they all inherit the mask.
    signals::block();
    let mut notifier = Notifier::from_env(upgrade::started_by_upgrade());
    tracing::info!("Starting ringcorn {}", env!("CARGO_PKG_VERSION"));
    if config.worker_class == WorkerClass::Process {
        tracing::info!("Worker class: process (one forked process per worker)");
    }
    raise_fd_limit(&config);
    let mut pidfile = None;
    // Written once the sockets are bound, before privileges are dropped.
    let write_first_pidfile = || match &cli.pidfile {
        None => Ok(()),
        Some(path) => Pidfile::write(path)
            .map(|p| pidfile = Some(p))
            .map_err(|e| format!("cannot write the pidfile {}: {e}", path.display())),
    };
    let mut master = match Running::start_with(config, app, write_first_pidfile) {
        Ok(master) => master,
        Err(e) => {
            tracing::error!("{e}");
            if let Some(p) = pidfile {
                p.remove();
            }
            return 1;
        }
    };
    tracing::info!("Using app: {name}");
    let running = master.config();
    tracing::info!("Workers: {} ({})", running.workers, running.workers_from);
    let mut handover = upgrade::notify_ready();
    if !notifier.is_held() {
        notifier.ready(&master.status());
    }

    let mut upgrading = None;
    let mut upgraded = false;
    let mut reloaded = false;
    let end = loop {
        let signal = master.wait(SUPERVISE_EVERY);
        match signal {
            Some(sig @ (Signal::Term | Signal::Int)) => {
                break End::Graceful(format!("{} received", sig.name()))
            }
            Some(Signal::Quit) => break End::Quick,
            Some(Signal::Hup) => {
                tracing::info!("SIGHUP: reloading the configuration");
                notifier.reloading();
                match load(choice, args).and_then(|(cli, config, name, app)| {
                    master.reload(config, app).map(|()| (cli, name))
                }) {
                    Err(e) => {
                        tracing::error!("reload refused, the old configuration stays: {e}");
                        notifier.ready(&format!("reload refused: {e}"));
                    }
                    Ok((cli, name)) => {
                        tracing::info!("Using app: {name}");
                        reloaded = true;
                        if cli.pidfile != pidfile.as_ref().map(|p| p.path().to_path_buf()) {
                            if let Some(old) = pidfile.take() {
                                old.remove();
                            }
                            pidfile = write_pidfile(cli.pidfile.as_deref());
                        }
                        switch_error_log(&cli.error_logfile);
                    }
                }
            }
            Some(Signal::Usr1) => {
                if let Err(e) = crate::log::reopen() {
                    tracing::error!("{e}");
                }
                master.reopen_logs();
                tracing::info!("SIGUSR1: log files reopened");
            }
            Some(Signal::Ttin) => master.grow(),
            Some(Signal::Ttou) => master.shrink(),
            Some(Signal::Usr2) if upgrading.is_some() => {
                tracing::warn!("SIGUSR2 ignored: an upgrade is already under way")
            }
            Some(Signal::Usr2) => match master.upgrade(pidfile.as_ref()) {
                Ok(u) => upgrading = Some(u),
                Err(e) => tracing::error!("upgrade failed, serving on: {e}"),
            },
            Some(Signal::Chld) | None => {}
        }
        if let Some(u) = &mut upgrading {
            match u.poll() {
                UpgradeState::Pending => {}
                UpgradeState::Ready(pid) => {
                    tracing::info!(
                        "the new master (pid {pid}) is serving; this one drains and exits"
                    );
                    notifier.hand_over(pid as u32);
                    master.hand_over();
                    upgraded = true;
                    if let Some(u) = upgrading.take() {
                        u.release();
                    }
                    break End::Graceful("the upgrade is complete".into());
                }
                UpgradeState::Failed(why) => {
                    tracing::error!("upgrade failed, serving on: {why}");
                    upgrading = None;
                }
            }
        }
        if let Some(h) = &mut handover {
            if h.taken_over() {
                handover = None;
                master.take_over();
                notifier.release();
            }
        }
        if let Err(e) = master.supervise() {
            break End::Failed(e);
        }
        if reloaded && master.settled() {
            reloaded = false;
            notifier.ready(&master.status());
        }
        let fresh = master.heartbeats_fresh(stale_after(&notifier, master.config()));
        notifier.tick(fresh, || master.status());
    };

    match &end {
        End::Quick => notifier.stopping("SIGQUIT received"),
        End::Failed(e) => notifier.stopping(e),
        End::Graceful(why) => notifier.stopping(why),
    }
    let code = match end {
        End::Quick => {
            tracing::info!("Shutting down at once: SIGQUIT received");
            master.kill();
            0
        }
        End::Failed(e) => {
            tracing::error!("{e}; shutting down");
            master.stop();
            master.wait_until(Instant::now() + master.config().graceful_timeout);
            1
        }
        End::Graceful(why) => {
            // After an upgrade the new master serves: no delay for load balancers.
            let delay = if upgraded {
                Duration::ZERO
            } else {
                master.config().drain_delay
            };
            match delay_stop(&mut master, delay) {
                Some(code) => code,
                None => drain(&mut master, &why),
            }
        }
    };
    if let Some(p) = pidfile {
        p.remove();
    }
    if code == 0 {
        tracing::info!("Shutdown complete");
    }
    code
}

/// `--drain-delay`: before the listeners close, serve on for `delay` with every health path
/// answering 503, so that load balancers stop sending first. QUIT, or a second SIGINT, cuts
/// it short; returns the exit code if the stop ends here.
fn delay_stop(master: &mut Running, delay: Duration) -> Option<i32> {
    if delay.is_zero() {
        return None;
    }
    master.announce_stop();
    tracing::info!(
        "Stop announced: the health path answers 503; serving on for {}s before closing the \
         listeners (--drain-delay)",
        delay.as_secs()
    );
    let until = Instant::now() + delay;
    while Instant::now() < until {
        match master.wait(SUPERVISE_EVERY.min(until.saturating_duration_since(Instant::now()))) {
            Some(Signal::Quit) => {
                tracing::info!("Shutting down at once: SIGQUIT received");
                master.kill();
                return Some(0);
            }
            Some(Signal::Int) => {
                tracing::warn!("second SIGINT: exiting at once");
                master.kill();
                return Some(EXIT_INTERRUPTED);
            }
            _ => {}
        }
        if let Err(e) = master.supervise() {
            tracing::error!("{e}");
            break;
        }
    }
    None
}

/// Graceful shutdown: finish the requests under way, up to the graceful timeout; a second
/// SIGINT exits at once.
fn drain(master: &mut Running, why: &str) -> i32 {
    let graceful = master.config().graceful_timeout;
    tracing::info!(
        "Shutting down: {why}; finishing requests under way (graceful timeout {}s)",
        graceful.as_secs()
    );
    master.stop();
    let deadline = Instant::now() + graceful;
    loop {
        if master.wait_until((Instant::now() + Duration::from_millis(50)).min(deadline)) {
            return 0;
        }
        if Instant::now() >= deadline {
            tracing::warn!("graceful timeout reached: closing the connections left");
            master.kill();
            return 0;
        }
        if master.wait(Duration::ZERO) == Some(Signal::Int) {
            tracing::warn!("second SIGINT: exiting at once");
            master.kill();
            return EXIT_INTERRUPTED;
        }
    }
}

/// The systemd watchdog pings only while every worker's loop has turned within this: the
/// heartbeat `--timeout` (a worker process is replaced after it; a stuck thread cannot be,
/// so systemd restarts the server), or, with the check off, half the watchdog interval.
fn stale_after(notifier: &Notifier, config: &Config) -> Duration {
    if !config.timeout.is_zero() {
        return config.timeout;
    }
    notifier
        .watchdog()
        .map_or(Duration::MAX, |w| (w / 2).max(Duration::from_secs(1)))
}

/// A reload that names another `--error-logfile` switches to it (if it can be opened).
fn switch_error_log(path: &std::path::Path) {
    let now = crate::log::current();
    let asked = (path.as_os_str() != "-").then(|| path.to_path_buf());
    if now != asked {
        if let Err(e) = crate::log::set(path) {
            tracing::error!("{e}; the old log stays");
        }
    }
}

fn write_pidfile(path: Option<&std::path::Path>) -> Option<Pidfile> {
    let path = path?;
    match Pidfile::write(path) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::error!("cannot write the pidfile {}: {e}", path.display());
            None
        }
    }
}
