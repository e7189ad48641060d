//! `-c/--config FILE` (TOML), `--print-config` and `--check-config`: a server configured by
//! its file, the precedence command line > environment > file > defaults, every kind of bad
//! file as a usage error naming the file and the key, and `--print-config` output as input.

mod common;

use common::*;
use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A config file under the temp directory with a name unique to this process and call,
/// removed on drop.
struct ConfigFile(PathBuf);

impl ConfigFile {
    fn new(contents: &str) -> ConfigFile {
        let file = ConfigFile::unused();
        std::fs::write(&file.0, contents).expect("write config file");
        file
    }

    /// A unique path with no file behind it.
    fn unused() -> ConfigFile {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        ConfigFile(std::env::temp_dir().join(format!(
            "ringcorn-test-config-{}-{n}.toml",
            std::process::id()
        )))
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("temp path is UTF-8")
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[track_caller]
fn assert_code(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "status {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        stdout(out),
        stderr(out)
    );
}

/// The value of `key = value` in `--print-config` output.
#[track_caller]
fn printed<'a>(text: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key} = ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no `{key}` in --print-config output:\n{text}"))
}

/// `--print-config` with `args` and `envs`; asserts exit 0 and returns stdout.
#[track_caller]
fn print_config(args: &[&str], envs: &[(&str, &str)]) -> String {
    let mut all = args.to_vec();
    all.push("--print-config");
    let out = run_cli_env(&all, envs);
    assert_code(&out, 0);
    stdout(&out)
}

#[test]
fn server_runs_with_the_file_settings() {
    let file = ConfigFile::new(
        "# a server configured by its file alone\n\
         bind = [\"127.0.0.1:0\"]\n\
         workers = 2\n\
         keep_alive = 1\n\
         app = \"json\"\n",
    );
    let server = Server::spawn(&["-c", file.path()]);
    assert!(
        server.wait_log_count("Booting worker", 2, Duration::from_secs(10)),
        "{}",
        server.log()
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        server.count_log_lines("Booting worker"),
        2,
        "workers = 2:\n{}",
        server.log()
    );
    server.expect_log("Using app: json", Duration::from_secs(5));
    assert!(server.addr().ip().is_loopback(), "{}", server.addr());
    let mut c = connect(server.addr());
    let resp = c.get("/");
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body_str(), JSON_BODY, "app = \"json\": {resp:?}");
    // keep_alive = 1 (written with `_`): the idle connection is closed soon.
    c.set_read_timeout(Duration::from_secs(4));
    c.expect_closed();
}

#[test]
fn config_file_from_the_environment() {
    let file = ConfigFile::new("bind = \"127.0.0.1:0\"\nworkers = 1\napp = \"echo\"\n");
    let server = Server::spawn_env(&[], &[("RINGCORN_CONFIG", file.path())]);
    server.expect_log("Using app: echo", Duration::from_secs(5));
    let mut c = connect(server.addr());
    assert_eq!(
        c.post("/", b"from RINGCORN_CONFIG").body,
        b"from RINGCORN_CONFIG"
    );
}

#[test]
fn command_line_beats_environment_beats_file_beats_defaults() {
    let file = ConfigFile::new(
        "workers = 3\n\
         keep-alive = 5\n\
         backlog = 100\n\
         bind = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n\
         log-level = \"debug\"\n",
    );
    let text = print_config(
        &["-c", file.path(), "--workers", "2"],
        &[
            ("RINGCORN_WORKERS", "4"),
            ("RINGCORN_KEEP_ALIVE", "6"),
            ("RINGCORN_BIND", "127.0.0.1:7"),
        ],
    );
    assert_eq!(
        printed(&text, "workers"),
        "2",
        "command line > env:\n{text}"
    );
    assert_eq!(printed(&text, "keep-alive"), "6", "env > file:\n{text}");
    assert_eq!(
        printed(&text, "bind"),
        "[\"127.0.0.1:7\"]",
        "env replaces the file's list:\n{text}"
    );
    assert_eq!(printed(&text, "backlog"), "100", "file > default:\n{text}");
    assert_eq!(printed(&text, "log-level"), "\"debug\"", "{text}");
    assert_eq!(
        printed(&text, "max-body-size"),
        "1048576",
        "default:\n{text}"
    );

    // -c on the command line beats RINGCORN_CONFIG.
    let other = ConfigFile::new("backlog = 7\n");
    let text = print_config(&["-c", other.path()], &[("RINGCORN_CONFIG", file.path())]);
    assert_eq!(printed(&text, "backlog"), "7", "{text}");
    assert_eq!(printed(&text, "workers"), "\"auto\"", "{text}");
}

