//! The server's own log (`--error-logfile FILE|-`): tracing's formatter writing either to
//! stderr or to a file opened for appending, which [`reopen`] swaps for a freshly opened one
//! (SIGUSR1, after logrotate has renamed the old file).
//!
//! Every event is formatted into one buffer and written with a single `write_all` under the
//! sink's lock, and the file is opened with `O_APPEND`: lines from the master, worker threads
//! and worker processes (each with its own descriptor) never interleave mid-line, and a line
//! goes whole to the old file or whole to the new one across a reopen.

use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

use tracing_subscriber::fmt::MakeWriter;

/// Where log lines go.
enum Sink {
    Stderr,
    File { path: PathBuf, file: File },
}

static SINK: OnceLock<Mutex<Sink>> = OnceLock::new();

fn sink() -> &'static Mutex<Sink> {
    SINK.get_or_init(|| Mutex::new(Sink::Stderr))
}

fn lock() -> MutexGuard<'static, Sink> {
    // A panic while writing a line leaves the sink usable: it holds no invariant.
    sink()
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
    let new = if is_stderr(path) {
        Sink::Stderr
    } else {
        let file =
            open(path).map_err(|e| format!("cannot open the error log {}: {e}", path.display()))?;
        Sink::File {
            path: path.to_path_buf(),
            file,
        }
    };
    *lock() = new;
    Ok(())
}

/// The file lines go to now (`None`: stderr).
pub fn current() -> Option<PathBuf> {
    match &*lock() {
        Sink::Stderr => None,
        Sink::File { path, .. } => Some(path.clone()),
    }
}

/// SIGUSR1: open the log's path again and write there from now on. If it cannot be opened,
/// lines keep going to the old file, and the error says why.
pub fn reopen() -> Result<(), String> {
    let mut guard = lock();
    let Sink::File { path, file } = &mut *guard else {
        return Ok(());
    };
    match open(path) {
        Ok(fresh) => {
            *file = fresh;
            Ok(())
        }
        Err(e) => Err(format!(
            "cannot reopen the error log {}: {e}; still writing to the old file",
            path.display()
        )),
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
            Sink::Stderr => io::stderr().write(buf),
            Sink::File { file, .. } => file.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        // A failed write (a full disk) drops the line rather than stall or crash the caller.
        let _ = match &mut *self.0 {
            Sink::Stderr => io::stderr().write_all(buf),
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
