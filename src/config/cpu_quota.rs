//! The CPU quota of the cgroup this process runs in, so that `--workers auto` starts no more
//! workers than a container may keep busy (Go's automaxprocs does the same). The process's
//! cgroup comes from `/proc/self/cgroup`, the hierarchy's mount from `/proc/self/mountinfo`;
//! cgroup v2 gives the limit in `cpu.max` (`QUOTA PERIOD` or `max PERIOD`), cgroup v1 in
//! `cpu.cfs_quota_us` (-1: none) and `cpu.cfs_period_us`. The cgroup and each of its ancestors
//! up to the mount may have a limit of its own; the tightest one counts, as ceil(quota /
//! period) CPUs, at least 1. A file that is missing, unreadable or malformed means no limit:
//! the server never fails to start over this. Test hook: with `RINGCORN_CGROUP_ROOT=DIR`,
//! [`detect`] reads `DIR/proc/self/cgroup` and `DIR/proc/self/mountinfo` and looks for the
//! mount points beneath `DIR`, so that a test can stand a fake cgroup tree in for the real one.

use std::fs;
use std::path::{Component, Path, PathBuf};

/// The test hook: a directory that stands in for `/` (see the module doc).
const ROOT_ENV: &str = "RINGCORN_CGROUP_ROOT";

/// A CPU limit found in a cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    /// The quota in whole CPUs, rounded up; at least 1.
    pub cpus: usize,
    /// Where it came from, e.g. `cgroup v2 cpu.max 200000 100000 at /sys/fs/cgroup/pod1`.
    pub source: String,
}

/// The CPU quota of this process's cgroup, if it has one (read from the real files, or from
/// beneath `RINGCORN_CGROUP_ROOT`).
pub fn detect() -> Option<Quota> {
    let root = std::env::var_os(ROOT_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"));
    let proc_cgroup = fs::read_to_string(root.join("proc/self/cgroup")).ok()?;
    let mountinfo = fs::read_to_string(root.join("proc/self/mountinfo")).ok()?;
    detect_in(&proc_cgroup, &mountinfo, &root)
}

/// [`detect`] over the contents of `/proc/self/cgroup` and `/proc/self/mountinfo`, with the
/// mount points looked up beneath `fs_root` (`/` in production). Where both a cgroup v2 and a
/// v1 `cpu` hierarchy are mounted (the hybrid layout), the tighter limit counts.
fn detect_in(proc_cgroup: &str, mountinfo: &str, fs_root: &Path) -> Option<Quota> {
    let mounts: Vec<Mount> = mountinfo.lines().filter_map(Mount::parse).collect();
    let mut tightest: Option<Limit> = None;
    for line in proc_cgroup.lines() {
        // hierarchy-ID:controllers:path; the path may itself hold a colon.
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let version = if id == "0" && controllers.is_empty() {
            Version::V2
        } else if controllers.split(',').any(|c| c == "cpu") {
            Version::V1
        } else {
            continue;
        };
        let Some(dirs) = mounts
            .iter()
            .filter(|m| m.holds(version))
            .find_map(|m| m.levels(path, fs_root))
        else {
            continue;
        };
        for dir in dirs {
            if let Some(limit) = version.read_limit(&dir) {
                if tightest.as_ref().is_none_or(|t| limit.is_tighter_than(t)) {
                    tightest = Some(limit);
                }
            }
        }
    }
    tightest.map(Limit::into_quota)
}

/// Which cgroup interface a hierarchy speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

impl Version {
    /// The limit set in the cgroup directory `dir` itself, if any (and well-formed).
    fn read_limit(self, dir: &Path) -> Option<Limit> {
        let read = |name: &str| fs::read_to_string(dir.join(name)).ok();
        let (quota, period, files) = match self {
            Version::V2 => {
                let text = read("cpu.max")?;
                let mut fields = text.split_whitespace();
                let (quota, period) = (fields.next()?, fields.next()?);
                if fields.next().is_some() || quota == "max" {
                    return None;
                }
                (
                    quota.parse().ok()?,
                    period.parse().ok()?,
                    text.trim().to_string(),
                )
            }
            Version::V1 => {
                let quota = read("cpu.cfs_quota_us")?;
                let quota = quota.trim();
                if quota == "-1" {
                    return None;
                }
                let period = read("cpu.cfs_period_us")?;
                let period = period.trim();
                (
                    quota.parse().ok()?,
                    period.parse().ok()?,
                    format!("{quota}, cpu.cfs_period_us {period}"),
                )
            }
        };
        if quota == 0 || period == 0 {
            return None;
        }
        Some(Limit {
            quota,
            period,
            source: format!("{} {files} at {}", self.label(), dir.display()),
        })
    }

    /// The interface and the file that holds its quota, for [`Quota::source`].
    fn label(self) -> &'static str {
        match self {
            Version::V1 => "cgroup v1 cpu.cfs_quota_us",
            Version::V2 => "cgroup v2 cpu.max",
        }
    }
}