#[test]
fn bad_files_exit_2_naming_file_and_key() {
    for (contents, key, reason) in [
        ("wrkers = 2\n", "wrkers", "unknown key"),
        ("workers = [1, 2]\n", "workers", "found an array"),
        ("keep-alive = \"75\"\n", "keep-alive", "expected an integer"),
        ("keep-alive = 7.5\n", "keep-alive", "float"),
        ("[backlog]\nx = 1\n", "backlog", "table"),
        ("workers = 0\n", "workers", "invalid value '0'"),
        (
            "bind = [\"127.0.0.1:0\", \"fd://nonsense\"]\n",
            "bind",
            "fd://nonsense",
        ),
        ("log-level = \"loud\"\n", "log-level", "loud"),
        ("config = \"other.toml\"\n", "config", "not allowed"),
        ("print-config = true\n", "print-config", "not allowed"),
    ] {
        let file = ConfigFile::new(contents);
        let out = run_cli(&["-c", file.path(), "--bind", "127.0.0.1:0"]);
        assert_code(&out, 2);
        let err = stderr(&out);
        assert!(
            err.contains(file.path()),
            "{contents:?}: names the file: {err}"
        );
        assert!(
            err.contains(&format!("`{key}`")),
            "{contents:?}: names `{key}`: {err}"
        );
        assert!(err.contains(reason), "{contents:?}: says {reason:?}: {err}");
        assert!(!err.contains("Listening at"), "nothing listens: {err}");
    }
}

#[test]
fn missing_file_exits_2_naming_it() {
    let file = ConfigFile::unused();
    let out = run_cli(&["--config", file.path(), "--bind", "127.0.0.1:0"]);
    assert_code(&out, 2);
    let err = stderr(&out);
    assert!(err.contains(file.path()), "names the file: {err}");
    assert!(err.contains("No such file"), "gives the OS reason: {err}");
}

#[test]
fn toml_syntax_error_exits_2_naming_file_and_line() {
    let file = ConfigFile::new("workers = 2\nbacklog = 10\nkeep-alive = five\n");
    let out = run_cli(&["-c", file.path(), "--bind", "127.0.0.1:0"]);
    assert_code(&out, 2);
    let err = stderr(&out);
    assert!(err.contains(file.path()), "names the file: {err}");
    assert!(err.contains("line 3"), "names the line: {err}");
}

#[test]
fn print_config_output_is_valid_config_input() {
    let first = print_config(
        &[
            "--workers",
            "3",
            "--cpus",
            "0",
            "-b",
            "127.0.0.1:0",
            "-b",
            "[::1]:0",
            "--keep-alive",
            "9",
            "--max-body-size",
            "4096",
            "--log-level",
            "warning",
            "--pid",
            "/tmp/ringcorn \"quoted\".pid",
            "echo",
        ],
        &[],
    );
    assert_eq!(printed(&first, "workers"), "3", "{first}");
    assert_eq!(
        printed(&first, "bind"),
        "[\"127.0.0.1:0\", \"[::1]:0\"]",
        "{first}"
    );
    assert_eq!(printed(&first, "app"), "\"echo\"", "{first}");
    assert!(!first.contains("config"), "no config keys: {first}");
    let file = ConfigFile::new(&first);
    let second = print_config(&["-c", file.path()], &[]);
    assert_eq!(second, first, "print → -c → print is identical");

    // The defaults too: `workers = "auto"`, no app, no pid.
    let defaults = print_config(&[], &[]);
    assert_eq!(printed(&defaults, "workers"), "\"auto\"", "{defaults}");
    assert!(!defaults.contains("pid ="), "{defaults}");
    let file = ConfigFile::new(&defaults);
    assert_eq!(print_config(&["-c", file.path()], &[]), defaults);
}

#[test]
fn check_config_exit_codes() {
    let good = ConfigFile::new("bind = [\"127.0.0.1:0\"]\nworkers = 1\napp = \"hello\"\n");
    let out = run_cli(&["-c", good.path(), "--check-config"]);
    assert_code(&out, 0);
    assert!(
        !stderr(&out).contains("Listening at"),
        "--check-config does not serve: {}",
        stderr(&out)
    );

    let bad = ConfigFile::new("workers = 0\n");
    let out = run_cli(&["-c", bad.path(), "--check-config"]);
    assert_code(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains(bad.path()) && err.contains("`workers`"),
        "the error on stderr: {err}"
    );

    let missing = ConfigFile::unused();
    let out = run_cli(&["-c", missing.path(), "--check-config"]);
    assert_code(&out, 1);
    assert!(stderr(&out).contains(missing.path()), "{}", stderr(&out));
}
