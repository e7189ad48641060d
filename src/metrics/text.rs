//! The Prometheus text exposition format (version 0.0.4) of the server's counts.
//!
//! Written by hand rather than through a client library: the values live in the board, written
//! by other processes, and a library's registry would own atomic metrics of its own that every
//! scrape would have to be copied into. The format is small: `# HELP` and `# TYPE` once per
//! family, then its samples, grouped; label values escaped (`\\`, `\"`, `\n`).

use std::fmt::Write;
use std::time::Duration;

use super::{Counter, Counters, BUCKETS, BUCKET_BOUNDS};

/// Why a worker slot's worker was replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Restart {
    /// It exited or was killed (a crash, or `--timeout`).
    Died,
    /// It had served `--max-requests`.
    MaxRequests,
    /// A reload (SIGHUP) replaced it.
    Reload,
}

pub const RESTARTS: [(Restart, &str); 3] = [
    (Restart::Died, "died"),
    (Restart::MaxRequests, "max_requests"),
    (Restart::Reload, "reload"),
];

/// What one worker slot has counted, with the workers that served it before.
#[derive(Debug, Clone, Default)]
pub struct Slot {
    pub counters: Counters,
    /// The oldest heartbeat among its live workers (`None`: none is live).
    pub heartbeat_age: Option<Duration>,
    pub restarts: [u64; 3],
}

/// The whole server, as one scrape sees it.
#[derive(Debug, Clone)]
pub struct Snapshot<'a> {
    pub slots: &'a [Slot],
    /// Workers serving now, and how many are wanted.
    pub workers: usize,
    pub target: usize,
    pub uptime: Duration,
    /// Seconds since the Unix epoch when the server started.
    pub start_time: f64,
    pub version: &'a str,
    pub worker_class: &'a str,
}

/// One per-worker family drawn from [`Counter`]s: its name, type, help, and the counters
/// it shows, each with its label (`None`: the family has no label but `worker`).
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    label: &'static str,
    members: &'static [(Counter, &'static str)],
}

const FAMILIES: &[Family] = &[
    Family {
        name: "ringcorn_requests_total",
        kind: "counter",
        help: "Responses sent, by status class (the server's own refusals included).",
        label: "class",
        members: &[
            (Counter::Responses1xx, "1xx"),
            (Counter::Responses2xx, "2xx"),
            (Counter::Responses3xx, "3xx"),
            (Counter::Responses4xx, "4xx"),
            (Counter::Responses5xx, "5xx"),
        ],
    },
    Family {
        name: "ringcorn_requests_refused_total",
        kind: "counter",
        help: "Requests the server refused itself, by status (malformed, too large, too slow).",
        label: "status",
        members: &[
            (Counter::Refused400, "400"),
            (Counter::Refused408, "408"),
            (Counter::Refused413, "413"),
            (Counter::Refused414, "414"),
            (Counter::Refused417, "417"),
            (Counter::Refused431, "431"),
            (Counter::Refused501, "501"),
            (Counter::Refused505, "505"),
        ],
    },
    Family {
        name: "ringcorn_proxy_refused_total",
        kind: "counter",
        help: "Connections closed for their PROXY protocol header: from a peer not in \
               --proxy-allow-from, malformed, or not arrived in time.",
        label: "reason",
        members: &[
            (Counter::ProxyUntrusted, "untrusted"),
            (Counter::ProxyMalformed, "malformed"),
            (Counter::ProxyTimeout, "timeout"),
        ],
    },
    Family {
        name: "ringcorn_connections_accepted_total",
        kind: "counter",
        help: "Connections accepted.",
        label: "",
        members: &[(Counter::Accepted, "")],
    },
    Family {
        name: "ringcorn_tls_handshakes_total",
        kind: "counter",
        help: "TLS handshakes completed.",
        label: "",
        members: &[(Counter::TlsHandshakes, "")],
    },
    Family {
        name: "ringcorn_tls_failures_total",
        kind: "counter",
        help: "TLS connections closed before their handshake completed: a malformed or \
               refused handshake, a stalled one (counted as a header deadline too), plain \
               HTTP sent to a TLS port.",
        label: "",
        members: &[(Counter::TlsFailures, "")],
    },
    Family {
        name: "ringcorn_connections_open",
        kind: "gauge",
        help: "Connections open now.",
        label: "",
        members: &[(Counter::Open, "")],
    },
    Family {
        name: "ringcorn_connections_closed_by_deadline_total",
        kind: "counter",
        help: "Connections closed because a deadline passed: the request head's \
               (--header-timeout), the body's (--body-timeout), a send's (--send-timeout), \
               the keep-alive wait (--keep-alive).",
        label: "deadline",
        members: &[
            (Counter::DeadlineHeader, "header"),
            (Counter::DeadlineBody, "body"),
            (Counter::DeadlineSend, "send"),
            (Counter::DeadlineKeepAlive, "keep_alive"),
        ],
    },
    Family {
        name: "ringcorn_received_bytes_total",
        kind: "counter",
        help: "Bytes received from clients.",
        label: "",
        members: &[(Counter::BytesIn, "")],
    },
    Family {
        name: "ringcorn_sent_bytes_total",
        kind: "counter",
        help: "Bytes sent to clients.",
        label: "",
        members: &[(Counter::BytesOut, "")],
    },
    Family {
        name: "ringcorn_accept_pauses_total",
        kind: "counter",
        help: "Times a worker paused accepting: out of file descriptors, out of memory, \
               at --max-connections.",
        label: "reason",
        members: &[
            (Counter::PausedDescriptors, "descriptors"),
            (Counter::PausedMemory, "memory"),
            (Counter::PausedFull, "max_connections"),
        ],
    },
];

