//! A user's own app: a binary that calls `ringcorn::run` gets the whole `ringcorn` command line.
//!
//!     cargo run --release --example custom_app -- --workers 2 --bind 127.0.0.1:8000
//!     curl http://127.0.0.1:8000/hello/world
//!
//! Each worker builds its own handler, so the per-worker request counter below needs no lock.

use ringcorn::{Request, Response, WorkerInfo};

fn main() {
    ringcorn::run(|worker: WorkerInfo| {
        let mut served: u64 = 0;
        move |req: &Request<'_>, res: &mut Response<'_>| {
            served += 1;
            match req.path() {
                "/" => {
                    res.header("Content-Type", "text/plain").body(format!(
                        "worker {} has served {served} requests\n",
                        worker.index
                    ));
                }
                path if path.starts_with("/hello/") => {
                    let name = &path["/hello/".len()..];
                    res.header("Content-Type", "text/plain")
                        .body(format!("Hello, {name}!\n"));
                }
                _ => {
                    res.status(404).body("not found\n");
                }
            }
        }
    })
}
