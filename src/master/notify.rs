//! The systemd notify protocol (`Type=notify`), through the `sd-notify` crate: `READY=1` once
//! every worker is accepting, `STATUS=` lines, `RELOADING=1` with `MONOTONIC_USEC` on HUP and
//! `READY=1` after, `STOPPING=1`, `MAINPID=` when an upgrade hands over to a new master, and
//! `WATCHDOG=1` at half of `WATCHDOG_USEC`, sent only while every worker's heartbeat is
//! fresh (within `--timeout`): a server whose loops are stuck stops pinging, and systemd
//! restarts it.
//!
//! Without `NOTIFY_SOCKET` every call is a no-op.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// STATUS= is sent at most this often (when it changed).
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// The master's side of the protocol.
pub struct Notifier {
    enabled: bool,
    /// `WATCHDOG_USEC`, when systemd asks for pings.
    watchdog: Option<Duration>,
    last_ping: Option<Instant>,
    last_status: Option<(Instant, String)>,
    /// A new master started by an upgrade says nothing until the old one has handed over
    /// (told systemd the new MAINPID): systemd would not take its messages before.
    held: bool,
    /// This master handed over to a new one: it says nothing more.
    silent: bool,
}

impl Notifier {
    /// The protocol as the environment asks for it (`held` for a master started by an
    /// upgrade, until [`Self::release`]).
    pub fn from_env(held: bool) -> Notifier {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some();
        let watchdog = sd_notify::watchdog_enabled().filter(|d| !d.is_zero());
        Notifier {
            enabled,
            watchdog,
            last_ping: None,
            last_status: None,
            held,
            silent: false,
        }
    }

    /// The watchdog interval systemd asked for, if any.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }

    fn send(&mut self, states: &[NotifyState]) {
        if !self.enabled || self.held || self.silent {
            return;
        }
        if let Err(e) = sd_notify::notify(states) {
            tracing::warn!("cannot notify systemd (NOTIFY_SOCKET): {e}");
        }
    }

    /// Every worker is accepting (at start, or after a reload).
    pub fn ready(&mut self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
        self.last_status = Some((Instant::now(), status.to_string()));
    }

    /// SIGHUP: a reload begins.
    pub fn reloading(&mut self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[
                NotifyState::Reloading,
                now,
                NotifyState::Status("reloading"),
            ]),
            Err(e) => tracing::warn!("cannot read the monotonic clock for systemd: {e}"),
        }
    }

    /// A stop begins.
    pub fn stopping(&mut self, why: &str) {
        let status = format!("stopping: {why}");
        self.send(&[NotifyState::Stopping, NotifyState::Status(&status)]);
    }

    /// An upgrade handed over: `pid` is the main process now, and this one says no more.
    pub fn hand_over(&mut self, pid: u32) {
        let status = format!("upgraded: the new master is pid {pid}");
        self.send(&[NotifyState::MainPid(pid), NotifyState::Status(&status)]);
        self.silent = true;
    }

    /// The old master has handed over (or is gone): this one may speak.
    pub fn release(&mut self) {
        self.held = false;
    }

    pub fn is_held(&self) -> bool {
        self.held
    }

    /// Called every round of the master's loop: ping the watchdog when it is due and every
    /// worker's heartbeat is fresh (`fresh`), and send a changed STATUS= now and then.
    pub fn tick(&mut self, fresh: bool, status: impl FnOnce() -> String) {
        if !self.enabled || self.held || self.silent {
            return;
        }
        let now = Instant::now();
        if let Some(usec) = self.watchdog {
            let due = self.last_ping.is_none_or(|at| now >= at + usec / 2);
            if due && fresh {
                self.send(&[NotifyState::Watchdog]);
                self.last_ping = Some(now);
            }
        }
        if self
            .last_status
            .as_ref()
            .is_none_or(|(at, _)| now >= *at + STATUS_EVERY)
        {
            let status = status();
            if self.last_status.as_ref().is_none_or(|(_, s)| *s != status) {
                self.send(&[NotifyState::Status(&status)]);
            }
            self.last_status = Some((now, status));
        }
    }
}
