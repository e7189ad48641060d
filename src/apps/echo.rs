//! `echo`: answers any method with the request body, under the request's Content-Type.

use crate::{Request, Response};

pub fn handle(req: &Request<'_>, res: &mut Response<'_>) {
    let content_type = req
        .header("content-type")
        .unwrap_or(b"application/octet-stream");
    res.header("Content-Type", content_type).body(req.body());
}
