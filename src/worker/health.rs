//! `--health-path`: a path the server answers itself, before the app: `200 ok` while the
//! worker serves, `503 draining` once it drains or once the master has announced a stop
//! (`--drain-delay`), so that a load balancer stops sending before the listeners close.

use crate::http::Respond;
use crate::master::Pulse;
use crate::{Request, Response};

/// The app's handler (or, with `--threads`, the hand-over to its threads) behind the health
/// check, which the worker's own thread always answers.
pub struct Health<R> {
    path: Option<Box<str>>,
    pulse: Option<Pulse>,
    draining: bool,
    inner: R,
}

impl<R: Respond> Health<R> {
    pub fn new(path: Option<&str>, pulse: Option<Pulse>, inner: R) -> Self {
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

impl<R: Respond> Respond for Health<R> {
    #[inline]
    fn respond(&mut self, req: &Request<'_>, res: &mut Response<'_>) -> bool {
        if let Some(path) = &self.path {
            if req.path() == &**path {
                self.answer(res);
                return true;
            }
        }
        self.inner.respond(req, res)
    }
}