/// A quota of CPU time per period, and where it was read.
#[derive(Debug)]
struct Limit {
    quota: u64,
    period: u64,
    source: String,
}

impl Limit {
    /// Fewer CPUs than `other` (compared exactly, as fractions).
    fn is_tighter_than(&self, other: &Limit) -> bool {
        u128::from(self.quota) * u128::from(other.period)
            < u128::from(other.quota) * u128::from(self.period)
    }

    fn into_quota(self) -> Quota {
        let cpus = self.quota.div_ceil(self.period).max(1);
        Quota {
            cpus: usize::try_from(cpus).unwrap_or(usize::MAX),
            source: self.source,
        }
    }
}

/// One line of `/proc/self/mountinfo`, the fields this module needs.
#[derive(Debug)]
struct Mount {
    /// The directory of the file system that appears at the mount point (field 4): for a
    /// cgroup hierarchy, the cgroup shown there (not always the hierarchy's root).
    root: PathBuf,
    /// Where it is mounted (field 5).
    point: PathBuf,
    fs_type: String,
    super_options: String,
}

impl Mount {
    /// `ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS`.
    fn parse(line: &str) -> Option<Mount> {
        let fields: Vec<&str> = line.split(' ').collect();
        let dash = fields.iter().position(|f| *f == "-")?;
        if dash < 6 {
            return None;
        }
        Some(Mount {
            root: PathBuf::from(unescape(fields[3])),
            point: PathBuf::from(unescape(fields[4])),
            fs_type: fields.get(dash + 1)?.to_string(),
            super_options: fields.get(dash + 3).copied().unwrap_or("").to_string(),
        })
    }

    /// Whether this is a mount of the hierarchy that `version` reads the CPU limit from.
    fn holds(&self, version: Version) -> bool {
        match version {
            Version::V2 => self.fs_type == "cgroup2",
            Version::V1 => {
                self.fs_type == "cgroup" && self.super_options.split(',').any(|o| o == "cpu")
            }
        }
    }

    /// The directories of `cgroup` (a path in the hierarchy) and of its ancestors that this
    /// mount shows, beneath `fs_root`, the cgroup's own first; `None` if the mount does not
    /// show the cgroup (it lies outside the mount's root).
    fn levels(&self, cgroup: &str, fs_root: &Path) -> Option<Vec<PathBuf>> {
        let relative = Path::new(cgroup).strip_prefix(&self.root).ok()?;
        if relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
        {
            return None;
        }
        let point = self.point.strip_prefix("/").unwrap_or(&self.point);
        let mount_dir = fs_root.join(point);
        let dirs = relative
            .ancestors()
            .map(|level| {
                if level.as_os_str().is_empty() {
                    mount_dir.clone()
                } else {
                    mount_dir.join(level)
                }
            })
            .collect();
        Some(dirs)
    }
}

