//! `bytes`: `GET /N` answers exactly N bytes (N ≤ 16 MiB), for response-size benchmarks.

use crate::{Request, Response};

/// Largest body the app will produce.
const MAX: usize = 16 * 1024 * 1024;

pub fn handle(req: &Request<'_>, res: &mut Response<'_>) {
    match req.path().strip_prefix('/').map(str::parse::<usize>) {
        Some(Ok(n)) if n <= MAX => {
            res.header("Content-Type", "application/octet-stream");
            let body = res.body_mut();
            body.resize(n, b'x');
        }
        _ => {
            res.status(404)
                .header("Content-Type", "text/plain")
                .body(format!("ask for GET /N with N at most {MAX}\n"));
        }
    }
}
