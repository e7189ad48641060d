//! ringcorn: a thread-per-core io_uring HTTP/1.1 server for handlers compiled into the binary,
//! run the way Gunicorn runs WSGI apps.
//!
//! ```no_run
//! use ringcorn::{Request, Response, WorkerInfo};
//!
//! fn main() {
//!     // One handler per worker thread; it may keep per-core state without locks.
//!     ringcorn::run(|_worker: WorkerInfo| {
//!         |req: &Request<'_>, res: &mut Response<'_>| {
//!             res.header("Content-Type", "text/plain").body(req.path());
//!         }
//!     })
//! }
//! ```
//!
//! Layout: [`config`] (command line, [`Config`]), `master` (the sockets it owns, workers as
//! threads or processes, supervision, reload, resize, upgrade, signals, metrics), `worker` (one
//! pinned I/O loop, io_uring or epoll), [`http`] (sans-IO HTTP/1.1), [`tls`] (sans-IO TLS
//! between the socket and HTTP, rustls), [`apps`] (built-in apps),
//! `run` (the command's life: configuration, signals, pidfile).

mod app;
pub mod apps;
mod check;
pub mod config;
pub mod http;
mod log;
mod master;
mod metrics;
mod run;
pub mod tls;
mod worker;
mod wsgi;

pub use app::{App, Apps, Handler, WorkerInfo};
pub use config::Config;
pub use http::{Request, Response, Scheme, TlsInfo};
pub use master::{BindError, Running, Server, StartError};
pub use run::{run, run_apps};
