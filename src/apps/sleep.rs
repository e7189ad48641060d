//! `sleep`: `GET /N` blocks its worker for N milliseconds (N ≤ 60000), then answers with the
//! worker's pid; any other path answers at once. A handler that blocks, on purpose: it shows
//! what `--timeout` does with a stuck worker, and what a blocking handler costs the other
//! connections of its worker.

use crate::{Request, Response};

/// Longest sleep the app will do.
const MAX_MS: u64 = 60_000;

pub fn handle(req: &Request<'_>, res: &mut Response<'_>) {
    let ms = req
        .path()
        .strip_prefix('/')
        .and_then(|p| p.parse::<u64>().ok());
    if let Some(ms) = ms {
        if ms > MAX_MS {
            res.status(404)
                .header("Content-Type", "text/plain")
                .body(format!("ask for GET /N with N at most {MAX_MS}\n"));
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    res.header("Content-Type", "text/plain")
        .body(format!("pid {}\n", std::process::id()));
}
