//! The WSGI app as a ringcorn [`App`]: imported once per worker process, answered on the
//! worker's handler threads.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use pyo3::prelude::*;

use super::{environ, respond};
use crate::{App, Config, Handler, Request, Response, WorkerInfo};

/// A WSGI app to import in each worker.
pub(crate) struct Wsgi {
    module: String,
    callable: String,
    chdir: Option<PathBuf>,
    pythonpath: Vec<PathBuf>,
    root_path: String,
    multiprocess: bool,
    multithread: bool,
    /// The app's callable, once this process has imported it.
    loaded: Arc<OnceLock<Py<PyAny>>>,
}

impl Wsgi {
    pub(crate) fn new(module: String, callable: String, config: &Config) -> Wsgi {
        Wsgi {
            module,
            callable,
            chdir: config.chdir.clone(),
            pythonpath: config.pythonpath.clone(),
            root_path: config.root_path.trim_end_matches('/').to_string(),
            multiprocess: config.workers > 1
                || config.worker_class == crate::config::WorkerClass::Process,
            multithread: config.threads > 1,
            loaded: Arc::new(OnceLock::new()),
        }
    }

    /// Import the module and find the callable: the traceback of what failed, if it did.
    fn load(&self, py: Python<'_>) -> Result<Py<PyAny>, String> {
        let traceback = |e: PyErr| respond::traceback(py, &e);
        if let Some(dir) = &self.chdir {
            std::env::set_current_dir(dir)
                .map_err(|e| format!("--chdir {}: {e}", dir.display()))?;
        }
        let sys = py.import("sys").map_err(traceback)?;
        let path = sys.getattr("path").map_err(traceback)?;
        // The working directory first, as `gunicorn` puts it; then --pythonpath.
        let mut dirs: Vec<String> = self
            .pythonpath
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        dirs.insert(0, String::new());
        for dir in dirs.iter().rev() {
            path.call_method1("insert", (0, dir.as_str()))
                .map_err(traceback)?;
        }
        let module = py.import(self.module.as_str()).map_err(traceback)?;
        let mut target = module.into_any();
        for part in self.callable.split('.') {
            target = target.getattr(part).map_err(|_| {
                format!(
                    "module `{}` has no callable `{}`",
                    self.module, self.callable
                )
            })?;
        }
        if !target.is_callable() {
            return Err(format!(
                "`{}:{}` is not callable",
                self.module, self.callable
            ));
        }
        Ok(target.unbind())
    }
}

impl App for Wsgi {
    type Handler = WsgiHandler;

    fn min_threads(&self) -> usize {
        1
    }

    fn prepare(&self, _worker: WorkerInfo) -> Result<(), String> {
        if self.loaded.get().is_some() {
            return Ok(());
        }
        let loaded = Python::attach(|py| self.load(py)).map_err(|why| {
            format!(
                "cannot load the WSGI app `{}:{}`:\n{why}",
                self.module, self.callable
            )
        })?;
        let _ = self.loaded.set(loaded);
        Ok(())
    }

    fn handler(&self, _worker: WorkerInfo) -> WsgiHandler {
        let app = self
            .loaded
            .get()
            .map(|app| Python::attach(|py| app.clone_ref(py)));
        WsgiHandler {
            app,
            root_path: self.root_path.clone(),
            multiprocess: self.multiprocess,
            multithread: self.multithread,
        }
    }
}

/// One handler thread's end of the app.
pub(crate) struct WsgiHandler {
    /// `None` only if `prepare` was skipped, which the worker never does.
    app: Option<Py<PyAny>>,
    root_path: String,
    multiprocess: bool,
    multithread: bool,
}

impl Handler for WsgiHandler {
    fn call(&mut self, req: &Request<'_>, res: &mut Response<'_>) {
        let Some(app) = &self.app else {
            res.status(500).body("the WSGI app is not loaded\n");
            return;
        };
        let env = environ::Flags {
            root_path: &self.root_path,
            multiprocess: self.multiprocess,
            multithread: self.multithread,
        };
        Python::attach(|py| respond::call(py, app, req, &env, res));
    }
}
