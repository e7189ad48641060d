//! `--config FILE`: options from a TOML file, under the command line and the `RINGCORN_*`
//! environment and over the defaults.
//!
//! clap stays the one source of truth for names, types and validation: a key is looked up
//! among [`Cli`]'s arguments by its long flag (`app` for the positional APP), each value is
//! turned into the argument the command line would carry and checked by parsing it alone,
//! and the file's arguments then go in front of the real command line, except for options
//! that the command line or the environment already set.

use std::any::TypeId;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::Path;

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, CommandFactory, Parser, ValueEnum};
use toml::Value;

use super::{Cli, CpuList, Workers};

/// Long flags that say which file to read and what to do with it: not settable from it.
const NOT_IN_FILE: [&str; 5] = ["config", "check-config", "print-config", "check", "format"];

/// Parse a command line (`args[0]` is the program name), applying the `--config` file (or
/// `RINGCORN_CONFIG`) under the command line and the `RINGCORN_*` environment: command line >
/// environment > file > defaults. Reads the file afresh on every call and has no other side
/// effect, so a reload can call it again with the original arguments.
///
/// Every error (the command line's own, an unreadable file, a TOML syntax error, an unknown
/// key, a wrong type, a value the option's parser refuses) is a usage error (exit code 2),
/// and those about the file name the file, and the key where there is one. `--help` and
/// `--version` come back as clap's display errors (exit code 0), before the file is read.
pub fn load_cli<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let matches = Cli::command().try_get_matches_from(&args)?;
    let Some(path) = matches.get_one::<std::path::PathBuf>("config") else {
        return Cli::try_parse_from(&args);
    };
    let table = read_table(path)?;
    let prog = args.first().cloned().unwrap_or_else(|| "ringcorn".into());

    let cmd = Cli::command();
    let mut options: Vec<OsString> = Vec::new();
    let mut positionals: Vec<OsString> = Vec::new();
    let mut seen: Vec<(&str, &str)> = Vec::new(); // (arg id, key as written)
    for (key, value) in &table {
        let arg = find_arg(&cmd, path, key)?;
        let id = arg.get_id().as_str();
        if let Some((_, first)) = seen.iter().find(|(seen_id, _)| *seen_id == id) {
            return Err(file_error(
                ErrorKind::ArgumentConflict,
                path,
                Some(key),
                &format!("the same option as `{first}`, which the file also sets"),
            ));
        }
        seen.push((id, key));
        let values = to_values(arg, value)
            .map_err(|reason| file_error(ErrorKind::InvalidValue, path, Some(key), &reason))?;
        let file_args = as_args(arg, &values);
        validate(&prog, &file_args)
            .map_err(|e| file_error(e.kind(), path, Some(key), &clap_reason(&e)))?;
        if matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        if arg.is_positional() {
            positionals.extend(values.into_iter().map(OsString::from));
        } else {
            options.extend(file_args);
        }
    }

    let mut combined = vec![prog];
    combined.extend(options);
    combined.extend(args.iter().skip(1).cloned());
    if !positionals.is_empty() {
        // After the command line's own `--`, if it has one, every word is positional already.
        if !args.iter().skip(1).any(|a| a == "--") {
            combined.push("--".into());
        }
        combined.extend(positionals);
    }
    Cli::try_parse_from(combined)
}

