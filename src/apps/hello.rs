//! `hello`: `Hello, World!` as text/plain, to any request (TechEmpower's plaintext test).

use crate::{Request, Response};

pub fn handle(_req: &Request<'_>, res: &mut Response<'_>) {
    res.header("Content-Type", "text/plain")
        .body(b"Hello, World!");
}
