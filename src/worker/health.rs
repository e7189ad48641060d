//! `--health-path`: a path the server answers itself, before the app: `200 ok` while the
//! worker serves, `503 draining` once it drains or once the master has announced a stop
//! (`--drain-delay`), so that a load balancer stops sending before the listeners close.

use crate::master::Pulse;
use crate::{Handler, Request, Response};

/// The app's handler behind the health check.
pub struct Health<H> {
    path: Option<Box<str>>,
    pulse: Option<Pulse>,
    draining: bool,
    inner: H,
}

impl<H: Handler> Health<H> {
    pub fn new(path: Option<&str>, pulse: Option<Pulse>, inner: H) -> Self {
        Health {
            path: path.map(Into::into),
            pulse,
            draining: false,
            inner,
        }
    }

    /// The worker drains: the health path answers 503 from now on.
    pub fn set_draining(&mut self) {
        self.draining = true;
    }

    fn answer(&self, res: &mut Response<'_>) {
        let unready = self.draining || self.pulse.as_ref().is_some_and(Pulse::stopping);
        res.header("Content-Type", "text/plain")
            .header("Cache-Control", "no-store");
        if unready {
            res.status(503).body("draining\n");
        } else {
            res.body("ok\n");
        }
    }
}

impl<H: Handler> Handler for Health<H> {
    fn call(&mut self, req: &Request<'_>, res: &mut Response<'_>) {
        if let Some(path) = &self.path {
            if req.path() == &**path {
                return self.answer(res);
            }
        }
        self.inner.call(req, res)
    }
}
