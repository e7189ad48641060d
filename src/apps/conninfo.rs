//! `conninfo`: answers with what the request knows of its connection, one `key=value` per
//! line: `peer`, `local` (`-` over a Unix socket) and `scheme`.

use std::io::Write;

use crate::{Request, Response};

pub fn handle(req: &Request<'_>, res: &mut Response<'_>) {
    let show =
        |a: Option<std::net::SocketAddr>| a.map_or_else(|| "-".to_string(), |a| a.to_string());
    res.header("Content-Type", "text/plain");
    let body = res.body_mut();
    // Writing into a Vec cannot fail.
    let _ = write!(
        body,
        "peer={}\nlocal={}\nscheme={}\n",
        show(req.peer_addr()),
        show(req.local_addr()),
        req.scheme().as_str()
    );
}
