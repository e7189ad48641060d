//! The operator files in `contrib/` (systemd units, logrotate) pass
//! `scripts/check_contrib.sh`: `systemd-analyze verify`, the io_uring calls allowed by the
//! unit's system-call filter, and `logrotate -d`. Skipped with a notice where those tools
//! are missing, unless `RINGCORN_REQUIRE_TOOLS=1` (CI installs them).

use std::process::Command;

#[test]
fn contrib_files_pass_their_checks() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/check_contrib.sh");
    let out = Command::new("bash")
        .arg(script)
        .output()
        .expect("bash runs the check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() && stderr.contains("missing tools") {
        let required = std::env::var_os("RINGCORN_REQUIRE_TOOLS").is_some_and(|v| v == "1");
        assert!(!required, "RINGCORN_REQUIRE_TOOLS=1: {stderr}");
        eprintln!("NOTICE: contrib check skipped: {stderr}");
        return;
    }
    assert!(
        out.status.success(),
        "scripts/check_contrib.sh failed\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}"
    );
}
