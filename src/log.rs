//! The server's own log (`--error-logfile FILE|-`): tracing's formatter writing either to
//! stderr or to a file opened for appending, which [`reopen`] swaps for a freshly opened one
//! (SIGUSR1, after logrotate has renamed the old file).
//!
//! Every event is formatted into one buffer and written with a single `write_all` under the
//! sink's lock, and the file is opened with `O_APPEND`: lines from the master, worker threads
//! and worker processes (each with its own descriptor) never interleave mid-line, and a line
//! goes whole to the old file or whole to the new one across a reopen.
//!
//! The access log (`--access-logfile`) is a second sink of the same kind: workers render
//! lines into buffers of their own and hand whole buffers to [`write_access`], one write
//! each, under its lock; [`reopen`] reopens it with the error log.

use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use tracing_subscriber::fmt::MakeWriter;

/// Where log lines go: the process's standard stream (stderr for the error log, stdout
/// for the access log, `-` on the command line), or a file.
enum Sink {
    Std,
    File { path: PathBuf, file: File },
}

impl Sink {
    /// The sink `path` names (`-`: the standard stream); the error names the file.
    fn at(path: &Path, what: &str) -> Result<Sink, String> {
        if is_stderr(path) {
            return Ok(Sink::Std);
        }
        let file =
            open(path).map_err(|e| format!("cannot open the {what} {}: {e}", path.display()))?;
        Ok(Sink::File {
            path: path.to_path_buf(),
            file,
        })
    }

    fn path(&self) -> Option<PathBuf> {
        match self {
            Sink::Std => None,
            Sink::File { path, .. } => Some(path.clone()),
        }
    }

    /// Open the path again and write there from now on; on failure the old file stays.
    fn reopen(&mut self, what: &str) -> Result<(), String> {
        let Sink::File { path, file } = self else {
            return Ok(());
        };
        match open(path) {
            Ok(fresh) => {
                *file = fresh;
                Ok(())
            }
            Err(e) => Err(format!(
                "cannot reopen the {what} {}: {e}; still writing to the old file",
                path.display()
            )),
        }
    }
}

static SINK: OnceLock<Mutex<Sink>> = OnceLock::new();
static ACCESS: OnceLock<Mutex<Option<Sink>>> = OnceLock::new();

fn sink() -> &'static Mutex<Sink> {
    SINK.get_or_init(|| Mutex::new(Sink::Std))
}

fn lock() -> MutexGuard<'static, Sink> {
    // A panic while writing a line leaves the sink usable: it holds no invariant.
    sink()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The access log's sink, locked (`None` inside: no access log).
fn access() -> MutexGuard<'static, Option<Sink>> {
    ACCESS
        .get_or_init(|| Mutex::new(None))
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// `-` is stderr.
fn is_stderr(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Install the log: stderr for `-`, else `path` (created if missing, appended to). The only
/// error is a file that cannot be opened; it names the file.
pub fn init(path: &Path, level: tracing::Level) -> Result<(), String> {
    let to_file = !is_stderr(path);
    if to_file {
        set(path)?;
    }
    let ansi = !to_file && io::stderr().is_terminal();
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .with_writer(Writer)
        .with_ansi(ansi)
        .try_init()
        .map_err(|e| format!("cannot install the log: {e}"))
}

/// Send lines to `path` from now on (a reload that names another file).
pub fn set(path: &Path) -> Result<(), String> {
    let new = Sink::at(path, "error log")?;
    *lock() = new;
    Ok(())
}

/// The file lines go to now (`None`: stderr).
pub fn current() -> Option<PathBuf> {
    lock().path()
}

/// SIGUSR1: open the logs' paths again and write there from now on. If one cannot be
/// opened, its lines keep going to the old file, and the error says why.
pub fn reopen() -> Result<(), String> {
    let errors = lock().reopen("error log");
    let access = access().as_mut().map_or(Ok(()), |s| s.reopen("access log"));
    errors.and(access)
}

/// `--access-logfile`: stdout for `-`, else `path` (created if missing, appended to).
pub fn init_access(path: &Path) -> Result<(), String> {
    let sink = Sink::at(path, "access log")?;
    *access() = Some(sink);
    Ok(())
}

/// The access log's file (`None`: stdout, or no access log).
pub fn access_path() -> Option<PathBuf> {
    access().as_ref().and_then(Sink::path)
}

/// Write whole access-log lines in one write (`-`: stdout).
pub fn write_access(lines: &[u8]) -> io::Result<()> {
    match &mut *access() {
        Some(Sink::File { file, .. }) => file.write_all(lines),
        Some(Sink::Std) => io::stdout().write_all(lines),
        None => Ok(()),
    }
}

/// The writer tracing formats each event into: the locked sink.
struct Writer;

/// One event's write, holding the sink's lock.
pub struct Line(MutexGuard<'static, Sink>);

impl<'a> MakeWriter<'a> for Writer {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line(lock())
    }
}

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut *self.0 {
            Sink::Std => io::stderr().write(buf),
            Sink::File { file, .. } => file.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        // A failed write (a full disk) drops the line rather than stall or crash the caller.
        let _ = match &mut *self.0 {
            Sink::Std => io::stderr().write_all(buf),
            Sink::File { file, .. } => file.write_all(buf),
        };
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopen_follows_the_path_and_keeps_lines_whole() {
        let dir = std::env::temp_dir().join(format!("ringcorn-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("error.log");
        set(&path).expect("opens");
        assert_eq!(current(), Some(path.clone()));
        Writer.make_writer().write_all(b"first\n").expect("write");
        let rotated = dir.join("error.log.1");
        std::fs::rename(&path, &rotated).expect("rotate");
        Writer.make_writer().write_all(b"second\n").expect("write");
        reopen().expect("reopens");
        Writer.make_writer().write_all(b"third\n").expect("write");
        let old = std::fs::read_to_string(&rotated).expect("old");
        let new = std::fs::read_to_string(&path).expect("new");
        assert_eq!(old, "first\nsecond\n");
        assert_eq!(new, "third\n");
        set(Path::new("-")).expect("stderr");
        assert_eq!(current(), None);
        assert!(reopen().is_ok(), "stderr needs no reopening");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
