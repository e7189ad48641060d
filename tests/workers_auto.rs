//! `--workers auto` counts the cgroup CPU quota: no more workers than the affinity mask or
//! the quota (rounded up) allow. Fake cgroup trees stand in for the real one through the
//! `RINGCORN_CGROUP_ROOT` test hook; where this machine lets root make a real cgroup with a
//! CPU limit, a server started inside one is checked too.

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

const LOG_TIMEOUT: Duration = Duration::from_secs(10);

/// The environment variable through which the server reads a fake cgroup tree.
const CGROUP_ROOT: &str = "RINGCORN_CGROUP_ROOT";

/// A fake root holding `proc/self/cgroup`, `proc/self/mountinfo` and the cgroup files.
struct FakeTree(TempDir);

impl FakeTree {
    fn new(tag: &str, proc_cgroup: &str, mountinfo: &str) -> FakeTree {
        let tree = FakeTree(TempDir::new(tag));
        tree.write("proc/self/cgroup", proc_cgroup);
        tree.write("proc/self/mountinfo", mountinfo);
        tree
    }

    /// cgroup v2 mounted at /sys/fs/cgroup, this process in `/pod`, whose `cpu.max` holds
    /// `cpu_max`.
    fn v2(cpu_max: &str) -> FakeTree {
        let mountinfo = "30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw\n";
        let tree = FakeTree::new("cgroup-v2", "0::/pod\n", mountinfo);
        tree.write("sys/fs/cgroup/pod/cpu.max", cpu_max);
        tree
    }

    fn write(&self, path: &str, text: &str) {
        let file = self.0.join(path);
        if let Some(dir) = file.parent() {
            fs::create_dir_all(dir).expect("create the fake tree");
        }
        fs::write(&file, text).expect("write the fake tree");
    }

    fn root(&self) -> String {
        self.0.path().to_string_lossy().into_owned()
    }

    /// The directory `path` of the tree, as the server names it.
    fn shown(&self, path: &str) -> String {
        self.0.arg(path)
    }
}

/// How many CPUs this process (and so the server it starts) may run on.
fn affinity_cpus() -> usize {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity writes at most its
    // size, and CPU_COUNT only reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let rc = libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
        assert_eq!(
            rc,
            0,
            "sched_getaffinity: {}",
            std::io::Error::last_os_error()
        );
        libc::CPU_COUNT(&set) as usize
    }
}

