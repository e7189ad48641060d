//! `--pid FILE`: the master's pid, written once it is listening and removed on exit; renamed
//! to `FILE.oldbin` while a binary upgrade hands over to a new master (nginx's convention).

use std::io;
use std::path::{Path, PathBuf};

/// The pidfile this master wrote.
#[derive(Debug, Clone)]
pub struct Pidfile {
    path: PathBuf,
}

impl Pidfile {
    /// Write this process's pid to `path` (through a temporary file and a rename, so a reader
    /// never sees it half-written).
    pub fn write(path: &Path) -> io::Result<Pidfile> {
        let tmp = sibling(path, ".tmp");
        std::fs::write(&tmp, format!("{}\n", std::process::id()))?;
        std::fs::rename(&tmp, path)?;
        Ok(Pidfile {
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `FILE.oldbin`.
    pub fn oldbin(&self) -> PathBuf {
        sibling(&self.path, ".oldbin")
    }

    /// An upgrade begins: the file becomes `FILE.oldbin` (the new master writes `FILE`).
    pub fn to_oldbin(&self) -> io::Result<()> {
        std::fs::rename(&self.path, self.oldbin())
    }

    /// The upgrade failed: `FILE.oldbin` goes back to `FILE`.
    pub fn restore(&self) -> io::Result<()> {
        std::fs::rename(self.oldbin(), &self.path)
    }

    /// On exit: remove whichever of `FILE` and `FILE.oldbin` still names this process (after
    /// an upgrade, `FILE` is the new master's and stays).
    pub fn remove(&self) {
        let ours = format!("{}", std::process::id());
        for path in [self.path.clone(), self.oldbin()] {
            if std::fs::read_to_string(&path).is_ok_and(|s| s.trim() == ours) {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_renamed_restored_removed() {
        let path = std::env::temp_dir().join(format!("ringcorn-pidfile-{}", std::process::id()));
        let pid = Pidfile::write(&path).expect("writes");
        let ours = std::process::id().to_string();
        assert_eq!(std::fs::read_to_string(&path).expect("reads").trim(), ours);
        pid.to_oldbin().expect("renames");
        assert!(!path.exists() && pid.oldbin().exists());
        pid.restore().expect("restores");
        assert!(path.exists() && !pid.oldbin().exists());
        pid.to_oldbin().expect("renames");
        std::fs::write(&path, "1\n").expect("another master's");
        pid.remove();
        assert!(path.exists(), "another master's pidfile stays");
        assert!(!pid.oldbin().exists(), "ours goes");
        std::fs::remove_file(&path).expect("cleanup");
    }
}