/// Undo mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if let Some([b'\\', digits @ ..]) = bytes.get(i..i + 4) {
            if let Some(byte) = octal_byte(digits) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Three octal digits as a byte (`None` if they are not, or exceed 255).
fn octal_byte(digits: &[u8]) -> Option<u8> {
    if !digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
        return None;
    }
    u8::from_str_radix(std::str::from_utf8(digits).ok()?, 8).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake file system under the temp directory, removed on drop.
    struct FakeRoot(PathBuf);

    impl FakeRoot {
        fn new(name: &str) -> FakeRoot {
            let dir = std::env::temp_dir().join(format!(
                "ringcorn-cpu-quota-{name}-{}-{:?}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos()
            ));
            fs::create_dir_all(&dir).expect("create the fake root");
            FakeRoot(dir)
        }

        /// Writes `text` to `path` (relative to the root), creating its directories.
        fn write(&self, path: &str, text: &str) -> &FakeRoot {
            let file = self.0.join(path);
            fs::create_dir_all(file.parent().expect("a file has a parent")).expect("mkdir");
            fs::write(&file, text).expect("write");
            self
        }

        /// cgroup v1's two files in `dir`: `quota` and a period of 100000.
        fn v1(&self, dir: &str, quota: &str) -> &FakeRoot {
            self.write(&format!("{dir}/cpu.cfs_quota_us"), quota)
                .write(&format!("{dir}/cpu.cfs_period_us"), "100000\n")
        }

        fn path(&self, path: &str) -> String {
            self.0.join(path).display().to_string()
        }
    }

    impl Drop for FakeRoot {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    const V2_MOUNTINFO: &str = "22 1 0:21 / /proc rw,nosuid - proc proc rw\n\
        30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
    const V1_MOUNTINFO: &str = "31 23 0:28 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755\n\
        32 31 0:29 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset\n\
        33 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct\n";
    const V1_CGROUP: &str = "3:cpuset:/\n2:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n";
    /// Where V1_CGROUP's cpu cgroup lies under V1_MOUNTINFO.
    const V1_DIR: &str = "sys/fs/cgroup/cpu,cpuacct/docker/abc";

    #[test]
    fn v2_limit() {
        let root = FakeRoot::new("v2");
        root.write("sys/fs/cgroup/kubepods/pod1/cpu.max", "200000 100000\n");
        let quota = detect_in("0::/kubepods/pod1\n", V2_MOUNTINFO, &root.0).expect("a quota");
        assert_eq!(quota.cpus, 2);
        assert_eq!(
            quota.source,
            format!(
                "cgroup v2 cpu.max 200000 100000 at {}",
                root.path("sys/fs/cgroup/kubepods/pod1")
            )
        );
    }

    #[test]
    fn v2_max_is_no_limit() {
        let root = FakeRoot::new("v2max");
        root.write("sys/fs/cgroup/a/cpu.max", "max 100000\n");
        assert_eq!(detect_in("0::/a\n", V2_MOUNTINFO, &root.0), None);
    }

    #[test]
    fn v2_nested_parent_limit_wins() {
        let root = FakeRoot::new("v2nested");
        root.write("sys/fs/cgroup/parent/cpu.max", "300000 100000\n")
            .write("sys/fs/cgroup/parent/child/cpu.max", "800000 100000\n")
            .write("sys/fs/cgroup/parent/child/leaf/cpu.max", "max 100000\n");
        let quota = detect_in("0::/parent/child/leaf\n", V2_MOUNTINFO, &root.0).expect("a quota");
        assert_eq!(quota.cpus, 3);
        assert!(
            quota.source.ends_with(&root.path("sys/fs/cgroup/parent")),
            "{}",
            quota.source
        );
    }

    #[test]
    fn v1_limit() {
        let root = FakeRoot::new("v1");
        root.v1(V1_DIR, "400000\n")
            .v1("sys/fs/cgroup/cpu,cpuacct", "-1\n");
        let quota = detect_in(V1_CGROUP, V1_MOUNTINFO, &root.0).expect("a quota");
        assert_eq!(quota.cpus, 4);
        assert_eq!(
            quota.source,
            format!(
                "cgroup v1 cpu.cfs_quota_us 400000, cpu.cfs_period_us 100000 at {}",
                root.path(V1_DIR)
            )
        );
    }

    #[test]
    fn v1_minus_one_is_no_limit() {
        let root = FakeRoot::new("v1none");
        root.v1(V1_DIR, "-1\n");
        assert_eq!(detect_in(V1_CGROUP, V1_MOUNTINFO, &root.0), None);
    }

    #[test]
    fn v1_mount_root_is_not_slash() {
        // A container's view: its own cgroup is mounted at the mount point.
        let root = FakeRoot::new("v1root");
        root.v1("sys/fs/cgroup/cpu", "100000\n");
        let mountinfo =
            "40 31 0:30 /docker/abc /sys/fs/cgroup/cpu ro,nosuid - cgroup cgroup rw,cpu\n";
        let quota = detect_in("5:cpu:/docker/abc\n", mountinfo, &root.0).expect("a quota");
        assert_eq!(quota.cpus, 1);
        assert!(
            quota.source.ends_with(&root.path("sys/fs/cgroup/cpu")),
            "{}",
            quota.source
        );
        // A cgroup outside the mount's root is not shown by it: no quota.
        assert_eq!(detect_in("5:cpu:/other\n", mountinfo, &root.0), None);
    }

    #[test]
    fn fractional_quota_rounds_up() {
        let root = FakeRoot::new("frac");
        root.write("sys/fs/cgroup/cpu.max", "150000 100000\n");
        let quota = detect_in("0::/\n", V2_MOUNTINFO, &root.0).expect("a quota");
        assert_eq!(quota.cpus, 2);
        root.write("sys/fs/cgroup/cpu.max", "10000 100000\n");
        let quota = detect_in("0::/\n", V2_MOUNTINFO, &root.0).expect("a quota");
        assert_eq!(quota.cpus, 1, "a tenth of a CPU is still one worker");
    }

    #[test]
    fn malformed_contents_are_no_limit() {
        let root = FakeRoot::new("bad");
        let bad_cpu_max = [
            "",
            "lots 100000",
            "200000",
            "200000 0",
            "1 2 3",
            "-5 100000",
        ];
        for text in bad_cpu_max {
            root.write("sys/fs/cgroup/a/cpu.max", text);
            let quota = detect_in("0::/a\n", V2_MOUNTINFO, &root.0);
            assert_eq!(quota, None, "{text:?}");
        }
        root.v1(V1_DIR, "many\n");
        assert_eq!(detect_in(V1_CGROUP, V1_MOUNTINFO, &root.0), None);
        // Garbage in the proc files themselves, and missing files.
        assert_eq!(detect_in("nonsense", "nonsense", &root.0), None);
        assert_eq!(detect_in("0::/a\n", "1 2 3\n", &root.0), None);
        assert_eq!(detect_in("0::/missing\n", V2_MOUNTINFO, &root.0), None);
        assert_eq!(detect_in("0::/../../etc\n", V2_MOUNTINFO, &root.0), None);
    }

    #[test]
    fn hybrid_layout_takes_the_tighter_limit() {
        let root = FakeRoot::new("hybrid");
        root.write("sys/fs/cgroup/unified/cpu.max", "max 100000\n")
            .v1("sys/fs/cgroup/cpu", "250000\n");
        let mountinfo = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
            41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        let quota = detect_in("1:cpu:/\n0::/\n", mountinfo, &root.0).expect("a quota");
        assert_eq!(quota.cpus, 3);
        assert!(quota.source.starts_with("cgroup v1 "), "{}", quota.source);
    }

    #[test]
    fn mount_points_with_escapes() {
        assert_eq!(unescape(r"/mnt/a\040b\134c"), r"/mnt/a b\c");
        assert_eq!(unescape(r"/plain\0"), r"/plain\0");
    }
}
