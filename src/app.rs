//! The application API: a [`Handler`] answers requests; an [`App`] builds one handler per
//! worker (so per-core state needs no locks); [`Apps`] names several apps for the command line.

use std::sync::Arc;

use crate::{Config, Request, Response};

/// Answers requests on one worker. Called on the worker's thread only, one request at a time,
/// so it may keep plain mutable state (`&mut self`), `Rc` and `RefCell` included.
///
/// A panic is caught: that request is answered with 500, its connection is closed, and the
/// handler goes on serving other connections.
pub trait Handler: 'static {
    fn call(&mut self, req: &Request<'_>, res: &mut Response<'_>);
}

impl<F> Handler for F
where
    F: FnMut(&Request<'_>, &mut Response<'_>) + 'static,
{
    fn call(&mut self, req: &Request<'_>, res: &mut Response<'_>) {
        self(req, res)
    }
}

impl Handler for Box<dyn Handler> {
    fn call(&mut self, req: &Request<'_>, res: &mut Response<'_>) {
        (**self).call(req, res)
    }
}

/// Which worker a handler is being built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerInfo {
    /// 0-based worker index.
    pub index: usize,
    /// The CPU the worker is pinned to, if pinning succeeded.
    pub cpu: Option<usize>,
}

/// Builds a handler for each worker, on that worker's thread (with `--threads`, one for each
/// of its handler threads, on that thread).
pub trait App: Send + Sync + 'static {
    type Handler: Handler;
    fn handler(&self, worker: WorkerInfo) -> Self::Handler;

    /// Called once per worker before any handler is built, on the worker's thread (in a process
    /// worker, after the fork). An error stops the worker before it accepts: at startup the
    /// server exits 1 with it.
    fn prepare(&self, _worker: WorkerInfo) -> Result<(), String> {
        Ok(())
    }

    /// Handler threads each worker needs at least, whatever `--threads` says (the WSGI bridge:
    /// one, so that the worker's loop never waits for the interpreter).
    fn min_threads(&self) -> usize {
        0
    }
}

impl<F, H> App for F
where
    F: Fn(WorkerInfo) -> H + Send + Sync + 'static,
    H: Handler,
{
    type Handler = H;
    fn handler(&self, worker: WorkerInfo) -> H {
        self(worker)
    }
}

/// An app whose handler type is erased, so apps of different types can be chosen at run time.
#[derive(Clone)]
pub(crate) struct DynApp(Arc<dyn ErasedApp>);

/// [`App`] without its handler type.
trait ErasedApp: Send + Sync {
    fn handler(&self, worker: WorkerInfo) -> Box<dyn Handler>;
    fn prepare(&self, worker: WorkerInfo) -> Result<(), String>;
    fn min_threads(&self) -> usize;
}

impl<A: App> ErasedApp for A {
    fn handler(&self, worker: WorkerInfo) -> Box<dyn Handler> {
        Box::new(App::handler(self, worker))
    }

    fn prepare(&self, worker: WorkerInfo) -> Result<(), String> {
        App::prepare(self, worker)
    }

    fn min_threads(&self) -> usize {
        App::min_threads(self)
    }
}

impl DynApp {
    pub(crate) fn new<A: App>(app: A) -> DynApp {
        DynApp(Arc::new(app))
    }
}

/// Builds an app from the configuration (its options, like the `static` app's `--root`).
type Configure = Arc<dyn Fn(&Config) -> Result<DynApp, String> + Send + Sync>;

/// A registered app: ready, or built from the configuration once it is known.
#[derive(Clone)]
enum Entry {
    Ready(DynApp),
    Configured(Configure),
}

/// Named apps; the command line's `APP` argument picks one (the first is the default).
#[derive(Clone, Default)]
pub struct Apps {
    entries: Vec<(String, Entry)>,
}

impl Apps {
    pub fn new() -> Self {
        Self::default()
    }

    /// Register `app` under `name` (names are unique: a later one replaces an earlier one).
    pub fn with<A: App>(self, name: &str, app: A) -> Self {
        self.insert(name, Entry::Ready(DynApp::new(app)))
    }

    /// Register an app built from the configuration when it is chosen (and again on each
    /// reload); an error (a missing or bad option) stops the server with that message.
    pub fn with_config<A, F>(self, name: &str, build: F) -> Self
    where
        A: App,
        F: Fn(&Config) -> Result<A, String> + Send + Sync + 'static,
    {
        let configure: Configure = Arc::new(move |config| build(config).map(DynApp::new));
        self.insert(name, Entry::Configured(configure))
    }

    fn insert(mut self, name: &str, entry: Entry) -> Self {
        match self.entries.iter_mut().find(|(n, _)| n == name) {
            Some(existing) => existing.1 = entry,
            None => self.entries.push((name.to_string(), entry)),
        }
        self
    }

    /// The registered names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(n, _)| n.as_str())
    }

    /// The app named `name`, built for `config` if it is built from it; `None` if no app
    /// has that name.
    pub(crate) fn get(&self, name: &str, config: &Config) -> Option<Result<DynApp, String>> {
        let (_, entry) = self.entries.iter().find(|(n, _)| n == name)?;
        Some(match entry {
            Entry::Ready(app) => Ok(app.clone()),
            Entry::Configured(configure) => {
                configure(config).map_err(|e| format!("app `{name}`: {e}"))
            }
        })
    }
}

impl std::fmt::Debug for Apps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

/// The chosen, type-erased app is itself an app.
impl App for DynApp {
    type Handler = Box<dyn Handler>;
    fn handler(&self, worker: WorkerInfo) -> Box<dyn Handler> {
        self.0.handler(worker)
    }

    fn prepare(&self, worker: WorkerInfo) -> Result<(), String> {
        self.0.prepare(worker)
    }

    fn min_threads(&self) -> usize {
        self.0.min_threads()
    }
}
