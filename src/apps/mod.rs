//! Built-in apps, chosen by name on the command line like Gunicorn's `module:app`.

mod bytes;
mod conninfo;
mod echo;
mod files;
mod hello;
mod json;
mod sleep;

use crate::Apps;
pub use files::Files;

/// `hello` (the default), `json`, `echo`, `bytes`, `sleep`, `conninfo` and `static` (files
/// under `--root DIR`).
pub fn builtin() -> Apps {
    Apps::new()
        .with("hello", |_| hello::handle)
        .with("json", |_| json::handle)
        .with("echo", |_| echo::handle)
        .with("bytes", |_| bytes::handle)
        .with("sleep", |_| sleep::handle)
        .with("conninfo", |_| conninfo::handle)
        .with_config("static", |config| match &config.root {
            Some(root) => Files::new(root),
            None => Err("it serves the files under --root DIR: give the directory".into()),
        })
}
