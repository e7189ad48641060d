//! TLS termination with rustls, sans-IO like the HTTP core: [`settings`] loads and checks the
//! certificates and builds the one configuration all workers share; a [`Session`] sits between
//! a connection's socket bytes and its [`crate::http::Connection`], inside the worker; the
//! session ticket keys are derived alike in every worker (`tickets`).

mod session;
pub mod settings;
mod tickets;

pub use session::Session;
pub use settings::{CertReqs, Settings, Tls};