/// Render the snapshot.
pub fn render(s: &Snapshot<'_>) -> String {
    let mut out = String::with_capacity(4096 + s.slots.len() * 4096);
    for family in FAMILIES {
        header(&mut out, family.name, family.kind, family.help);
        for (i, slot) in s.slots.iter().enumerate() {
            for &(counter, value) in family.members {
                let v = slot.counters.get(counter);
                if family.label.is_empty() {
                    let _ = writeln!(out, "{}{{worker=\"{i}\"}} {v}", family.name);
                } else {
                    let _ = writeln!(
                        out,
                        "{}{{worker=\"{i}\",{}=\"{value}\"}} {v}",
                        family.name, family.label
                    );
                }
            }
        }
    }
    duration_histogram(&mut out, s.slots);
    header(
        &mut out,
        "ringcorn_worker_restarts_total",
        "counter",
        "Workers started to replace one: it died (or --timeout killed it), it had served \
         --max-requests, or a reload replaced it.",
    );
    for (i, slot) in s.slots.iter().enumerate() {
        for (restart, name) in RESTARTS {
            let v = slot.restarts[restart as usize];
            let _ = writeln!(
                out,
                "ringcorn_worker_restarts_total{{worker=\"{i}\",reason=\"{name}\"}} {v}"
            );
        }
    }
    header(
        &mut out,
        "ringcorn_worker_heartbeat_age_seconds",
        "gauge",
        "Seconds since the worker's loop last turned (it turns at least every 250 ms).",
    );
    for (i, slot) in s.slots.iter().enumerate() {
        if let Some(age) = slot.heartbeat_age {
            let _ = writeln!(
                out,
                "ringcorn_worker_heartbeat_age_seconds{{worker=\"{i}\"}} {}",
                age.as_secs_f64()
            );
        }
    }
    gauge(
        &mut out,
        "ringcorn_workers",
        "Workers serving now.",
        s.workers as f64,
    );
    gauge(
        &mut out,
        "ringcorn_workers_target",
        "Workers wanted (--workers, changed by SIGTTIN/SIGTTOU and reloads).",
        s.target as f64,
    );
    gauge(
        &mut out,
        "ringcorn_uptime_seconds",
        "Seconds since the server started.",
        s.uptime.as_secs_f64(),
    );
    gauge(
        &mut out,
        "ringcorn_start_time_seconds",
        "When the server started, in seconds since the Unix epoch.",
        s.start_time,
    );
    header(
        &mut out,
        "ringcorn_build_info",
        "gauge",
        "Always 1; the labels say which build is running.",
    );
    let _ = writeln!(
        out,
        "ringcorn_build_info{{version=\"{}\",worker_class=\"{}\"}} 1",
        escape(s.version),
        escape(s.worker_class)
    );
    out
}