/// The effective configuration as TOML, valid input for `--config` that yields the same
/// [`Config`](super::Config): every option but `config`, `check-config` and `print-config`,
/// in [`Cli`]'s order, plus `app` when given; unset optional options are left out.
pub fn print_config(cli: &Cli) -> String {
    let mut out = String::new();
    let mut put = |key: &str, value: Value| {
        let _ = writeln!(out, "{key} = {value}");
    };
    if let Some(app) = &cli.app {
        put("app", Value::String(app.clone()));
    }
    put(
        "workers",
        match cli.workers {
            Workers::Auto => Value::String("auto".into()),
            Workers::Count(n) => int(n as u64),
        },
    );
    if let Some(cpus) = &cli.cpus {
        put("cpus", Value::String(cpu_list(cpus)));
    }
    put(
        "bind",
        Value::Array(
            cli.binds
                .iter()
                .map(|b| Value::String(b.to_string()))
                .collect(),
        ),
    );
    put("backlog", int(u64::from(cli.backlog)));
    put("keep-alive", int(cli.keep_alive));
    put("header-timeout", int(cli.header_timeout));
    put("graceful-timeout", int(cli.graceful_timeout));
    put("body-timeout", int(cli.body_timeout));
    put("send-timeout", int(cli.send_timeout));
    put("tcp-notsent-lowat", int(u64::from(cli.tcp_notsent_lowat)));
    put("max-connections", int(cli.max_connections));
    put("limit-request-line", int(cli.limit_request_line));
    put(
        "limit-request-field-size",
        int(cli.limit_request_field_size),
    );
    put("limit-request-fields", int(cli.limit_request_fields));
    put("limit-request-head", int(cli.limit_request_head));
    put("max-body-size", int(cli.max_body_size));
    put("body-buffer-size", int(cli.body_buffer_size));
    if let Some(dir) = &cli.body_temp_dir {
        put(
            "body-temp-dir",
            Value::String(dir.to_string_lossy().into_owned()),
        );
    }
    put("log-level", enum_name(cli.log_level));
    put("worker-class", enum_name(cli.worker_class));
    put("threads", int(u64::from(cli.threads)));
    put("backend", enum_name(cli.backend));
    put("timeout", int(cli.timeout));
    put("max-requests", int(cli.max_requests));
    put("max-requests-jitter", int(cli.max_requests_jitter));
    if let Some(pid) = &cli.pidfile {
        // TOML strings are UTF-8: a path that is not is written lossily.
        put("pid", Value::String(pid.to_string_lossy().into_owned()));
    }
    if let Some(user) = &cli.user {
        put("user", Value::String(user.clone()));
    }
    if let Some(group) = &cli.group {
        put("group", Value::String(group.clone()));
    }
    if let Some(mask) = cli.umask {
        put("umask", Value::String(format!("{:03o}", mask.0)));
    }
    if let Some(path) = &cli.health_path {
        put("health-path", Value::String(path.clone()));
    }
    if let Some(root) = &cli.root {
        put("root", Value::String(root.to_string_lossy().into_owned()));
    }
    if let Some(dir) = &cli.chdir {
        put("chdir", Value::String(dir.to_string_lossy().into_owned()));
    }
    if !cli.pythonpath.is_empty() {
        let dirs: Vec<String> = cli
            .pythonpath
            .iter()
            .map(|d| d.to_string_lossy().into_owned())
            .collect();
        put("pythonpath", Value::String(dirs.join(",")));
    }
    if !cli.root_path.is_empty() {
        put("root-path", Value::String(cli.root_path.clone()));
    }
    if !cli.env.is_empty() {
        put(
            "env",
            Value::Array(
                cli.env
                    .iter()
                    .map(|(k, v)| Value::String(format!("{k}={v}")))
                    .collect(),
            ),
        );
    }
    put("drain-delay", int(cli.drain_delay));
    if let Some(path) = &cli.access_logfile {
        put(
            "access-logfile",
            Value::String(path.to_string_lossy().into_owned()),
        );
    }
    put(
        "access-logformat",
        Value::String(cli.access_logformat.clone()),
    );
    put("proxy-protocol", enum_name(cli.proxy_protocol));
    put(
        "proxy-allow-from",
        Value::String(cli.proxy_allow_from.clone()),
    );
    if let Some(ips) = &cli.forwarded_allow_ips {
        put("forwarded-allow-ips", Value::String(ips.clone()));
    }
    if let Some(metrics) = &cli.metrics {
        put("metrics", Value::String(metrics.to_string()));
    }
    let paths = |v: &[std::path::PathBuf]| {
        Value::Array(
            v.iter()
                .map(|p| Value::String(p.to_string_lossy().into_owned()))
                .collect(),
        )
    };
    if !cli.certfile.is_empty() {
        put("certfile", paths(&cli.certfile));
    }
    if !cli.keyfile.is_empty() {
        put("keyfile", paths(&cli.keyfile));
    }
    if let Some(ca) = &cli.ca_certs {
        put("ca-certs", Value::String(ca.to_string_lossy().into_owned()));
    }
    put("cert-reqs", enum_name(cli.cert_reqs));
    if !cli.tls_binds.is_empty() {
        put(
            "tls-bind",
            Value::Array(
                cli.tls_binds
                    .iter()
                    .map(|b| Value::String(b.to_string()))
                    .collect(),
            ),
        );
    }
    put(
        "error-logfile",
        Value::String(cli.error_logfile.to_string_lossy().into_owned()),
    );
    out
}