/// `ringcorn --check-config ARGS hello` with the fake tree; the worker count it reports.
fn checked_workers(tree: &FakeTree, args: &[&str]) -> usize {
    let mut all = vec!["--check-config"];
    all.extend_from_slice(args);
    all.push("hello");
    let out: Output = run_cli_env(&all, &[(CGROUP_ROOT, &tree.root())]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let count = stdout
        .trim()
        .strip_prefix("configuration OK: app `hello`, ")
        .and_then(|rest| rest.strip_suffix(" worker(s)"))
        .and_then(|n| n.parse().ok());
    count.unwrap_or_else(|| panic!("unexpected --check-config output: {stdout:?}"))
}

/// The server's `Workers: ...` startup line.
fn workers_line(server: &Server) -> String {
    server.expect_log("Workers: ", LOG_TIMEOUT);
    let log = server.log();
    let line = log.lines().find(|l| l.contains("Workers: "));
    line.unwrap_or_default().to_string()
}

/// A server started with `--workers auto` under `tree` runs exactly one worker and says why.
fn assert_one_worker_because(tree: &FakeTree, because: &str) {
    let server = Server::spawn_env(
        &["--bind", "127.0.0.1:0", "hello"],
        &[(CGROUP_ROOT, &tree.root())],
    );
    let line = workers_line(&server);
    let mask = affinity_cpus();
    let cpus = if mask == 1 { "CPU" } else { "CPUs" };
    let want = format!("Workers: 1 (auto: {mask} {cpus} in the affinity mask, {because} → 1)");
    assert!(line.contains(&want), "want {want:?} in\n{}", server.log());
    // The Workers line follows the Booting lines: all have been logged.
    server.assert_log_count("Booting worker", 1);
    assert_hello(&connect(server.addr()).get("/"));
}

#[test]
fn cgroup_v2_quota_of_one_cpu_starts_one_worker() {
    let tree = FakeTree::v2("100000 100000\n");
    let at = tree.shown("sys/fs/cgroup/pod");
    assert_one_worker_because(&tree, &format!("cgroup v2 cpu.max 100000 100000 at {at}"));
}

#[test]
fn cgroup_v1_quota_of_half_a_cpu_starts_one_worker() {
    // A container's view: its own cgroup (/docker/abc) is what is mounted at the mount point.
    let tree = FakeTree::new(
        "cgroup-v1",
        "12:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n",
        "40 31 0:30 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro,nosuid - cgroup cgroup rw,cpu,cpuacct\n",
    );
    tree.write("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "50000\n");
    tree.write("sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
    let at = tree.shown("sys/fs/cgroup/cpu,cpuacct");
    assert_one_worker_because(
        &tree,
        &format!("cgroup v1 cpu.cfs_quota_us 50000, cpu.cfs_period_us 100000 at {at}"),
    );
}

#[test]
fn no_limit_or_a_larger_one_leaves_the_affinity_mask() {
    assert_eq!(
        checked_workers(&FakeTree::v2("max 100000\n"), &[]),
        affinity_cpus()
    );
    let huge = format!("{} 100000\n", 100_000 * (affinity_cpus() + 1));
    assert_eq!(checked_workers(&FakeTree::v2(&huge), &[]), affinity_cpus());
    // Malformed: no quota, and no failure either.
    assert_eq!(
        checked_workers(&FakeTree::v2("half a cpu\n"), &[]),
        affinity_cpus()
    );
}

#[test]
fn explicit_workers_ignore_the_quota() {
    let tree = FakeTree::v2("100000 100000\n");
    assert_eq!(checked_workers(&tree, &["--workers", "3"]), 3);
    let server = Server::spawn_env(
        &["--bind", "127.0.0.1:0", "--workers", "3", "hello"],
        &[(CGROUP_ROOT, &tree.root())],
    );
    let line = workers_line(&server);
    assert!(
        line.contains("Workers: 3 (--workers 3)"),
        "{}",
        server.log()
    );
    server.assert_log_count("Booting worker", 3);
}

/// A real cgroup of this machine with a limit of one CPU, removed on drop.
struct RealCgroup {
    dir: PathBuf,
}

impl RealCgroup {
    /// Made beneath the cgroup v2 root or the v1 `cpu` hierarchy, or why it cannot be.
    fn create() -> Result<RealCgroup, String> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not running as root".into());
        }
        let name = format!("ringcorn-test-{}", std::process::id());
        let v2 = Path::new("/sys/fs/cgroup");
        if v2.join("cgroup.controllers").exists() {
            // The parent must hand the cpu controller down (harmless if it already does).
            let _ = fs::write(v2.join("cgroup.subtree_control"), "+cpu");
            return RealCgroup::limited(v2.join(&name), &[("cpu.max", "100000 100000")]);
        }
        for v1 in ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"] {
            if Path::new(v1).join("cpu.cfs_quota_us").exists() {
                let files = [
                    ("cpu.cfs_period_us", "100000"),
                    ("cpu.cfs_quota_us", "100000"),
                ];
                return RealCgroup::limited(Path::new(v1).join(&name), &files);
            }
        }
        Err("no cgroup v2 at /sys/fs/cgroup and no cgroup v1 cpu hierarchy".into())
    }

    fn limited(dir: PathBuf, files: &[(&str, &str)]) -> Result<RealCgroup, String> {
        fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let cgroup = RealCgroup { dir };
        for (file, value) in files {
            let path = cgroup.dir.join(file);
            fs::write(&path, value)
                .map_err(|e| format!("cannot write {value:?} to {}: {e}", path.display()))?;
        }
        Ok(cgroup)
    }

    /// `sh -c` that moves itself into the cgroup and then runs `program ARGS`.
    fn command(&self, program: &str, args: &[&str]) -> std::process::Command {
        let mut sh_args = vec![
            "-c",
            "echo $$ > \"$RINGCORN_TEST_CGROUP/cgroup.procs\" && exec \"$0\" \"$@\"",
            program,
        ];
        sh_args.extend_from_slice(args);
        let mut cmd = command_at(Path::new("/bin/sh"), &sh_args);
        cmd.env("RINGCORN_TEST_CGROUP", &self.dir);
        cmd
    }
}

impl Drop for RealCgroup {
    fn drop(&mut self) {
        // Its processes have exited; the kernel may take a moment to let the cgroup go.
        for _ in 0..100 {
            if fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "NOTICE: could not remove the test cgroup {}",
            self.dir.display()
        );
    }
}

#[test]
fn real_cgroup_with_one_cpu_starts_one_worker() {
    let cgroup = match RealCgroup::create() {
        Ok(cgroup) => cgroup,
        Err(why) => {
            eprintln!("NOTICE: real cgroup test skipped: {why}");
            return;
        }
    };
    // Can a process be moved in at all (a container may forbid it)?
    let probe = run_command(cgroup.command("true", &[]), &["(cgroup probe)"]);
    if !probe.status.success() {
        eprintln!(
            "NOTICE: real cgroup test skipped: cannot move a process into {}: {}",
            cgroup.dir.display(),
            String::from_utf8_lossy(&probe.stderr).trim()
        );
        return;
    }
    let server = Server::spawn_command(
        cgroup.command(binary_path(), &["--bind", "127.0.0.1:0", "hello"]),
        1,
    );
    let line = workers_line(&server);
    assert!(
        line.contains("Workers: 1 (auto: ") && line.contains(" cgroup v") && line.contains("→ 1)"),
        "{}",
        server.log()
    );
    server.assert_log_count("Booting worker", 1);
    assert_hello(&connect(server.addr()).get("/"));
    // The server must be gone before its cgroup can be removed.
    drop(server);
    drop(cgroup);
}