fn duration_histogram(out: &mut String, slots: &[Slot]) {
    const NAME: &str = "ringcorn_request_duration_seconds";
    header(
        out,
        NAME,
        "histogram",
        "Time from a request's first byte received to its response queued for sending.",
    );
    for (i, slot) in slots.iter().enumerate() {
        let (buckets, sum, count) = slot.counters.histogram();
        let mut cumulative = 0u64;
        for (b, n) in buckets.iter().enumerate() {
            cumulative += n;
            if b + 1 < BUCKETS {
                let bound = BUCKET_BOUNDS[b];
                let _ = writeln!(
                    out,
                    "{NAME}_bucket{{worker=\"{i}\",le=\"{bound}\"}} {cumulative}"
                );
            } else {
                let _ = writeln!(out, "{NAME}_bucket{{worker=\"{i}\",le=\"+Inf\"}} {count}");
            }
        }
        let _ = writeln!(out, "{NAME}_sum{{worker=\"{i}\"}} {}", sum.as_secs_f64());
        let _ = writeln!(out, "{NAME}_count{{worker=\"{i}\"}} {count}");
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: f64) {
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}

/// A label value as the format wants it.
fn escape(value: &str) -> String {
    let mut s = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(slots: &[Slot]) -> String {
        render(&Snapshot {
            slots,
            workers: slots.len(),
            target: slots.len(),
            uptime: Duration::from_millis(1500),
            start_time: 1.5e9,
            version: "0.1.0",
            worker_class: "thread",
        })
    }

    #[test]
    fn every_family_is_typed_once_and_its_samples_follow_it() {
        let mut a = Slot::default();
        a.counters.add(Counter::Responses2xx, 7);
        a.counters.add(Counter::Refused431, 2);
        a.counters.observe(Duration::from_micros(300), 7);
        a.heartbeat_age = Some(Duration::from_millis(120));
        a.restarts[Restart::Died as usize] = 1;
        let text = snapshot(&[a, Slot::default()]);
        assert!(text.contains("ringcorn_requests_total{worker=\"0\",class=\"2xx\"} 7\n"));
        assert!(text.contains("ringcorn_requests_total{worker=\"1\",class=\"2xx\"} 0\n"));
        assert!(text.contains("ringcorn_requests_refused_total{worker=\"0\",status=\"431\"} 2\n"));
        assert!(text
            .contains("ringcorn_request_duration_seconds_bucket{worker=\"0\",le=\"0.00025\"} 0\n"));
        assert!(text
            .contains("ringcorn_request_duration_seconds_bucket{worker=\"0\",le=\"0.0005\"} 7\n"));
        assert!(
            text.contains("ringcorn_request_duration_seconds_bucket{worker=\"0\",le=\"+Inf\"} 7\n")
        );
        assert!(text.contains("ringcorn_request_duration_seconds_count{worker=\"0\"} 7\n"));
        assert!(text.contains("ringcorn_worker_restarts_total{worker=\"0\",reason=\"died\"} 1\n"));
        assert!(text.contains("ringcorn_worker_heartbeat_age_seconds{worker=\"0\"} 0.12\n"));
        assert!(!text.contains("ringcorn_worker_heartbeat_age_seconds{worker=\"1\"}"));
        assert!(text.contains("ringcorn_uptime_seconds 1.5\n"));
        assert!(text.contains("ringcorn_build_info{version=\"0.1.0\",worker_class=\"thread\"} 1\n"));
        // Each family's TYPE line comes once, before all of its samples.
        let mut seen = std::collections::HashSet::new();
        let mut current = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap_or_default().to_string();
                assert!(seen.insert(name.clone()), "{name} typed twice");
                current = name;
            } else if !line.starts_with('#') {
                assert!(
                    line.starts_with(&current),
                    "{line} outside its family {current}"
                );
            }
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