/// A TOML integer; past TOML's range (i64), the digits as a string, which the loader takes
/// for an integer option (and only such a string).
fn int(n: u64) -> Value {
    match i64::try_from(n) {
        Ok(i) => Value::Integer(i),
        Err(_) => Value::String(n.to_string()),
    }
}

fn enum_name<E: ValueEnum>(value: E) -> Value {
    let name = value
        .to_possible_value()
        .map(|p| p.get_name().to_owned())
        .unwrap_or_default();
    Value::String(name)
}

/// `0,2-3` for [0, 2, 3]: consecutive runs as ranges, order kept.
fn cpu_list(cpus: &CpuList) -> String {
    super::cpu_ranges(&cpus.0)
}

fn read_table(path: &Path) -> Result<toml::Table, clap::Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Cli::command().error(
            ErrorKind::Io,
            format!("cannot read config file {}: {e}", path.display()),
        )
    })?;
    text.parse::<toml::Table>().map_err(|e| {
        // toml's message starts "TOML parse error at line L, column C" and shows the line.
        file_error(
            ErrorKind::InvalidValue,
            path,
            None,
            e.to_string().trim_end(),
        )
    })
}

/// The argument a key names: its long flag with `-` or `_`, or `app` for the positional.
fn find_arg<'c>(cmd: &'c clap::Command, path: &Path, key: &str) -> Result<&'c Arg, clap::Error> {
    let name = key.replace('_', "-");
    if NOT_IN_FILE.contains(&name.as_str()) {
        return Err(file_error(
            ErrorKind::ArgumentConflict,
            path,
            Some(key),
            "not allowed in a config file (it is a command-line option only)",
        ));
    }
    let settable = |arg: &&Arg| {
        matches!(
            arg.get_action(),
            ArgAction::Set | ArgAction::Append | ArgAction::SetTrue
        )
    };
    let found = cmd.get_arguments().filter(settable).find(|arg| {
        if arg.is_positional() {
            arg.get_id().as_str().replace('_', "-") == name
        } else {
            arg.get_long() == Some(name.as_str())
        }
    });
    found.ok_or_else(|| {
        let hint = suggest(cmd, &name)
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        file_error(
            ErrorKind::UnknownArgument,
            path,
            Some(key),
            &format!("unknown key{hint}"),
        )
    })
}

/// The key closest to an unknown one: an option's own id (`binds` for `bind`), or a long
/// flag within two edits.
fn suggest(cmd: &clap::Command, name: &str) -> Option<String> {
    let keys = cmd.get_arguments().filter_map(|arg| {
        let key = match arg.get_long() {
            Some(long) => long.to_owned(),
            None => arg.get_id().as_str().replace('_', "-"),
        };
        (!NOT_IN_FILE.contains(&key.as_str())).then_some((arg, key))
    });
    let mut best: Option<(usize, String)> = None;
    for (arg, key) in keys {
        let distance = if arg.get_id().as_str().replace('_', "-") == name {
            0
        } else {
            edit_distance(&key, name)
        };
        if distance <= 2 && best.as_ref().is_none_or(|(d, _)| distance < *d) {
            best = Some((distance, key));
        }
    }
    best.map(|(_, key)| key)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diagonal + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// The command-line words a file value stands for: none for `false`, one `true` for `true`
/// (a flag), one per value otherwise. Refuses a TOML type the option cannot take.
fn to_values(arg: &Arg, value: &Value) -> Result<Vec<String>, String> {
    match arg.get_action() {
        ArgAction::SetTrue => match value {
            Value::Boolean(true) => Ok(vec!["true".into()]),
            Value::Boolean(false) => Ok(Vec::new()),
            other => Err(format!(
                "expected a boolean (true or false), found {}",
                describe(other)
            )),
        },
        ArgAction::Append => match value {
            Value::Array(items) if items.is_empty() => {
                Err("expected at least one value, found an empty array".into())
            }
            Value::Array(items) => items
                .iter()
                .map(|item| scalar(arg, item).map_err(|e| format!("{e} in the array")))
                .collect(),
            other => Ok(vec![scalar(arg, other)?]),
        },
        _ => match value {
            Value::Array(_) => Err(format!(
                "expected a single value ({}), found an array",
                wanted(arg)
            )),
            other => Ok(vec![scalar(arg, other)?]),
        },
    }
}

/// One value as the command line would spell it.
fn scalar(arg: &Arg, value: &Value) -> Result<String, String> {
    let kind = value_kind(arg);
    match value {
        Value::Integer(i) => Ok(i.to_string()),
        Value::String(s) if kind != Kind::Integer => Ok(s.clone()),
        // What `print_config` writes for an integer past TOML's range.
        Value::String(s)
            if !s.is_empty()
                && s.bytes().all(|b| b.is_ascii_digit())
                && s.parse::<i64>().is_err() =>
        {
            Ok(s.clone())
        }
        Value::Float(f) if kind == Kind::Float => Ok(f.to_string()),
        other => Err(format!(
            "expected {}, found {}",
            wanted(arg),
            describe(other)
        )),
    }
}

#[derive(PartialEq, Eq)]
enum Kind {
    Integer,
    Float,
    Other,
}

/// What the option's clap value parser produces, as far as the TOML type goes.
fn value_kind(arg: &Arg) -> Kind {
    let produced = arg.get_value_parser().type_id();
    let integers = [
        TypeId::of::<u8>(),
        TypeId::of::<u16>(),
        TypeId::of::<u32>(),
        TypeId::of::<u64>(),
        TypeId::of::<u128>(),
        TypeId::of::<usize>(),
        TypeId::of::<i8>(),
        TypeId::of::<i16>(),
        TypeId::of::<i32>(),
        TypeId::of::<i64>(),
        TypeId::of::<i128>(),
        TypeId::of::<isize>(),
    ];
    if integers.iter().any(|t| produced == *t) {
        Kind::Integer
    } else if produced == TypeId::of::<f32>() || produced == TypeId::of::<f64>() {
        Kind::Float
    } else {
        Kind::Other
    }
}

fn wanted(arg: &Arg) -> &'static str {
    match value_kind(arg) {
        Kind::Integer => "an integer",
        Kind::Float => "a number",
        Kind::Other => "a string or an integer",
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("the string {}", Value::String(s.clone())),
        Value::Integer(i) => format!("the integer {i}"),
        Value::Float(f) => format!("the float {f}"),
        Value::Boolean(b) => format!("the boolean {b}"),
        Value::Datetime(d) => format!("the datetime {d}"),
        Value::Array(_) => "an array".into(),
        Value::Table(_) => "a table".into(),
    }
}

