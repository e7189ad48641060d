//! Built-in apps, chosen by name on the command line like Gunicorn's `module:app`.

mod bytes;
mod conninfo;
mod echo;
mod hello;
mod json;
mod sleep;

use crate::Apps;

/// `hello` (the default), `json`, `echo`, `bytes`, `sleep` and `conninfo`.
pub fn builtin() -> Apps {
    Apps::new()
        .with("hello", |_| hello::handle)
        .with("json", |_| json::handle)
        .with("echo", |_| echo::handle)
        .with("bytes", |_| bytes::handle)
        .with("sleep", |_| sleep::handle)
        .with("conninfo", |_| conninfo::handle)
}
