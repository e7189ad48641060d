//! The WSGI bridge (cargo feature `wsgi`): `ringcorn module:callable` serves a Python WSGI app
//! (PEP 3333) with CPython embedded through PyO3.
//!
//! The app is imported once per worker process, after the fork ([`App::prepare`]): a module
//! that cannot be imported, or has no such callable, stops the server at startup with the
//! Python traceback. Requests run on the worker's handler threads (`--threads`, at least one:
//! the ring's thread never holds the GIL); each thread attaches to the interpreter for the
//! call. The environ is built per request ([`environ`]); the response is what `start_response`
//! and the iterable give ([`respond`]): a list or tuple is sent whole, any other iterable is
//! streamed through the handler thread's feed, one item a pull, and its `close()` is always
//! called; `wsgi.file_wrapper` over a real file is sent with sendfile. An exception is a 500,
//! with the traceback in the error log.

#[cfg(feature = "wsgi")]
mod app;
#[cfg(feature = "wsgi")]
mod environ;
#[cfg(feature = "wsgi")]
mod respond;

#[cfg(feature = "wsgi")]
pub(crate) use app::Wsgi;

/// `module:callable` (or `module`, meaning `module:application`), as Gunicorn takes it.
pub(crate) fn parse_target(app: &str) -> Option<(String, String)> {
    let (module, callable) = match app.split_once(':') {
        Some((m, c)) => (m, c),
        None => (app, "application"),
    };
    let identifier = |s: &str| {
        let mut chars = s.chars();
        chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
            && chars.all(|c| c.is_alphanumeric() || c == '_')
    };
    let dotted = |s: &str| !s.is_empty() && s.split('.').all(identifier);
    (dotted(module) && dotted(callable)).then(|| (module.to_string(), callable.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_as_gunicorn_takes_them() {
        let t = |s| parse_target(s);
        assert_eq!(
            t("app:application"),
            Some(("app".into(), "application".into()))
        );
        assert_eq!(
            t("myproject.wsgi"),
            Some(("myproject.wsgi".into(), "application".into()))
        );
        assert_eq!(
            t("pkg.mod:make.app"),
            Some(("pkg.mod".into(), "make.app".into()))
        );
        for bad in [
            "", ":app", "a:", "a b", "1x:app", "a..b", "a:b:c", "/path/to",
        ] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
    }
}
