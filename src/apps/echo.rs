//! `echo`: answers any method with the request body, under the request's Content-Type.
//!
//! A body larger than `--body-buffer-size` arrived in a temporary file: it is sent back from
//! that file by the kernel (sendfile), so echoing a gigabyte holds no more memory than a small
//! body does.

use crate::{Request, Response};

pub fn handle(req: &Request<'_>, res: &mut Response<'_>) {
    let content_type = req
        .header("content-type")
        .unwrap_or(b"application/octet-stream");
    res.header("Content-Type", content_type);
    let spooled = req
        .body_file()
        .map(|file| (file.try_clone(), req.body().len()));
    match spooled {
        Some((Ok(file), len)) => {
            res.file_range(file, 0, len as u64);
        }
        Some((Err(e), _)) => {
            tracing::error!("echo: cannot reopen the spooled body: {e}");
            res.status(500).body("cannot reopen the request body\n");
        }
        None => {
            res.body(req.body());
        }
    }
}