/// The command-line arguments for an option's values (`--long=value`, so that a value
/// starting with `-` stays a value), or `-- value` for the positional.
fn as_args(arg: &Arg, values: &[String]) -> Vec<OsString> {
    let words: Vec<String> = match (arg.get_long(), arg.get_action()) {
        (Some(long), ArgAction::SetTrue) => values.iter().map(|_| format!("--{long}")).collect(),
        (Some(long), _) => values.iter().map(|v| format!("--{long}={v}")).collect(),
        (None, _) => std::iter::once("--".to_owned())
            .chain(values.iter().cloned())
            .collect(),
    };
    words.into_iter().map(OsString::from).collect()
}

/// One option's arguments parsed alone, so a refusal is that key's.
fn validate(prog: &OsString, file_args: &[OsString]) -> Result<(), clap::Error> {
    let argv = std::iter::once(prog.clone()).chain(file_args.iter().cloned());
    Cli::command().try_get_matches_from(argv).map(|_| ())
}

/// clap's own message for a refused value, without its `error: ` and the usage after it.
fn clap_reason(e: &clap::Error) -> String {
    let text = e.to_string();
    let first: Vec<&str> = text.lines().take_while(|l| !l.trim().is_empty()).collect();
    let joined = first.join(" ");
    joined
        .strip_prefix("error: ")
        .unwrap_or(&joined)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn file_error(kind: ErrorKind, path: &Path, key: Option<&str>, reason: &str) -> clap::Error {
    let msg = match key {
        Some(key) => format!("config file {}: key `{key}`: {reason}", path.display()),
        None => format!("config file {}: {reason}", path.display()),
    };
    Cli::command().error(kind, msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A config file under the temp directory, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(contents: &str) -> TempFile {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::SeqCst);
            let path = std::env::temp_dir().join(format!(
                "ringcorn-unit-config-{}-{n}.toml",
                std::process::id()
            ));
            std::fs::write(&path, contents).expect("write temp config");
            TempFile(path)
        }

        fn path(&self) -> &str {
            self.0.to_str().expect("temp path is UTF-8")
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn load(args: &[&str]) -> Result<Cli, clap::Error> {
        load_cli(std::iter::once("ringcorn").chain(args.iter().copied()))
    }

    /// Loads `contents` with `-c FILE` plus `args`.
    fn load_file(contents: &str, args: &[&str]) -> Result<Cli, clap::Error> {
        let file = TempFile::new(contents);
        let mut all = vec!["-c", file.path()];
        all.extend_from_slice(args);
        load(&all)
    }

    /// The error for `contents`, which must name the file and `key`; returns the message.
    #[track_caller]
    fn file_err(contents: &str, key: &str) -> String {
        let file = TempFile::new(contents);
        let err = load(&["-c", file.path()]).expect_err(contents);
        assert_eq!(err.exit_code(), 2, "{contents}: {err}");
        let msg = err.to_string();
        assert!(msg.contains(file.path()), "names the file: {msg}");
        assert!(
            msg.contains(&format!("key `{key}`")),
            "names `{key}`: {msg}"
        );
        msg
    }

    #[test]
    fn file_sets_every_kind_of_value() {
        let cli = load_file(
            r#"
            app = "echo"
            workers = 3
            cpus = "0-1"
            bind = ["127.0.0.1:0", "[::1]:0"]
            keep-alive = 5
            log-level = "debug"
            worker-class = "process"
            pid = "/tmp/x.pid"
            "#,
            &[],
        )
        .expect("loads");
        assert_eq!(cli.app.as_deref(), Some("echo"));
        assert_eq!(cli.workers, Workers::Count(3));
        assert_eq!(cli.cpus, Some(CpuList(vec![0, 1])));
        assert_eq!(cli.binds.len(), 2);
        assert_eq!(cli.keep_alive, 5);
        assert_eq!(cli.log_level, super::super::LogLevel::Debug);
        assert_eq!(cli.worker_class, super::super::WorkerClass::Process);
        assert_eq!(cli.pidfile, Some(PathBuf::from("/tmp/x.pid")));
        // Untouched options keep their defaults.
        assert_eq!(cli.backlog, 2048);
        assert_eq!(cli.max_requests, 0);
    }

    #[test]
    fn dash_and_underscore_keys_are_the_same_option() {
        for key in ["max-requests", "max_requests"] {
            let cli = load_file(&format!("{key} = 7"), &[]).expect(key);
            assert_eq!(cli.max_requests, 7, "{key}");
        }
        let cli = load_file("limit_request_field_size = 100\nkeep_alive = 3", &[]).expect("loads");
        assert_eq!((cli.limit_request_field_size, cli.keep_alive), (100, 3));
        let msg = file_err("max-requests = 1\nmax_requests = 2", "max_requests");
        assert!(msg.contains("max-requests"), "{msg}");
    }

    #[test]
    fn workers_as_integer_or_auto_and_a_single_bind() {
        let cli = load_file(r#"workers = "auto""#, &[]).expect("auto");
        assert_eq!(cli.workers, Workers::Auto);
        let cli = load_file(r#"bind = "127.0.0.1:9""#, &[]).expect("one bind");
        assert_eq!(cli.binds, vec!["127.0.0.1:9".parse().expect("addr")]);
    }

    #[test]
    fn flags_take_booleans() {
        // The mapping, on a flag's own Arg: `true` is the bare flag, `false` is nothing.
        let cmd = Cli::command();
        let flag = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some("print-config"))
            .expect("a flag");
        let words = to_values(flag, &Value::Boolean(true)).expect("true");
        assert_eq!(
            as_args(flag, &words),
            vec![OsString::from("--print-config")]
        );
        assert!(to_values(flag, &Value::Boolean(false))
            .expect("false")
            .is_empty());
        let reason = to_values(flag, &Value::Integer(1)).expect_err("integer");
        assert!(reason.contains("expected a boolean"), "{reason}");
        // Every flag a file may set takes `true` and `false`.
        let settable: Vec<&str> = cmd
            .get_arguments()
            .filter(|a| matches!(a.get_action(), ArgAction::SetTrue))
            .filter_map(|a| a.get_long())
            .filter(|l| !NOT_IN_FILE.contains(l))
            .collect();
        for flag in settable {
            load_file(&format!("{flag} = true"), &[]).expect(flag);
            load_file(&format!("{flag} = false"), &[]).expect(flag);
            let msg = file_err(&format!("{flag} = 1"), flag);
            assert!(msg.contains("expected a boolean"), "{msg}");
        }
        let msg = file_err("check-config = true", "check-config");
        assert!(msg.contains("not allowed"), "{msg}");
    }

    #[test]
    fn command_line_beats_file_and_file_beats_defaults() {
        let text = "workers = 3\nkeep-alive = 5\nbind = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\napp = \"json\"";
        let cli = load_file(text, &["--workers", "2", "-b", "127.0.0.1:3", "echo"]).expect("loads");
        assert_eq!(cli.workers, Workers::Count(2));
        assert_eq!(cli.binds, vec!["127.0.0.1:3".parse().expect("addr")]);
        assert_eq!(cli.app.as_deref(), Some("echo"));
        assert_eq!(cli.keep_alive, 5, "the file beats the default");
        let cli = load_file(text, &["--"]).expect("a bare `--` on the command line");
        assert_eq!(cli.app.as_deref(), Some("json"));
        // `--config=FILE` and options after it work the same.
        let file = TempFile::new(text);
        let cli = load(&[&format!("--config={}", file.path()), "-w", "4"]).expect("loads");
        assert_eq!((cli.workers, cli.keep_alive), (Workers::Count(4), 5));
    }

    /// The environment layer, in a child process (the variables would leak into the other
    /// tests of this process): `RINGCORN_CHILD_ENV_LAYER` makes the test below do its work.
    #[test]
    fn environment_sits_between_command_line_and_file() {
        let file = TempFile::new("keep-alive = 5\nworkers = 3\nbacklog = 9\nmax-requests = 4");
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "config::file::tests::environment_layer_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("RINGCORN_CHILD_ENV_LAYER", file.path())
            .env("RINGCORN_CONFIG", file.path())
            .env("RINGCORN_KEEP_ALIVE", "6")
            .env("RINGCORN_WORKERS", "7")
            .output()
            .expect("run the child test");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "{text}");
        assert!(text.contains("environment layer checked"), "{text}");
    }

    #[test]
    fn environment_layer_child() {
        let Ok(path) = std::env::var("RINGCORN_CHILD_ENV_LAYER") else {
            return;
        };
        // RINGCORN_CONFIG names the file; the environment beats it, the command line beats
        // both.
        let cli = load(&["--workers", "2"]).expect("loads");
        assert_eq!(cli.workers, Workers::Count(2), "command line > environment");
        assert_eq!(cli.keep_alive, 6, "environment > file");
        assert_eq!(cli.backlog, 9, "file > default");
        assert_eq!(cli.max_requests, 4);
        assert_eq!(cli.config, Some(PathBuf::from(&path)));
        // -c on the command line beats RINGCORN_CONFIG.
        let other = TempFile::new("backlog = 11");
        let cli = load(&["-c", other.path()]).expect("loads");
        assert_eq!((cli.backlog, cli.keep_alive), (11, 6));
        println!("environment layer checked");
    }

    #[test]
    fn unknown_keys_are_refused_with_a_hint() {
        let msg = file_err("wrkers = 2", "wrkers");
        assert!(
            msg.contains("unknown key") && msg.contains("`workers`"),
            "{msg}"
        );
        let msg = file_err("binds = [\"127.0.0.1:0\"]", "binds");
        assert!(msg.contains("did you mean `bind`"), "{msg}");
        let msg = file_err("pidfile = \"x\"", "pidfile");
        assert!(msg.contains("did you mean `pid`"), "{msg}");
        for key in ["help", "version", "Workers", "zzz"] {
            let msg = file_err(&format!("{key} = true"), key);
            assert!(msg.contains("unknown key"), "{msg}");
        }
        for key in ["config", "check-config", "print-config", "print_config"] {
            let msg = file_err(&format!("{key} = true"), key);
            assert!(msg.contains("not allowed in a config file"), "{msg}");
        }
        let file = TempFile::new("x = 1");
        let err = load(&["-c", file.path()]).expect_err("unknown");
        assert_eq!(err.kind(), ErrorKind::UnknownArgument);
    }

    #[test]
    fn wrong_types_are_refused_with_the_reason() {
        for (text, key, reason) in [
            ("workers = [1, 2]", "workers", "found an array"),
            (
                "keep-alive = \"75\"",
                "keep-alive",
                "expected an integer, found the string \"75\"",
            ),
            ("keep-alive = 1.5", "keep-alive", "found the float 1.5"),
            ("keep-alive = true", "keep-alive", "found the boolean true"),
            ("workers = 2.0", "workers", "found the float 2"),
            ("backlog = { a = 1 }", "backlog", "found a table"),
            ("[backlog]\na = 1", "backlog", "found a table"),
            (
                "bind = [[\"127.0.0.1:0\"]]",
                "bind",
                "found an array in the array",
            ),
            ("bind = []", "bind", "empty array"),
            ("bind = 1979-05-27", "bind", "found the datetime"),
            ("check-config = 1", "check-config", "not allowed"),
            ("log-level = [\"info\"]", "log-level", "found an array"),
            ("app = [\"echo\"]", "app", "found an array"),
            ("max-requests = \"\"", "max-requests", "expected an integer"),
            (
                "max-requests = \"12\"",
                "max-requests",
                "expected an integer",
            ),
        ] {
            let msg = file_err(text, key);
            assert!(msg.contains(reason), "{text}: wants {reason:?}: {msg}");
        }
    }

    #[test]
    fn invalid_values_carry_clap_reason() {
        for (text, key, reason) in [
            ("workers = 0", "workers", "must be at least 1"),
            ("workers = \"two\"", "workers", "two"),
            ("bind = \"non sense\"", "bind", "non sense"),
            ("bind = [\"127.0.0.1:0\", \"fd://x\"]", "bind", "fd://x"),
            ("umask = \"9\"", "umask", "octal"),
            ("log-level = \"loud\"", "log-level", "loud"),
            ("keep-alive = -1", "keep-alive", "-1"),
            ("limit-request-fields = 257", "limit-request-fields", "257"),
            ("cpus = \"3-1\"", "cpus", "runs backwards"),
            ("worker-class = \"fork\"", "worker-class", "fork"),
        ] {
            let msg = file_err(text, key);
            assert!(msg.contains(reason), "{text}: wants {reason:?}: {msg}");
            assert!(msg.contains("invalid value"), "{text}: {msg}");
        }
        let file = TempFile::new("workers = 0");
        let err = load(&["-c", file.path()]).expect_err("workers = 0");
        assert_eq!(err.kind(), ErrorKind::ValueValidation);
        // A value the command line overrides is still checked: the file is wrong either way.
        let err = load(&["-c", file.path(), "--workers", "2"]).expect_err("still invalid");
        assert!(err.to_string().contains("key `workers`"), "{err}");
    }

    #[test]
    fn unreadable_or_malformed_files_name_the_file() {
        let missing = std::env::temp_dir().join(format!(
            "ringcorn-unit-config-{}-missing.toml",
            std::process::id()
        ));
        let missing = missing.to_str().expect("UTF-8");
        let err = load(&["-c", missing]).expect_err("missing");
        assert_eq!(err.exit_code(), 2);
        let msg = err.to_string();
        assert!(
            msg.contains(missing) && msg.contains("cannot read"),
            "{msg}"
        );

        let dir = std::env::temp_dir();
        let msg = load(&["-c", dir.to_str().expect("UTF-8")])
            .expect_err("a directory")
            .to_string();
        assert!(msg.contains("cannot read config file"), "{msg}");

        let file = TempFile::new("workers = 2\nkeep-alive = \nbacklog = 3\n");
        let err = load(&["-c", file.path()]).expect_err("syntax");
        assert_eq!(err.exit_code(), 2);
        let msg = err.to_string();
        assert!(msg.contains(file.path()), "{msg}");
        assert!(msg.contains("line 2"), "names the line: {msg}");

        let file = TempFile::new("workers = 2\nworkers = 3\n");
        let msg = load(&["-c", file.path()])
            .expect_err("duplicate")
            .to_string();
        assert!(msg.contains(file.path()) && msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn help_and_command_line_errors_come_before_the_file() {
        let err = load(&["-c", "/nonexistent/ringcorn.toml", "--help"]).expect_err("help");
        assert_eq!(err.kind(), ErrorKind::DisplayHelp);
        let err = load(&["-c", "/nonexistent/ringcorn.toml", "--workers", "x"]).expect_err("bad");
        assert!(err.to_string().contains("--workers"), "{err}");
        // Without a file, load_cli is plain parsing.
        let cli = load(&["-w", "2", "echo"]).expect("parses");
        assert_eq!(
            (cli.workers, cli.app.as_deref()),
            (Workers::Count(2), Some("echo"))
        );
    }

    #[test]
    fn values_starting_with_a_dash_stay_values() {
        let cli = load_file("app = \"-x\"\npid = \"-p\"", &[]).expect("loads");
        assert_eq!(cli.app.as_deref(), Some("-x"));
        assert_eq!(cli.pidfile, Some(PathBuf::from("-p")));
    }

    #[test]
    fn print_config_of_the_defaults() {
        let cli = load(&[]).expect("defaults");
        let text = print_config(&cli);
        assert!(text.contains("workers = \"auto\"\n"), "{text}");
        assert!(text.contains("bind = [\"127.0.0.1:8000\"]\n"), "{text}");
        assert!(text.contains("keep-alive = 75\n"), "{text}");
        assert!(text.contains("log-level = \"info\"\n"), "{text}");
        for absent in [
            "app",
            "cpus",
            "pid",
            "config",
            "check-config",
            "print-config",
        ] {
            assert!(
                !text.lines().any(|l| l.starts_with(&format!("{absent} ="))),
                "{absent} omitted: {text}"
            );
        }
        assert!(text.starts_with("workers = "), "Cli's order: {text}");
    }

    /// Every option a file may set is printed: a new option cannot be forgotten here.
    #[test]
    fn print_config_covers_every_option() {
        let cli = load(&[
            "-c",
            "/dev/null",
            "--cpus",
            "0",
            "--pid",
            "p",
            "-u",
            "u",
            "-g",
            "g",
            "-m",
            "7",
            "--health-path",
            "/h",
            "--root",
            "/srv/www",
            "--body-buffer-size",
            "65536",
            "--body-temp-dir",
            "/var/tmp",
            "--access-logfile",
            "a.log",
            "--forwarded-allow-ips",
            "*",
            "--metrics",
            "127.0.0.1:9100",
            "--certfile",
            "c.pem",
            "--keyfile",
            "k.pem",
            "--ca-certs",
            "ca.pem",
            "--tls-bind",
            "0.0.0.0:8443",
            "--chdir",
            "/srv/app",
            "--pythonpath",
            "/a,/b",
            "--root-path",
            "/mount",
            "--env",
            "KEY=value",
            "hello",
        ])
        .expect("parses");
        let text = print_config(&cli);
        let printed: Vec<&str> = text
            .lines()
            .map(|l| l.split(" = ").next().expect("key"))
            .collect();
        let cmd = Cli::command();
        let expected: Vec<String> = cmd
            .get_arguments()
            .filter(|a| matches!(a.get_action(), ArgAction::Set | ArgAction::Append))
            .map(|a| match a.get_long() {
                Some(long) => long.to_owned(),
                None => a.get_id().as_str().to_owned(),
            })
            .filter(|k| !NOT_IN_FILE.contains(&k.as_str()))
            .collect();
        assert_eq!(printed, expected, "every option, in Cli's order");
    }

    /// parse → print → load with -c → the same Config, and the same printout.
    #[test]
    fn print_config_round_trips() {
        for args in [
            &[][..],
            &[
                "--workers",
                "3",
                "--cpus",
                "0,2-3,7",
                "-b",
                "[::1]:0",
                "-b",
                "0.0.0.0:80",
                "--backlog",
                "5",
                "--keep-alive",
                "4",
                "--header-timeout",
                "3",
                "--graceful-timeout",
                "0",
                "--body-timeout",
                "8",
                "--send-timeout",
                "9",
                "--max-connections",
                "77",
                "--limit-request-line",
                "100",
                "--limit-request-field-size",
                "200",
                "--limit-request-fields",
                "20",
                "--limit-request-head",
                "3000",
                "--max-body-size",
                "4294967296",
                "--log-level",
                "critical",
                "--worker-class",
                "process",
                "--timeout",
                "0",
                "--max-requests",
                "18446744073709551615",
                "--max-requests-jitter",
                "12",
                "--pid",
                "/run/ring \"corn\".pid",
                "json",
            ],
            &["--workers", "auto", "--cpus", "1"],
        ] {
            let cli = load(args).expect("parses");
            let text = print_config(&cli);
            let back = load_file(&text, &[]).unwrap_or_else(|e| panic!("{text}\n{e}"));
            assert_eq!(
                format!("{:?}", back.config()),
                format!("{:?}", cli.config()),
                "{text}"
            );
            assert_eq!(back.app, cli.app);
            assert_eq!(back.log_level, cli.log_level);
            assert_eq!(print_config(&back), text);
        }
    }

    #[test]
    fn cpu_lists_print_as_ranges() {
        for (list, text) in [
            (vec![0, 1, 2, 3], "0-3"),
            (vec![0, 2, 3], "0,2-3"),
            (vec![5], "5"),
            (vec![3, 1, 2], "3,1-2"),
        ] {
            assert_eq!(cpu_list(&CpuList(list)), text);
        }
    }
}
