//! Built-in apps, chosen by name on the command line like Gunicorn's `module:app`.

mod bytes;
mod echo;
mod hello;
mod json;

use crate::Apps;

/// `hello` (the default), `json`, `echo` and `bytes`.
pub fn builtin() -> Apps {
    Apps::new()
        .with("hello", |_| hello::handle)
        .with("json", |_| json::handle)
        .with("echo", |_| echo::handle)
        .with("bytes", |_| bytes::handle)
}
