//! The `ringcorn` command's life: parse the command line, start the server, then act on
//! signals (graceful shutdown; a second SIGINT exits at once) and supervise the workers.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use clap::{CommandFactory, Parser};

use crate::config::{available_cpus, Cli};
use crate::signals::{self, Signal};
use crate::{App, Apps, Server};

/// Exit code when a second SIGINT cuts a graceful shutdown short (128 + SIGINT).
const EXIT_INTERRUPTED: i32 = 130;

/// Serve one compiled-in app with the full `ringcorn` command line (`APP` is not accepted).
pub fn run<A: App>(app: A) -> ! {
    let cli = Cli::parse();
    if let Some(name) = &cli.app {
        Cli::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                format!("this program serves one compiled-in app; APP `{name}` is not accepted"),
            )
            .exit();
    }
    let name = std::env::args()
        .next()
        .and_then(|p| {
            std::path::Path::new(&p)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "app".into());
    std::process::exit(serve(&cli, &name, app))
}

/// Serve the app named by the command line's `APP` argument (default: the first registered).
pub fn run_apps(apps: Apps) -> ! {
    let cli = Cli::parse();
    let names: Vec<&str> = apps.names().collect();
    let name = cli
        .app
        .clone()
        .or_else(|| names.first().map(|n| n.to_string()));
    let chosen = name.as_deref().and_then(|n| apps.get(n));
    let (Some(name), Some(app)) = (name.clone(), chosen) else {
        Cli::command()
            .error(
                clap::error::ErrorKind::InvalidValue,
                format!(
                    "unknown app `{}`; available apps: {}",
                    name.unwrap_or_default(),
                    names.join(", ")
                ),
            )
            .exit();
    };
    std::process::exit(serve(&cli, &name, app))
}

/// Refuse `--cpus` naming a CPU this process may not run on (a usage error, exit 2), rather
/// than run a worker unpinned.
fn check_cpus(cli: &Cli) {
    let Some(list) = &cli.cpus else { return };
    let available = available_cpus();
    if let Some(cpu) = list.0.iter().find(|c| !available.contains(c)) {
        let available: Vec<String> = available.iter().map(usize::to_string).collect();
        Cli::command()
            .error(
                clap::error::ErrorKind::ValueValidation,
                format!(
                    "invalid value for '--cpus': CPU {cpu} is not available to this process \
                     (available: {})",
                    available.join(",")
                ),
            )
            .exit();
    }
}

/// Raise the soft limit on open descriptors to the hard limit (connections are descriptors),
/// and warn when the configured connections cannot all fit: accepts past the limit fail with
/// EMFILE and are retried after a pause, so the server degrades rather than spins.
fn raise_fd_limit(config: &crate::Config) {
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

/// Run until shut down; returns the exit code.
fn serve<A: App>(cli: &Cli, name: &str, app: A) -> i32 {
    check_cpus(cli);
    tracing_subscriber::fmt()
        .with_max_level(cli.log_level.filter())
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // Before any worker exists, so that they all inherit the mask.
    signals::block();
    let config = cli.config();
    tracing::info!("Starting ringcorn {}", env!("CARGO_PKG_VERSION"));
    raise_fd_limit(&config);
    let graceful = config.graceful_timeout;
    let mut running = match Server::start(config, app) {
        Ok(running) => running,
        Err(e) => {
            tracing::error!("{e}");
            return 1;
        }
    };
    tracing::info!("Using app: {name}");

    let signal = loop {
        if let Some(signal) = signals::wait(Duration::from_millis(200)) {
            break signal;
        }
        if let Err(e) = running.supervise() {
            tracing::error!("{e}; shutting down");
            running.stop();
            running.wait_until(Instant::now() + graceful);
            return 1;
        }
    };

    tracing::info!(
        "Shutting down: {} received; finishing requests under way (graceful timeout {}s)",
        signal.name(),
        graceful.as_secs()
    );
    running.stop();
    let deadline = Instant::now() + graceful;
    loop {
        if running.wait_until((Instant::now() + Duration::from_millis(50)).min(deadline)) {
            break;
        }
        if Instant::now() >= deadline {
            tracing::warn!("graceful timeout reached: closing the connections left");
            break;
        }
        if signals::wait(Duration::ZERO) == Some(Signal::Int) {
            tracing::warn!("second SIGINT: exiting at once");
            return EXIT_INTERRUPTED;
        }
    }
    tracing::info!("Shutdown complete");
    0
}
