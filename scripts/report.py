#!/usr/bin/env python3
"""Turn the raw numbers collected by scripts/bench.sh into BENCHMARKS.md and its SVG charts.

Inputs (all written by bench.sh into target/bench/raw/):
  meta.tsv       key<TAB>value lines: machine, versions, options, commands, notes
  runs.tsv       one row per recorded wrk run (sections throughput, sizes, scaling): server CPU
                 ticks before/after, the load generator's CPU ms, exit code, raw file name
  latency.tsv    one row per loadgen run (its JSON line is in the raw file)
  memory.tsv     one row per holdconns measurement (VmRSS before and while holding)
  slowread.tsv   one row per slow-read attack (VmRSS before, at peak, after; most connections
                 open); slowread/*.samples (ms, VmRSS kB, open connections every 0.5 s),
                 *.probes (the normal client's requests), *.csv and *.txt (slowhttptest's own)
  peak.tsv       VmHWM of each throughput server after its wrk and loadgen runs
  callgrind.tsv  Ir of callgrind_requests at N = 0 and N requests
  criterion.txt  `cargo bench --bench http` output
  */*.txt ...    wrk outputs, /proc/stat snapshots
Charts are drawn with gnuplot (terminal svg) into --charts.
"""
import argparse
import csv
import json
import os
import re
import shutil
import statistics
import subprocess
from pathlib import Path

OTHER_WORK_LIMIT = 0.05  # share of one core used by others on the measured cores: flag the run
MODES = {"plain": "unpipelined", "pipelined": "pipelined"}
TIME_UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}
PEER_ORDER = ["ringcorn", "ringcorn-process", "ringcorn-json", "ringcorn-epoll", "ringcorn-static", "nginx", "ceiling",
              "hyper-peer", "uring-peer", "gunicorn"]
LABEL = {"ringcorn": "ringcorn hello", "ringcorn-process": "ringcorn hello (process workers)", "ringcorn-json": "ringcorn json",
         "ringcorn-epoll": "ringcorn hello (epoll backend)", "ringcorn-static": "ringcorn static", "nginx": "nginx",
         "ceiling": "ceiling", "hyper-peer": "hyper-peer", "uring-peer": "uring-peer",
         "gunicorn": "gunicorn"}
# One colour and point type per peer, the same in every chart.
STYLE = {"ringcorn": ("#d62728", 7), "ringcorn-process": ("#e377c2", 6), "ringcorn-json": ("#ff9896", 5),
         "ringcorn-epoll": ("#bcbd22", 4), "ringcorn-static": ("#ff7f0e", 8), "nginx": ("#2ca02c", 9),
         "ceiling": ("#7f7f7f", 13), "hyper-peer": ("#1f77b4", 11), "uring-peer": ("#9467bd", 15),
         "gunicorn": ("#8c564b", 3)}
# ringcorn's own variants: compared with the peers, not among them, in the summary.
RINGCORN_VARIANTS = ("ringcorn", "ringcorn-process", "ringcorn-json", "ringcorn-epoll", "ringcorn-static")
SIZE_LABEL = {13: "13 B", 4096: "4 KiB", 65536: "64 KiB", 1048576: "1 MiB", 16777216: "16 MiB"}
# What the size sweep and the slow-read attack serve: the `bytes` app, or the same bytes as files.
SIZE_PEER_LABEL = {"ringcorn": "ringcorn bytes", "ringcorn-epoll": "ringcorn bytes (epoll backend)",
                   "ringcorn-static": "ringcorn static", "nginx": "nginx static",
                   "hyper-peer": "hyper-peer bytes", "uring-peer": "uring-peer bytes"}
# Issue 11's targets, server CPU per request ÷ nginx's: static files at every size, the `bytes`
# app at 1 MiB; and RSS per slow reader ÷ nginx's.
STATIC_CPU_TARGET = 1.0
BYTES_CPU_TARGET = (1048576, 0.8)
SLOW_RSS_TARGET = 2.0


# ---------------------------------------------------------------- parsing
def parse_time_us(value, unit):
    return float(value) * TIME_UNITS_US[unit]


def parse_wrk(text):
    """The figures we need from wrk's output (None where wrk did not print them)."""
    out = {"rps": None, "requests": None, "p50": None, "p99": None, "bytes_per_s": None,
           "connect": 0, "read": 0, "write": 0, "timeout": 0, "non2xx": 0}
    if m := re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M):
        out["rps"] = float(m.group(1))
    if m := re.search(r"^Transfer/sec:\s+([\d.]+)([KMG]?B)", text, re.M):
        out["bytes_per_s"] = float(m.group(1)) * {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}[m.group(2)]
    if m := re.search(r"^\s*(\d+) requests in ", text, re.M):
        out["requests"] = int(m.group(1))
    for pct, key in (("50", "p50"), ("99", "p99")):
        if m := re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.M):
            # wrk 4.1.0 prints 0.00us for a percentile its coordinated-omission correction lost
            # (it adds samples below the recorded minimum; seen with pipelining): no figure.
            t = parse_time_us(m.group(1), m.group(2))
            out[key] = t if t > 0 else None
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text):
        out.update(connect=int(m.group(1)), read=int(m.group(2)),
                   write=int(m.group(3)), timeout=int(m.group(4)))
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
        out["non2xx"] = int(m.group(1))
    return out


def parse_cpu_list(text):
    """taskset-style list "0,2-3" -> [0, 2, 3]."""
    cpus = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def read_procstat(path):
    """/proc/stat cpuN lines -> {N: (busy ticks, total ticks)}; busy excludes idle, iowait, steal."""
    cores = {}
    for line in path.read_text().splitlines():
        name, *fields = line.split()
        user, nice, system, idle, iowait, irq, softirq, steal = map(int, fields[:8])
        busy = user + nice + system + irq + softirq
        cores[int(name[3:])] = (busy, busy + idle + iowait + steal)
    return cores


def core_load(stem, cpus):
    """(busy ticks, total ticks, number of cores) of CPUS between the two snapshots of STEM."""
    try:
        before = read_procstat(Path(f"{stem}.procstat-before"))
        after = read_procstat(Path(f"{stem}.procstat-after"))
    except (OSError, ValueError):
        return None
    cpus = [c for c in cpus if c in after and c in before]
    busy = sum(after[c][0] - before[c][0] for c in cpus)
    total = sum(after[c][1] - before[c][1] for c in cpus)
    return (busy, total, len(cpus)) if total > 0 and cpus else None


def read_procs(path):
    """bench.sh's process snapshot -> {pid: (ppid, ticks incl. reaped children, last cpu)}."""
    procs = {}
    for line in path.read_text().splitlines():
        f = line.split()
        if len(f) == 4 and all(x.lstrip("-").isdigit() for x in f):
            procs[int(f[0])] = (int(f[1]), int(f[2]), int(f[3]))
    return procs


def other_ticks(stem, cpus, bench_pid):
    """CPU ticks that processes other than bench.sh's own (servers, load generators: all its
    descendants) and kernel threads spent during one run, on the measured CPUs (by the CPU each
    last ran on). A process that ended during the run shows in its parent's reaped-children time,
    its time before the run subtracted. None without snapshots."""
    try:
        before = read_procs(Path(f"{stem}.procs-before"))
        after = read_procs(Path(f"{stem}.procs-after"))
    except OSError:
        return None
    if not before or not after or bench_pid is None:
        return None
    parent = {pid: v[0] for pid, v in before.items()}
    parent.update({pid: v[0] for pid, v in after.items()})

    def ours_or_kernel(pid):
        seen = 0
        while pid > 1 and seen < 64:
            if pid in (bench_pid, 2) or parent.get(pid) == 2:
                return True
            pid = parent.get(pid, 0)
            seen += 1
        return False

    cpus = set(cpus)
    total = 0
    for pid, (_, ticks, cpu) in after.items():
        if ours_or_kernel(pid) or cpu not in cpus:
            continue
        total += ticks - before[pid][1] if pid in before else ticks
    for pid, (ppid, ticks, cpu) in before.items():
        if pid not in after and not ours_or_kernel(pid) and cpu in cpus:
            total -= ticks  # its parent's reaped-children time now holds its whole life
    return max(0, total)


def add_core_figures(r, stem, server_cpus, load_cpus, clk_tck, bench_pid=None):
    """Server CPU, load-generator CPU and how busy the cores were, for one run."""
    ticks = r["ticks_after"] - r["ticks_before"]
    # A server that died during the run took its CPU time with it: no figure.
    r["cpu_s"] = ticks / clk_tck if r["alive"] and ticks >= 0 else None
    srv = core_load(stem, server_cpus)
    load = core_load(stem, load_cpus)
    union = core_load(stem, sorted(set(server_cpus) | set(load_cpus)))
    r["srv_busy"] = srv[0] / srv[1] if srv else None
    r["load_busy"] = load[0] / load[1] if load else None
    r["load_cpu_s"] = r["load_ms"] / 1000
    # Others: CPU time other processes spent on the measured cores (server's and load
    # generator's), as a share of one core over the run.
    others = other_ticks(stem, sorted(set(server_cpus) | set(load_cpus)), bench_pid)
    if union and others is not None:
        r["others"] = others / (union[1] / union[2])
    elif union and r["cpu_s"] is not None:
        # Older raw data without process snapshots: busy time of the cores not spent by the
        # server or the load generator.
        per_core = union[1] / union[2]
        other = union[0] - ticks - r["load_ms"] * clk_tck / 1000
        r["others"] = max(0.0, other) / per_core
    else:
        r["others"] = None


def load_tsv(path):
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def load_runs(raw_dir, clk_tck, load_cpus, bench_pid=None):
    runs = []
    for row in load_tsv(raw_dir / "runs.tsv"):
        text = (raw_dir / row["raw"]).read_text(errors="replace")
        r = parse_wrk(text)
        r.update(section=row["section"], round=int(row["round"]), id=row["id"], peer=row["peer"],
                 app=row["app"], workers=int(row["workers"]), cpus=row["cpus"], mode=row["mode"],
                 conns=int(row["conns"]), path=row["path"], secs=int(row["secs"]),
                 ticks_before=int(row["ticks_before"]), ticks_after=int(row["ticks_after"]),
                 load_ms=int(row["load_ms"]), rc=int(row["wrk_rc"]), alive=row["alive_after"] == "1",
                 restarts=int(row["restarts"]), raw=row["raw"])
        add_core_figures(r, raw_dir / row["raw"].removesuffix(".txt"), parse_cpu_list(r["cpus"]),
                         load_cpus, clk_tck, bench_pid)
        r["cpu_us_per_req"] = (r["cpu_s"] * 1e6 / r["requests"]
                               if r["cpu_s"] is not None and r["requests"] else None)
        runs.append(r)
    return runs


def load_latency(raw_dir, clk_tck, server_cpus, load_cpus, warmup, bench_pid=None):
    out = []
    for row in load_tsv(raw_dir / "latency.tsv"):
        r = {"round": int(row["round"]), "peer": row["peer"], "rate": int(row["rate"]),
             "conns": int(row["conns"]), "secs": int(row["secs"]), "rc": int(row["rc"]),
             "alive": row["alive_after"] == "1", "raw": row["raw"], "restarts": 0,
             "ticks_before": int(row["ticks_before"]), "ticks_after": int(row["ticks_after"]),
             "load_ms": int(row["load_ms"]), "json": None}
        path = raw_dir / row["raw"]
        text = path.read_text(errors="replace") if path.exists() else ""
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    r["json"] = json.loads(line)
                except ValueError:
                    pass
        err = path.with_suffix(".stderr")
        r["stderr"] = err.read_text(errors="replace").strip() if err.exists() else ""
        add_core_figures(r, raw_dir / row["raw"].removesuffix(".json"), server_cpus, load_cpus, clk_tck,
                         bench_pid)
        # Server CPU as a share of one core at this fixed rate (warm-up included: same rate).
        r["cpu_share"] = r["cpu_s"] / (r["secs"] + warmup) if r["cpu_s"] is not None else None
        out.append(r)
    return out


def load_slowread(raw_dir, probe_bytes):
    """slowread.tsv rows with their figures: RSS per slow reader, the normal client's probes,
    slowhttptest's own count of connected sockets and its final status."""
    out = []
    for row in load_tsv(raw_dir / "slowread.tsv"):
        r = dict(row)
        for k in ("round", "conns", "secs", "rate", "send_timeout", "rss_before_kb", "rss_peak_kb",
                  "open_peak", "rss_after_kb", "samples", "slow_rc", "tcp_mem_before_pages",
                  "tcp_mem_peak_pages", "page_size"):
            r[k] = int(row[k]) if row.get(k, "").lstrip("-").isdigit() else None
        r["alive"] = row.get("alive_after") == "1"
        grow = (r["rss_peak_kb"] - r["rss_before_kb"]) * 1024 if None not in (r["rss_peak_kb"], r["rss_before_kb"]) else None
        r["growth"] = grow
        r["per_conn"] = grow / r["open_peak"] if grow is not None and r["open_peak"] else None
        # The kernel's TCP memory (every socket's buffers, /proc/net/sockstat): older raw data has none.
        kgrow = ((r["tcp_mem_peak_pages"] - r["tcp_mem_before_pages"]) * r["page_size"]
                 if None not in (r.get("tcp_mem_peak_pages"), r.get("tcp_mem_before_pages"), r.get("page_size"))
                 else None)
        r["kernel_per_conn"] = kgrow / r["open_peak"] if kgrow is not None and r["open_peak"] else None
        stem = raw_dir / row["raw"]
        probes = []
        pf = Path(f"{stem}.probes")
        if pf.exists():
            for line in pf.read_text().splitlines():
                f = line.split()
                if len(f) == 5:
                    try:
                        probes.append((int(f[0]), int(f[1]), f[2], int(f[3]), float(f[4]) * 1e6))
                    except ValueError:
                        pass
        r["probes"] = probes
        r["probe_ok"] = [p for p in probes if p[1] == 0 and p[2] == "200" and p[3] == probe_bytes]
        r["probe_p50"] = median_or_none([p[4] for p in r["probe_ok"]])
        r["probe_max"] = max((p[4] for p in r["probe_ok"]), default=None)
        # slowhttptest's CSV, one line a second: Seconds,Closed,Pending,Connected,Service Available
        # (1.8.2; other versions have an Error column too): read by name
        r["tool_connected"] = None
        csvf = Path(f"{stem}.csv")
        if csvf.exists():
            try:
                rows = list(csv.DictReader(csvf.read_text(errors="replace").splitlines()))
                vals = [int(x["Connected"]) for x in rows if (x.get("Connected") or "").strip().isdigit()]
                r["tool_connected"] = max(vals) if vals else None
            except (csv.Error, KeyError):
                pass
        txt = Path(f"{stem}.txt")
        # Its output is coloured (ANSI escapes): "Exit status: Hit test time limit" once they are gone.
        text = re.sub(r"\x1b\[[0-9;]*m", "", txt.read_text(errors="replace")) if txt.exists() else ""
        m = re.findall(r"^\s*(?:Exit )?status:\s+(.+?)\s*$", text, re.M)
        r["tool_status"] = m[-1] if m else None
        out.append(r)
    return out


TLS_TESTS = (("keepalive", "keep-alive requests"), ("full", "full handshakes (TLS 1.3)"),
             ("resumed", "resumed handshakes (s_time -reuse)"), ("resumed12", "resumed handshakes (TLS 1.2)"))
# Issue 12's targets against nginx: handshakes ≥ 1.5× (here: server CPU per handshake ≤ 1/1.5),
# keep-alive CPU per request ≤ nginx's, memory per idle TLS connection ≤ nginx's.
TLS_HANDSHAKE_TARGET = 1 / 1.5


def load_tls(raw_dir, clk_tck):
    """tls.tsv rows: per run, the count and its rate, server CPU µs each, or bytes per idle connection."""
    out = []
    for row in load_tsv(raw_dir / "tls.tsv"):
        r = {"round": int(row["round"]), "peer": row["peer"], "test": row["test"], "count": int(row["count"] or 0),
             "secs": int(row["secs"] or 0), "rc": int(row["rc"] or 0), "raw": row["raw"]}
        ticks = int(row["ticks_after"]) - int(row["ticks_before"])
        r["rate"] = r["count"] / r["secs"] if r["secs"] else None
        r["cpu_us"] = ticks / clk_tck * 1e6 / r["count"] if r["count"] and r["test"] != "idle" else None
        grow = (int(row["rss_after_kb"]) - int(row["rss_before_kb"])) * 1024
        r["per_idle"] = grow / r["count"] if r["test"] == "idle" and r["count"] else None
        out.append(r)
    return out


def slowread_problems(r):
    p = []
    if r["conns"] and (r["open_peak"] or 0) < 0.95 * r["conns"]:
        p.append(f"only {r['open_peak']} of {r['conns']} open (round {r['round']})")
    if r["slow_rc"]:
        p.append(f"slowhttptest exit {r['slow_rc']} (round {r['round']})")
    if r["tool_status"] and "time limit" not in r["tool_status"]:
        p.append(f"slowhttptest: {r['tool_status']} (round {r['round']})")
    failed = len(r["probes"]) - len(r["probe_ok"])
    if failed:
        p.append(f"{failed} of {len(r['probes'])} probes failed (round {r['round']})")
    if not r["probes"]:
        p.append(f"no probes (round {r['round']})")
    if not r["alive"]:
        p.append(f"server died (round {r['round']})")
    return p


def latency_problems(r):
    p = []
    j = r["json"]
    if r["rc"] != 0:
        p.append(f"loadgen exit {r['rc']}")
    if j is None:
        p.append("no result from loadgen" + (f" ({r['stderr'].splitlines()[-1][:120]})" if r["stderr"] else ""))
    else:
        if j.get("errors"):
            p.append(f"errors {j['errors']}")
        sent, done = j.get("sent", 0), j.get("completed", 0)
        if sent and done < sent:
            p.append(f"{sent - done} of {sent} not completed")
        if j.get("achieved_rps") is not None and j["achieved_rps"] < 0.95 * r["rate"]:
            p.append(f"achieved {fmt_rate(j['achieved_rps'])}/s of {fmt_rate(r['rate'])}/s")
    if not r["alive"]:
        p.append("server died")
    return p


def problems(r):
    """Human-readable list of what went wrong in one wrk run (empty when nothing did)."""
    p = []
    if r["non2xx"]:
        p.append(f"non-2xx/3xx {r['non2xx']}")
    for k in ("connect", "read", "write", "timeout"):
        if r[k]:
            p.append(f"{k} errors {r[k]}")
    if r["rc"] != 0:
        p.append(f"wrk exit {r['rc']}")
    if r["rps"] is None or r["requests"] is None:
        p.append("no result from wrk")
    elif r["requests"] == 0:
        p.append("0 requests")
    if not r["alive"]:
        p.append("server died")
    return p


def parse_criterion(text):
    """[(name, (low, estimate, high) in ns, throughput text)] from criterion's output."""
    units = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}
    out, name = [], None
    num = r"([\d.]+)\s*(ps|ns|µs|us|ms|s)"
    for line in text.splitlines():
        if line and not line[0].isspace() and not line.startswith(("Benchmarking", "Found", "Gnuplot",
                                                                     "Running", "Compiling", "Finished",
                                                                     "warning", "WARNING")):
            name = line.split()[0]
        m = re.search(rf"time:\s+\[{num}\s+{num}\s+{num}\]", line)
        if m and name:
            vals = [float(m.group(i)) * units[m.group(i + 1)] for i in (1, 3, 5)]
            out.append([name, tuple(vals), None])
        m = re.search(r"thrpt:\s+\[\S+ \S+ (\S+ \S+) \S+ \S+\]", line)
        if m and out and out[-1][2] is None:
            out[-1][2] = m.group(1)
    return out


# ---------------------------------------------------------------- formatting
def fmt_rate(v):
    if v is None:
        return "—"
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e3:
        return f"{v / 1e3:.1f}k"
    return f"{v:.0f}"


def pct(v):
    return "—" if v is None else f"{v * 100:.0f}%"


def fmt_cpu(v):
    if v is None:
        return "—"
    return f"{v:.2f}" if v < 100 else f"{v:.0f}"


def fmt_lat(us):
    if us is None:
        return "n/a"
    if us >= 1e6:
        return f"{us / 1e6:.2f} s"
    if us >= 1e4:
        return f"{us / 1e3:.1f} ms"
    if us >= 1e3:
        return f"{us / 1e3:.2f} ms"
    return f"{us:.0f} µs"


def fmt_bytes(b):
    if b is None:
        return "—"
    if abs(b) >= 1024 * 1024:
        return f"{b / 1048576:.1f} MiB"
    if abs(b) >= 10 * 1024:
        return f"{b / 1024:.0f} KiB"
    if abs(b) >= 1024:
        return f"{b / 1024:.1f} KiB"
    return f"{b:.0f} B"


def fmt_bps(b):
    if b is None:
        return "—"
    if b >= 1e9:
        return f"{b / 1e9:.2f} GB/s"
    if b >= 1e7:
        return f"{b / 1e6:.0f} MB/s"
    if b >= 1e6:
        return f"{b / 1e6:.1f} MB/s"
    return f"{b / 1e3:.0f} kB/s"


def fmt_ns(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.1f} ns"


def clean(values):
    return [v for v in values if v is not None]


def med_range(values, fmt):
    values = clean(values)
    if not values:
        return "—"
    med = fmt(statistics.median(values))
    if len(values) == 1 or min(values) == max(values):
        return med
    return f"{med} ({fmt(min(values))}–{fmt(max(values))})"


def median_or_none(values):
    values = clean(values)
    return statistics.median(values) if values else None


def stats3(values):
    """(median, min, max) or None."""
    values = clean(values)
    return (statistics.median(values), min(values), max(values)) if values else None


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def and_list(items):
    """`a`, `a and b`, `a, b and c`."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def fmt_ratio(v):
    if v is None:
        return "—"
    if v < 0.1:
        return f"×{v:.2g}"
    return f"×{v:.2f}" if v < 10 else f"×{v:.1f}" if v < 100 else f"×{v:.0f}"


def errors_cell(errs):
    return "**" + "; ".join(errs) + "**" if errs else "none"


def summarize(errs):
    """Merge 'read errors 12', 'read errors 3' ... into 'read errors 15 (2 runs)'."""
    counts, runs = {}, {}
    for e in errs:
        m = re.fullmatch(r"(.*?) (\d+)", e)
        key, n = (m.group(1), int(m.group(2))) if m else (e, 0)
        counts[key] = counts.get(key, 0) + n
        runs[key] = runs.get(key, 0) + 1
    out = []
    for key in counts:
        n = f" {counts[key]}" if counts[key] else ""
        out.append(f"{key}{n}" + (f" ({runs[key]} runs)" if runs[key] > 1 else ""))
    return out


def ordered(peers):
    return [p for p in PEER_ORDER if p in peers]


# ---------------------------------------------------------------- charts (gnuplot)
def short_num(v):
    """Axis label: 0.5, 2, 50, 200k, 1.5M."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:g}{suffix}"
    return f"{v:g}"


def short_us(v):
    """Axis label for microseconds: 50 µs, 2 ms, 1 s."""
    if v >= 1e6:
        return f"{v / 1e6:g} s"
    if v >= 1e3:
        return f"{v / 1e3:g} ms"
    return f"{v:g} µs"


def log_tics(lo, hi, fmt=short_num):
    """gnuplot `set ytics (...)` for a log axis over [lo, hi]: 1-2-5 steps, or decades if wide."""
    import math
    k0, k1 = math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1
    span = math.log10(hi / lo)
    mults = ((1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9) if span <= 1 else (1, 2, 5) if span <= 3.5
             else (1, 3) if span <= 5 else (1,))
    vals = [m * 10.0 ** k for k in range(k0, k1 + 1) for m in mults]
    vals = [v for v in vals if lo <= v <= hi]
    return "set ytics (" + ", ".join(f'"{fmt(float(f"{v:.6g}"))}" {v:.6g}' for v in vals) + ")"


class Charts:
    def __init__(self, out_dir, work_dir, subtitle):
        self.out_dir, self.work = out_dir, work_dir
        self.work.mkdir(parents=True, exist_ok=True)
        self.gnuplot = shutil.which("gnuplot")
        self.subtitle = subtitle
        self.made, self.failed = [], []

    @staticmethod
    def q(s):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

    def header(self, name, width=900, height=520):
        return [
            f'set terminal svg size {width},{height} dynamic enhanced font "Helvetica,13" '
            'background rgb "white"',
            f"set output {self.q(str(self.out_dir / name))}",
            "set encoding utf8",
            "set grid ytics mytics lc rgb '#dddddd' lw 1, lc rgb '#f0f0f0' lw 1",
            "set border 3; set tics nomirror",
            "set key outside right top vertical Left reverse noenhanced",
            "set style line 100 lc rgb '#444444'",
        ]

    def write_dat(self, name, rows):
        path = self.work / name
        path.write_text("\n".join("\t".join(str(c) for c in row) for row in rows) + "\n")
        return path

    def run(self, name, lines):
        """Run gnuplot on LINES; returns the chart's file name, or None."""
        script = self.work / (name.removesuffix(".svg") + ".gp")
        script.write_text("\n".join(lines) + "\n")
        if not self.gnuplot:
            self.failed.append(f"{name}: gnuplot not installed")
            return None
        res = subprocess.run([self.gnuplot, str(script)], capture_output=True, text=True)
        if res.returncode != 0 or not (self.out_dir / name).exists():
            self.failed.append(f"{name}: gnuplot failed: {res.stderr.strip()[:300]}")
            return None
        self.made.append(name)
        return name

    def lines_chart(self, name, title, xlabel, ylabel, series, logx=False, logy=None, xtics=None,
                    panels=None, width=None, height=520, labels=None, yfmt=short_num):
        """series (or, with panels, [(panel title, series)]): [(peer, [(x, med, lo, hi)])]."""
        panels = panels or [(title, series)]
        n = len(panels)
        lines = self.header(name, width or (520 * n + 260 if n > 1 else 900), height)
        if n > 1:
            lines.append(f"set multiplot layout 1,{n} title {self.q(title + chr(10) + self.subtitle)} "
                         "font ',14'")
        for idx, panel in enumerate(panels):
            ptitle, ser = panel[0], panel[1]
            ylab = panel[2] if len(panel) > 2 else ylabel
            ser = [(p, pts) for p, pts in ser if pts]
            if not ser:
                continue
            ys = [v for _, pts in ser for pt in pts for v in pt[1:] if v]
            use_log_y = logy if logy is not None else (min(ys) > 0 and max(ys) / min(ys) > 8)
            lines.append("unset logscale")
            lines.append("set ytics autofreq")
            if logx:
                lines.append("set logscale x 2")
            if use_log_y:
                lines.append("set logscale y 10")
                lo, hi = min(ys) / 1.6, max(ys) * 1.6
                lines.append(f"set yrange [{lo}:{hi}]")
                lines.append(log_tics(lo, hi, yfmt))
            else:
                lines.append("set yrange [0:*]")
                # Linear tics 200k apart near 1M need one decimal ("1.2M"), not "1M" twice.
                lines.append("set format y '%.1s%c'" if max(ys) >= 1e6 else
                             "set format y '%.0s%c'" if max(ys) >= 1000 else "set format y '%g'")
            if xtics:
                lines.append("set xtics (" + ", ".join(f"{self.q(lbl)} {x}" for x, lbl in xtics) + ")")
            xs = sorted({pt[0] for _, pts in ser for pt in pts})
            if logx and xs:
                lines.append(f"set xrange [{xs[0] / 1.6}:{xs[-1] * 1.6}]")
            elif xs:
                pad = max(0.3, (xs[-1] - xs[0]) * 0.08)
                lines.append(f"set xrange [{xs[0] - pad}:{xs[-1] + pad}]")
            lines.append(f"set xlabel {self.q(xlabel)}")
            if use_log_y and "log" not in ylab:
                ylab += " (log scale)"
            lines.append(f"set ylabel {self.q(ylab)}")
            lines.append(f"set title {self.q(ptitle if n > 1 else title + chr(10) + self.subtitle)}")
            if n > 1 and idx < n - 1:
                lines.append("unset key")
            else:
                # Drawn in reverse, key inverted: ringcorn comes first in the key and on top.
                lines.append("set key outside right top vertical Left reverse noenhanced invert")
            plots = []
            for p, pts in reversed(ser):
                dat = self.write_dat(f"{name.removesuffix('.svg')}-{idx}-{p}.dat", sorted(pts))
                color, pt = STYLE.get(p, ("#000000", 1))
                lbl = (labels or {}).get(p) or LABEL.get(p, p)
                plots.append(f"{self.q(str(dat))} using 1:2:3:4 with yerrorlines lw 2 lc rgb '{color}' "
                             f"pt {pt} ps 1.1 title {self.q(lbl)}")
            lines.append("plot " + ", \\\n     ".join(plots))
        if n > 1:
            lines.append("unset multiplot")
        return self.run(name, lines)

    def bar_chart(self, name, title, ylabel, groups, series_names, data, logy=None, panels=None,
                  width=None, height=520, colors=None, yfmt=short_num):
        """Clustered bars with min–max error bars.
        groups: x categories (labels); series_names: one bar per series within a group;
        data[(group, series)] = (med, lo, hi) or None. With panels: [(title, ylabel, groups,
        series_names, data, logy)]."""
        panels = panels or [(title, ylabel, groups, series_names, data, logy)]
        n = len(panels)
        lines = self.header(name, width or (520 * n + 200 if n > 1 else 900), height)
        if n > 1:
            lines.append(f"set multiplot layout 1,{n} title {self.q(title + chr(10) + self.subtitle)} "
                         "font ',14'")
        for idx, (ptitle, ylab, grp, sers, dat, lg) in enumerate(panels):
            vals = [v for v in (dat.get((g, s)) for g in grp for s in sers) if v]
            if not vals:
                continue
            ys = [x for v in vals for x in v if x and x > 0]
            use_log = lg if lg is not None else (min(ys) > 0 and max(ys) / min(ys) > 30)
            rows = []
            for g in grp:
                row = [self.q(g)]
                for s in sers:
                    v = dat.get((g, s))
                    row.extend(v if v else ("NaN", "NaN", "NaN"))
                rows.append(row)
            datf = self.write_dat(f"{name.removesuffix('.svg')}-{idx}.dat", rows)
            lines += ["unset logscale", "set style data histograms",
                      "set style histogram errorbars gap 1.5 lw 1",
                      "set style fill solid 0.85 border -1", "set boxwidth 0.9",
                      "set xtics rotate by 25 right noenhanced", "set bars front"]
            if use_log:
                lo = min(ys)
                lines.append("set logscale y 10")
                lines.append(f"set yrange [{lo / 2}:{max(ys) * 2}]")
                lines.append(log_tics(lo / 2, max(ys) * 2, yfmt))
            else:
                lines.append(f"set yrange [0:{max(ys) * 1.15}]")
                lines.append("set ytics autofreq")
                lines.append("set format y '%.0s%c'" if max(ys) >= 1000 else "set format y '%g'")
            lines.append(f"set ylabel {self.q(ylab + (' (log scale)' if use_log and 'log' not in ylab else ''))}")
            lines.append("unset xlabel")
            lines.append(f"set title {self.q(ptitle if n > 1 else ptitle + chr(10) + self.subtitle)}")
            if len(sers) == 1:
                lines.append("unset key")
            else:
                lines.append("set key outside right top vertical Left reverse noenhanced")
            plots = []
            for i, s in enumerate(sers):
                c = 2 + 3 * i
                color = (colors or {}).get(s) or STYLE.get(s, ("#4c72b0", 0))[0]
                xt = ":xtic(1)" if i == 0 else ""
                plots.append(f"{self.q(str(datf))} using {c}:{c + 1}:{c + 2}{xt} lc rgb '{color}' "
                             f"title {self.q(LABEL.get(s, s))}")
            lines.append("plot " + ", \\\n     ".join(plots))
        if n > 1:
            lines.append("unset multiplot")
        return self.run(name, lines)


# ---------------------------------------------------------------- report
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--raw", required=True, type=Path, help="bench.sh's raw directory")
    ap.add_argument("--out", required=True, type=Path, help="the Markdown report to write")
    ap.add_argument("--charts", required=True, type=Path, help="directory for the SVG charts")
    args = ap.parse_args()
    raw = args.raw

    meta, notes, cmds, responses = {}, [], {}, {}
    for line in (raw / "meta.tsv").read_text().splitlines():
        key, _, value = line.partition("\t")
        if key == "note":
            # The peers' one start-up line on stderr is no news.
            if not re.search(r"logged 1 line\(s\) .*the last: `listening on 127\.0\.0\.1:\d+`$", value):
                notes.append(value)
        elif key.startswith("cmd_"):
            cmds[key[4:]] = value
        elif key.startswith("response_"):
            status, _, size = value.partition("\t")
            responses[key[9:]] = (status, size)
        else:
            meta[key] = value
    clk = int(meta["clk_tck"])
    load_cpus = parse_cpu_list(meta["cpus_load"])
    server_cpus = parse_cpu_list(meta["cpus_server"])
    sections = meta["sections"].split(",")
    depth = meta["depth"]
    rounds = int(meta["rounds"])
    quick = meta.get("quick") == "1"

    bench_pid = int(meta["bench_pid"]) if meta.get("bench_pid") else None
    runs = load_runs(raw, clk, load_cpus, bench_pid)
    lat = load_latency(raw, clk, server_cpus, load_cpus, int(meta.get("latency_warmup", 0)), bench_pid)
    mem = load_tsv(raw / "memory.tsv")
    slow_probe = meta.get("slow_probe", "/13")
    slow = load_slowread(raw, int(slow_probe.lstrip("/")) if slow_probe.lstrip("/").isdigit() else 13)
    peak = load_tsv(raw / "peak.tsv")
    tls = load_tls(raw, clk)
    cg = load_tsv(raw / "callgrind.tsv")
    crit_path = raw / "criterion.txt"
    crit = parse_criterion(crit_path.read_text(errors="replace")) if crit_path.exists() else []

    # Paths in the report are relative to it.
    args.charts.mkdir(parents=True, exist_ok=True)
    rel_charts = os.path.relpath(args.charts, args.out.parent)
    for old in args.charts.glob("*.svg"):
        old.unlink()
    cpu_name = re.sub(r"\s+", " ", meta["cpu"]).strip()
    subtitle = (f"{cpu_name}, {meta['cores']} cores, Linux {meta['kernel']}; {meta['date'][:10]}, "
                f"commit {meta['commit'].split()[0]}; median of {rounds} round(s), bars: min–max")
    charts = Charts(args.charts, raw / "charts", subtitle)

    md = []
    w = md.append

    def img(name, alt):
        if name:
            w(f"![{alt}]({rel_charts}/{name})")
            w("")

    def sel(section, **kw):
        return [r for r in runs if r["section"] == section and all(r[k] == v for k, v in kw.items())]

    # ------------------------------------------------------------ medians used by the summary
    tp_peers = ordered({r["peer"] for r in runs if r["section"] == "throughput"})
    conns = sorted({r["conns"] for r in runs if r["section"] == "throughput"})
    ref_c = 64 if 64 in conns else (conns[len(conns) // 2] if conns else None)

    def tp_med(peer, mode, c, key):
        return median_or_none([r[key] for r in sel("throughput", peer=peer, mode=mode, conns=c)])

    mem_rows = {}
    for row in mem:
        held = int(row["held"])
        per = ((int(row["rss_after_kb"]) - int(row["rss_before_kb"])) * 1024 / held) if held else None
        mem_rows.setdefault(row["peer"], []).append((row, per))
    mem_med = {p: median_or_none([per for _, per in v]) for p, v in mem_rows.items()}

    size_runs = sel("sizes")

    def size_of(r):
        return int(r["path"].lstrip("/"))

    def size_cpu_ratios(peer, size):
        """Per round, PEER's server CPU per request ÷ nginx's at SIZE: each round's pair ran back
        to back, so the paired ratio is what the machine's drift disturbs least."""
        out = []
        for rnd in sorted({r["round"] for r in size_runs}):
            a = [r["cpu_us_per_req"] for r in size_runs if r["peer"] == peer and r["round"] == rnd and size_of(r) == size]
            b = [r["cpu_us_per_req"] for r in size_runs if r["peer"] == "nginx" and r["round"] == rnd and size_of(r) == size]
            if a and b and a[0] is not None and b[0]:
                out.append(a[0] / b[0])
        return out

    slow_by_peer = {}
    for r in slow:
        slow_by_peer.setdefault(r["peer"], []).append(r)

    def slow_rss_ratios(peer):
        """Per round, PEER's RSS growth per slow reader ÷ nginx's."""
        out = []
        for rnd in sorted({r["round"] for r in slow}):
            a = [r["per_conn"] for r in slow_by_peer.get(peer, []) if r["round"] == rnd]
            b = [r["per_conn"] for r in slow_by_peer.get("nginx", []) if r["round"] == rnd]
            if a and b and a[0] is not None and b[0] is not None and b[0] > 0:
                out.append(a[0] / b[0])
        return out

    def verdict(values, limit):
        m = median_or_none(values)
        return "—" if m is None else ("met" if m <= limit else "**not met**")

    def slabel(p):
        return SIZE_PEER_LABEL.get(p, LABEL.get(p, p))

    lat_by_peer = {}
    for r in lat:
        lat_by_peer.setdefault(r["peer"], []).append(r)

    def lat_med(peer, key):
        return median_or_none([(r["json"] or {}).get(key) for r in lat_by_peer.get(peer, [])])

    # ------------------------------------------------------------ title and summary
    w("# Benchmarks")
    w("")
    w("<!-- Generated by scripts/bench.sh and scripts/report.py; do not edit by hand: rerun the script. -->")
    w("")
    if quick:
        w("> **Quick run** (`scripts/bench.sh --quick`): one round of short runs at 64 connections. "
          "The figures are indicative only; `scripts/bench.sh` (the full mode) measures every table "
          "over 3 rounds.")
        w("")
    summary = []
    if "ringcorn" in tp_peers and ref_c is not None:
        peers = [p for p in tp_peers if p not in RINGCORN_VARIANTS]
        for key, what, better in (("rps", "Requests/s", "higher is better"),
                                  ("cpu_us_per_req", "Server CPU per request", "lower is better")):
            parts = []
            for mode in MODES:
                mine = tp_med("ringcorn", mode, ref_c, key)
                rs = [f"{LABEL[p]} {fmt_ratio(ratio(mine, tp_med(p, mode, ref_c, key)))}"
                      for p in peers if tp_med(p, mode, ref_c, key) is not None]
                if rs:
                    parts.append(f"{MODES[mode]}{' ×' + depth if mode == 'pipelined' else ''}: " + ", ".join(rs))
            if parts:
                summary.append(f"**{what}**, ringcorn hello ÷ peer ({better}; {ref_c} connections, "
                               f"one worker each): " + "; ".join(parts) + ".")
    if "ringcorn-epoll" in tp_peers and ref_c is not None:
        # The fallback's price: its CPU per request against nginx's (also epoll) and against
        # the io_uring backend's.
        parts = []
        for mode in MODES:
            mine = tp_med("ringcorn-epoll", mode, ref_c, "cpu_us_per_req")
            rs = [f"÷ {LABEL[p]} {fmt_ratio(ratio(mine, tp_med(p, mode, ref_c, 'cpu_us_per_req')))}"
                  for p in ("nginx", "ringcorn") if p in tp_peers
                  and tp_med(p, mode, ref_c, "cpu_us_per_req") is not None]
            if rs:
                parts.append(f"{MODES[mode]}{' ×' + depth if mode == 'pipelined' else ''}: " + ", ".join(rs))
        if parts:
            summary.append(f"**The epoll backend** (where io_uring is blocked), server CPU per "
                           f"request ({ref_c} connections): " + "; ".join(parts) + ".")
    if "ringcorn" in mem_med and mem_med["ringcorn"] is not None:
        parts = [f"{LABEL[p]} {fmt_bytes(mem_med[p])} ({fmt_ratio(ratio(mem_med['ringcorn'], mem_med[p]))})"
                 for p in ordered(mem_med) if p not in RINGCORN_VARIANTS and mem_med[p]]
        line = (f"**Memory per idle keep-alive connection**: ringcorn {fmt_bytes(mem_med['ringcorn'])}"
                + (" vs " + ", ".join(parts) if parts else "") + " (ringcorn ÷ peer in brackets)")
        if "ringcorn" in lat_by_peer:
            p99 = lat_med("ringcorn", "p99_us")
            others = [f"{LABEL[p]} {fmt_lat(lat_med(p, 'p99_us'))}" for p in ordered(lat_by_peer)
                      if p not in RINGCORN_VARIANTS + ("gunicorn",)]
            line += (f"; p99 latency at {fmt_rate(int(meta['latency_rate']))} req/s: ringcorn "
                     f"{fmt_lat(p99)}" + (" vs " + ", ".join(others) if others else ""))
        summary.append(line + ".")
    size_peers_run = {r["peer"] for r in size_runs}
    if "nginx" in size_peers_run and size_peers_run & {"ringcorn", "ringcorn-static"}:
        sizes_run = sorted({size_of(r) for r in size_runs})
        parts = []
        if "ringcorn-static" in size_peers_run:
            rs = [(sz, size_cpu_ratios("ringcorn-static", sz)) for sz in sizes_run]
            allv = [median_or_none(v) for _, v in rs]
            met = ("—" if any(v is None for v in allv) else
                   "met" if all(v <= STATIC_CPU_TARGET for v in allv) else "**not met**")
            parts.append("ringcorn static " + ", ".join(f"{SIZE_LABEL.get(sz, sz)} {fmt_ratio(median_or_none(v))}"
                                                        for sz, v in rs)
                         + f" (target ≤ {fmt_ratio(STATIC_CPU_TARGET)} at every size: {met})")
        bsize, blim = BYTES_CPU_TARGET
        if "ringcorn" in size_peers_run and bsize in sizes_run:
            v = size_cpu_ratios("ringcorn", bsize)
            parts.append(f"ringcorn bytes at {SIZE_LABEL[bsize]} {fmt_ratio(median_or_none(v))} "
                         f"(target ≤ {fmt_ratio(blim)}: {verdict(v, blim)})")
        if parts:
            summary.append("**Static files and large responses**, server CPU per request ÷ nginx's "
                           "(nginx serving the same files with sendfile; lower is better): " + "; ".join(parts) + ".")
    if slow_by_peer:
        per = {p: median_or_none([r["per_conn"] for r in rs]) for p, rs in slow_by_peer.items()}
        parts = [f"{slabel(p)} {fmt_bytes(per[p])}" for p in ordered(slow_by_peer)]
        rat = [f"{slabel(p)} {fmt_ratio(median_or_none(slow_rss_ratios(p)))}" for p in ordered(slow_by_peer)
               if p != "nginx" and "nginx" in slow_by_peer]
        probes = [pr for rs in slow_by_peer.values() for r in rs for pr in r["probes"]]
        ok = [pr for rs in slow_by_peer.values() for r in rs for pr in r["probe_ok"]]
        worst = max((pr[4] for pr in ok), default=None)
        line = (f"**Slow readers** ({int(meta['slow_connections']):,} connections reading "
                f"{SIZE_LABEL.get(int(meta['slow_size']), fmt_bytes(int(meta['slow_size'])))} slowly): RSS per slow reader " + ", ".join(parts))
        if rat:
            ok_all = all(v is not None and v <= SLOW_RSS_TARGET
                         for v in (median_or_none(slow_rss_ratios(p)) for p in slow_by_peer if p != "nginx"))
            line += (f"; ÷ nginx's: " + ", ".join(rat)
                     + f" (target ≤ {fmt_ratio(SLOW_RSS_TARGET)}: {'met' if ok_all else '**not met**'})")
        kper = {p: median_or_none([r["kernel_per_conn"] for r in rs]) for p, rs in slow_by_peer.items()}
        if any(v is not None for v in kper.values()):
            line += ("; kernel TCP memory per slow reader "
                     + ", ".join(f"{slabel(p)} {fmt_bytes(kper[p])}" for p in ordered(slow_by_peer)))
        line += (f"; the normal client meanwhile: {len(ok)} of {len(probes)} requests answered, "
                 f"the slowest in {fmt_lat(worst)}")
        summary.append(line + ".")
    def tls_ratios(test, key):
        """Per round, ringcorn's KEY in TLS test TEST ÷ nginx's (the pair ran back to back)."""
        out = []
        for rnd in sorted({r["round"] for r in tls}):
            a = [r[key] for r in tls if r["peer"] == "ringcorn" and r["test"] == test and r["round"] == rnd]
            b = [r[key] for r in tls if r["peer"] == "nginx" and r["test"] == test and r["round"] == rnd]
            if a and b and a[0] is not None and b[0]:
                out.append(a[0] / b[0])
        return out

    if tls and {"ringcorn", "nginx"} <= {r["peer"] for r in tls}:
        parts = []
        for test, key, what in (("keepalive", "cpu_us", "keep-alive CPU per request"),
                                ("full", "cpu_us", "CPU per full handshake"),
                                ("resumed", "cpu_us", "CPU per resumed handshake"),
                                ("resumed12", "cpu_us", "CPU per resumed TLS 1.2 handshake"),
                                ("idle", "per_idle", "memory per idle TLS connection")):
            m = median_or_none(tls_ratios(test, key))
            if m is not None:
                parts.append(f"{what} {fmt_ratio(m)}")
        summary.append("**TLS**, ringcorn ÷ nginx, median of the rounds' ratios (same ECDSA P-256 "
                       "certificate; lower is better): "
                       + ", ".join(parts) + ".")
    for s in summary:
        w(f"- {s}")
    w("")

    # ------------------------------------------------------------ machine
    w(f"Generated by `scripts/bench.sh{' --quick' if quick else ''}` on {meta['date']}, "
      f"commit {meta['commit']}.")
    w("")
    w("| | |")
    w("|---|---|")
    w(f"| CPU | {cpu_name}, {meta['cores']} cores, {meta.get('memory', '?')} RAM |")
    w(f"| Kernel, OS | Linux {meta['kernel']}, {meta.get('os', '?')} |")
    w(f"| Load before the runs | {pct(float(meta.get('busy_before', 0)))} of all CPUs busy over 2 s; "
      f"load average {meta.get('loadavg', '?')} (1, 5, 15 min) |")
    w(f"| ringcorn | {meta.get('ringcorn', '?')}, {meta.get('rustc', '?')} |")
    if "nginx" in meta:
        w(f"| nginx | {meta['nginx']} (Debian nginx-light) |")
    sel_peers = meta["peers"].split(",")
    if meta.get("hyper") and "hyper-peer" in sel_peers:
        w(f"| hyper-peer | hyper {meta['hyper']}, tokio {meta.get('tokio', '?')} (benches/peers) |")
    if meta.get("tokio_uring") and "uring-peer" in sel_peers:
        w(f"| uring-peer | tokio-uring {meta['tokio_uring']} (benches/peers) |")
    if meta.get("io_uring") and "ceiling" in sel_peers:
        w(f"| ceiling | io-uring crate {meta['io_uring']} (benches/peers) |")
    if "gunicorn" in meta:
        w(f"| gunicorn | {meta['gunicorn']} |")
    w(f"| Load generators | {meta['wrk']}; loadgen and holdconns (benches/peers) |")
    if "valgrind" in meta:
        w(f"| valgrind | {meta['valgrind']} |")
    if "slowhttptest" in meta:
        w(f"| slowhttptest | {meta['slowhttptest']} (Debian package; the slow-read attack) |")
    w(f"| Pinning | servers' one worker on CPU {meta['cpus_server']}, load generators on CPU(s) "
      f"{meta['cpus_load']}; scaling over CPUs {meta['scale_cpus']} |")
    st = [f"{k.removeprefix('section_s_')} {v} s" for k, v in meta.items() if k.startswith("section_s_")]
    w(f"| Run | {rounds} round(s); wrk {meta['duration']} s per run (size sweep {meta['size_duration']} s), "
      f"{meta['warmup']} s warm-up; the script took {meta['elapsed']} s "
      f"(builds {meta.get('build_s', '?')} s; {', '.join(st)}) |")
    w("")

    # ------------------------------------------------------------ method
    w("## Method")
    w("")
    w("- **Peers.** *ringcorn hello* and *ringcorn json* are this crate's `hello` and `json` apps; "
      "*ringcorn bytes* and *ringcorn static* (`ringcorn static --root DIR`, the size sweep and the slow "
      "readers only) answer `GET /N` with N bytes, built per request or from a file. "
      "*nginx* answers `return 200 \"Hello, World!\"` (`scripts/nginx.conf.template`: `access_log off`, "
      "`keepalive_requests 10000000`, `sendfile on`). *ceiling* (benches/peers) is the thinnest io_uring "
      "loop: multishot accept, recv, send, no HTTP parsing, one fixed response per `\\r\\n\\r\\n`: "
      "about the most one core can serve through the kernel's TCP stack. *hyper-peer* is hyper 1.x "
      "(http1, keep-alive, `pipeline_flush`) on a current-thread tokio runtime per pinned worker; "
      "*uring-peer* is tokio-uring with an httparse loop: what ringcorn's own io_uring engine buys over "
      "tokio-uring. *gunicorn* is one sync worker (`-w 1 --worker-class sync`) serving a trivial WSGI app: "
      "it answers `Connection: close`, so every request costs a new TCP connection.")
    w("- **Pinning.** Every server runs one worker pinned to the server CPU (taskset, and each server's "
      "own pinning: `--cpus`, `worker_cpu_affinity auto`); the load generators are pinned to the load "
      "CPU(s). Only one server is under load at a time.")
    w("- **Alternation.** Within each round every peer is measured in turn for one setting (A B C … "
      "then the next setting), and rounds repeat that: slow drift of the machine hits every peer alike. "
      "Tables give the median over rounds with (min–max).")
    w("- **Server CPU µs/request** = utime+stime of the server (`/proc/PID/stat`, summed over the "
      "process and its descendants: nginx's and gunicorn's master and workers) read right before and "
      "after the run, ÷ requests completed; lower is better. On a 2-core machine the load generator "
      "saturates its own core before most servers saturate theirs, so unpipelined requests/s largely "
      "measure wrk; CPU per request is what tells the servers apart.")
    w(f"- **Pipelined** runs send {depth} requests per write (`scripts/pipeline.lua`); wrk counts "
      "every response.")
    w(f"- **Latency** comes from `loadgen`, an open-loop fixed-rate generator: it schedules requests "
      f"at a constant aggregate rate over {meta['latency_connections']} keep-alive connections and "
      "measures each from its *scheduled* send time to the last byte of its response, so a server that "
      "stalls cannot hide the queueing behind it (no coordinated omission). wrk's own percentiles "
      "(closed loop, saturating) are in the raw tables only.")
    w(f"- **Memory**: a fresh server per round; VmRSS (summed over its processes) after one request, "
      f"then again while `holdconns` holds {int(meta['hold']):,} idle keep-alive connections (read after they have been idle 3 s, the same for every peer), each "
      "after one request: (after − before) ÷ connections. Peak RSS under load is VmHWM of the "
      "throughput section's servers after all their wrk and loadgen runs.")
    w("- **Other work.** Right before and after each run bench.sh reads `/proc/stat` (how busy each "
      "core was) and every process's CPU time (`/proc/PID/stat`, with the time of its reaped "
      "children). *Others* is the CPU time that processes other than bench.sh's own (servers, load "
      "generators) and kernel threads spent on the measured cores during the run, as a share of one "
      f"core; a run above {OTHER_WORK_LIMIT * 100:.0f}% is flagged as disturbed (⚠ in the raw tables, "
      "named under the tables). *Server cores busy* and *load cores busy* are from `/proc/stat`.")
    w("- **Errors**: wrk's socket errors and non-2xx/3xx responses, loadgen's errors and uncompleted "
      "requests, summed over rounds; a server that died or a run that failed is listed there too.")
    w("")
    w("Commands (PORT is chosen free at run time; `$TMP` is the run's temp dir):")
    w("")
    w("```sh")
    for p in tp_peers:
        if f"tp-{p}" in cmds:
            w(cmds[f"tp-{p}"])
    w(meta["wrk_plain"].replace("-cCONNS", "-cCONNS"))
    w(meta["wrk_pipelined"])
    if lat:
        w(meta["loadgen_cmd"])
    if mem:
        w(meta["holdconns_cmd"])
    if cg:
        w(meta["callgrind_cmd"])
    if crit:
        w(meta["criterion_cmd"])
    w("```")
    w("")
    w("The gunicorn WSGI app (written by bench.sh into `$TMP/gunicorn/app.py`):")
    w("")
    w("```python")
    w('BODY = b"Hello, World!"')
    w('HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]')
    w("def application(environ, start_response):")
    w('    start_response("200 OK", HEADERS)')
    w("    return [BODY]")
    w("```")
    w("")
    hello_resp = sorted(((k, v) for k, v in responses.items() if k.startswith("tp-") and k.endswith(".response_")),
                        key=lambda kv: PEER_ORDER.index(kv[0][3:].removesuffix(".response_")))
    if hello_resp:
        w("Response of each peer to one `curl -i /` before the runs (status line, whole response size):")
        w("")
        w("| peer | status | bytes |")
        w("|---|---|---:|")
        for k, (status, size) in hello_resp:
            peer = k.removeprefix("tp-").removesuffix(".response_")
            w(f"| {LABEL.get(peer, peer)} | `{status or '(no response)'}` | {size} |")
        w("")
    if notes:
        w("Notes:")
        w("")
        for n in notes:
            w(f"- {n}")
        w("")

    # ------------------------------------------------------------ 1. throughput
    if "throughput" in sections and tp_peers:
        w("## 1. Requests/s and CPU per request")
        w("")
        gmax = int(meta["gunicorn_max_connections"])
        w(f"wrk, `-c` connections as in the columns, {meta['duration']} s per run, one worker per server. "
          + (f"gunicorn runs only up to {gmax} connections: its sync worker serves one connection at a "
             "time and closes it, more connections only wait in its backlog (and would cost the suite "
             "minutes for no information)." if "gunicorn" in tp_peers and max(conns) > gmax else ""))
        for mode in MODES:
            for key, what, fmt in (("rps", "Requests/s", fmt_rate),
                                   ("cpu_us_per_req", "Server CPU µs per request (lower is better)", fmt_cpu)):
                w("")
                w(f"### {what}, {MODES[mode]}{' ×' + depth if mode == 'pipelined' else ''}")
                w("")
                w("| peer | " + " | ".join(f"{c} conn" for c in conns) + " | errors |")
                w("|---|" + "---:|" * len(conns) + "---|")
                for p in tp_peers:
                    cells = []
                    for c in conns:
                        rs = sel("throughput", peer=p, mode=mode, conns=c)
                        cells.append(med_range([r[key] for r in rs], fmt) if rs else "not run")
                    rs = sel("throughput", peer=p, mode=mode)
                    errs = summarize([e for r in rs for e in problems(r)])
                    if any(r["restarts"] for r in rs):
                        errs.append(f"restarted {max(r['restarts'] for r in rs)}×")
                    w(f"| {LABEL[p]} | " + " | ".join(cells) + f" | {errors_cell(errs)} |")
                if key == "rps":
                    load = [r["load_busy"] for r in sel("throughput", mode=mode) if r["peer"] != "gunicorn"]
                    if load and median_or_none(load) is not None:
                        w("")
                        w(f"The load generator's core was {pct(median_or_none(load))} busy in the median run "
                          f"(gunicorn aside): near 100% the figures above are wrk's limit, not the server's.")
            disturbed = [r for r in sel("throughput", mode=mode)
                         if r["others"] is not None and r["others"] > OTHER_WORK_LIMIT]
            if disturbed:
                w("")
                w("**Other work shared the measured cores** during "
                  + ", ".join(f"{r['peer']} c{r['conns']} round {r['round']} ({pct(r['others'])} of a core)"
                              for r in disturbed)
                  + ": those figures are skewed.")
        w("")
        xt = [(c, str(c)) for c in conns]
        for mode in MODES:
            ser = []
            for p in tp_peers:
                pts = []
                for c in conns:
                    s = stats3([r["rps"] for r in sel("throughput", peer=p, mode=mode, conns=c)])
                    if s:
                        pts.append((c, *s))
                ser.append((p, pts))
            name = charts.lines_chart(f"rps_{'unpipelined' if mode == 'plain' else 'pipelined'}.svg",
                                      f"Requests/s, {MODES[mode]}{' ×' + depth if mode == 'pipelined' else ''}"
                                      " (wrk, one server worker)",
                                      "connections", "requests/s", ser, logx=True, logy=None, xtics=xt)
            img(name, f"requests/s {MODES[mode]}")
        panels = []
        # gunicorn costs ~20-300x more CPU per request: on the same axis the others would merge.
        left_out = "gunicorn" in tp_peers and len(tp_peers) > 1
        for mode in MODES:
            ser = []
            for p in tp_peers:
                if p == "gunicorn" and left_out:
                    continue
                pts = []
                for c in conns:
                    s = stats3([r["cpu_us_per_req"] for r in sel("throughput", peer=p, mode=mode, conns=c)])
                    if s:
                        pts.append((c, *s))
                ser.append((p, pts))
            panels.append((f"{MODES[mode]}{' ×' + depth if mode == 'pipelined' else ''}", ser))
        g = median_or_none([r["cpu_us_per_req"] for r in sel("throughput", peer="gunicorn")]) if left_out else None
        name = charts.lines_chart("cpu_per_request.svg", "Server CPU µs per request (lower is better)"
                                  + (f"; gunicorn (about {g:.0f} µs) left out, see the tables" if g else ""),
                                  "connections", "server CPU µs / request", None, logx=True, logy=True,
                                  xtics=xt, panels=panels)
        img(name, "server CPU per request")

    # ------------------------------------------------------------ 2. latency
    if lat:
        rate = int(meta["latency_rate"])
        w("## 2. Latency at a fixed rate")
        w("")
        w(f"`loadgen`: {fmt_rate(rate)} requests/s over {meta['latency_connections']} connections for "
          f"{meta['latency_duration']} s" + (f" after {meta['latency_warmup']} s of warm-up" if meta.get("latency_warmup", "0") != "0" else "")
          + ", open loop: latency is measured from each request's scheduled send time, so queueing "
          "behind a stalled server counts in full. "
          + (f"gunicorn gets {fmt_rate(int(meta['gunicorn_rate']))} requests/s instead: one sync worker "
             f"serves a few thousand per second, so {fmt_rate(rate)}/s would only measure an ever-growing "
             "queue; and it closes the connection after each response, which loadgen treats as a broken "
             "connection that it reconnects on its next request, at most every 100 ms: with "
             f"{meta['latency_connections']} connections that allows about "
             f"{int(meta['latency_connections']) * 10} requests/s. Each gunicorn request therefore includes "
             "a fresh TCP connect." if "gunicorn" in lat_by_peer else ""))
        w("")
        w("| peer | rate | achieved | p50 | p90 | p99 | p99.9 | max | server CPU (share of a core) | errors |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        lat_peers = ordered(lat_by_peer)
        for p in lat_peers:
            rs = lat_by_peer[p]
            J = [r["json"] or {} for r in rs]
            errs = summarize([e for r in rs for e in latency_problems(r)])
            w(f"| {LABEL[p]} | {fmt_rate(rs[0]['rate'])}/s | {med_range([j.get('achieved_rps') for j in J], fmt_rate)} "
              + " ".join(f"| {med_range([j.get(k) for j in J], fmt_lat)}"
                         for k in ("p50_us", "p90_us", "p99_us", "p999_us", "max_us"))
              + f" | {med_range([r['cpu_share'] for r in rs], pct)} | {errors_cell(errs)} |")
        disturbed = [r for r in lat if r["others"] is not None and r["others"] > OTHER_WORK_LIMIT]
        if disturbed:
            w("")
            w("**Other work shared the measured cores** during "
              + ", ".join(f"{r['peer']} round {r['round']} ({pct(r['others'])} of a core)" for r in disturbed)
              + ": those figures are skewed.")
        w("")
        data = {}
        for p in lat_peers:
            for k, lbl in (("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9")):
                s = stats3([(r["json"] or {}).get(k) for r in lat_by_peer[p]])
                data[(LABEL[p] + (f" ({fmt_rate(lat_by_peer[p][0]['rate'])}/s)" if p == "gunicorn" else ""), lbl)] = s
        groups = [LABEL[p] + (f" ({fmt_rate(lat_by_peer[p][0]['rate'])}/s)" if p == "gunicorn" else "") for p in lat_peers]
        name = charts.bar_chart("latency.svg", f"Latency at {fmt_rate(rate)} requests/s, "
                                f"{meta['latency_connections']} connections (open loop, lower is better)",
                                "latency (log scale)", groups, ["p50", "p99", "p99.9"], data, logy=True, yfmt=short_us,
                                colors={"p50": "#4c72b0", "p99": "#dd8452", "p99.9": "#c44e52"})
        img(name, "latency percentiles")

    # ------------------------------------------------------------ 3. memory
    if mem or peak or slow:
        w("## 3. Memory")
        w("")
        if mem:
            hold = int(meta["hold"])
            w(f"RSS growth per idle keep-alive connection: {hold:,} connections held by `holdconns`, "
              "a fresh server per round.")
            w("")
            w("| peer | held | RSS before | RSS holding | per connection | problems |")
            w("|---|---:|---:|---:|---:|---|")
            for p in ordered(mem_rows):
                rows = mem_rows[p]
                errs = []
                for row, _ in rows:
                    if int(row["held"]) < int(row["count"]):
                        errs.append(f"held {row['held']} of {row['count']} (round {row['round']})")
                    if row["alive_after"] != "1":
                        errs.append(f"server died (round {row['round']})")
                w(f"| {LABEL[p]} | {med_range([int(r['held']) for r, _ in rows], lambda v: f'{v:,.0f}')} "
                  f"| {med_range([int(r['rss_before_kb']) * 1024 for r, _ in rows], fmt_bytes)} "
                  f"| {med_range([int(r['rss_after_kb']) * 1024 for r, _ in rows], fmt_bytes)} "
                  f"| {med_range([per for _, per in rows], fmt_bytes)} | {errors_cell(errs)} |")
            if "gunicorn" in (meta.get("peers") or "").split(","):
                w("")
                w("gunicorn is left out: its sync worker closes every connection after one response "
                  "(`Connection: close`) and serves one connection at a time, so it cannot hold idle "
                  "keep-alive connections at all. ringcorn json is the same server as ringcorn hello.")
            w("")
        if peak:
            w("Peak RSS under load: VmHWM after the throughput and latency runs (up to "
              f"{max(conns) if conns else '?'} connections), summed over the server's processes.")
            w("")
            w("| peer | peak RSS (VmHWM) | RSS at the end |")
            w("|---|---:|---:|")
            for row in sorted(peak, key=lambda r: PEER_ORDER.index(r["peer"]) if r["peer"] in PEER_ORDER else 99):
                extra = f" (restarted {row['restarts']}×: since the restart)" if row["restarts"] != "0" else ""
                w(f"| {LABEL.get(row['peer'], row['peer'])} | {fmt_bytes(int(row['vmhwm_kb']) * 1024)}{extra} "
                  f"| {fmt_bytes(int(row['vmrss_kb']) * 1024)} |")
            w("")
        panels = []
        if mem:
            mp = ordered(mem_rows)
            panels.append((f"RSS per idle keep-alive connection ({int(meta['hold']):,} held)", "bytes per connection",
                           [LABEL[p] for p in mp], ["per connection"],
                           {(LABEL[p], "per connection"): stats3([per for _, per in mem_rows[p]]) for p in mp}, None))
        if peak:
            pp = ordered({r["peer"] for r in peak})
            hw = {r["peer"]: int(r["vmhwm_kb"]) / 1024 for r in peak}
            panels.append(("Peak RSS under load (VmHWM, one reading)", "MiB", [LABEL[p] for p in pp], ["peak RSS"],
                           {(LABEL[p], "peak RSS"): (hw[p], hw[p], hw[p]) for p in pp}, None))
        if panels:
            name = charts.bar_chart("memory.svg", "Memory (lower is better)", None, None, None, None,
                                    panels=panels, colors={"per connection": "#4c72b0", "peak RSS": "#55a868"})
            img(name, "memory")
    if slow:
        n_conns = int(meta["slow_connections"])
        secs, rate, st = meta["slow_duration"], int(meta["slow_rate"]), meta["slow_send_timeout"]
        size = int(meta["slow_size"])
        size_txt = SIZE_LABEL.get(size, fmt_bytes(size))
        w("### Slow readers: the slow-read attack")
        w("")
        w(f"`slowhttptest -X` (the slow-read attack) opens {n_conns:,} connections, {rate} a second (all open "
          f"after {n_conns / rate:g} s), each asking for the {size_txt} response 3 times pipelined, "
          "advertising a TCP window of 512–1024 bytes and reading 32 bytes every 5 s, "
          f"for {secs} s: the responses stay in the server. ringcorn bytes sends its 1 MiB from an "
          "in-memory file (memfd, sendfile); ringcorn static and nginx send the same file from disk. A fresh server per round; its VmRSS (summed over "
          "its processes) is read after a few requests, then every 0.5 s during the attack. *Open* is the most "
          "connections ESTABLISHED to the server's port at one reading (`ss`); RSS per slow reader = "
          "(peak − before) ÷ open. Both servers' send timeout is "
          f"{st} s (ringcorn `--send-timeout`, nginx `send_timeout`), longer than the attack, so this measures "
          "the memory slow readers hold, not how soon a server drops them. Kernel socket buffers are not in "
          "RSS: *kernel per slow reader* is the growth of the kernel's memory for TCP sockets "
          "(`/proc/net/sockstat`, the attacker's side included, which is alike for every peer) ÷ open. "
          "ringcorn bounds it with `--tcp-notsent-lowat` (default 16 KiB); nginx has no such setting and "
          "leaves it to the kernel (`net.ipv4.tcp_notsent_lowat`, unset here). Meanwhile a normal client "
          f"requests `{meta.get('slow_probe', '/13')}` every 200 ms "
          "(curl, a new connection each, 2 s timeout): *answered* counts the 200s with the whole body, and "
          "their median and slowest time (target: served promptly throughout).")
        w("")
        w("| peer | open | RSS before | peak RSS | RSS per slow reader | RSS after | kernel per slow reader "
          "| normal client answered | its p50 | its slowest | problems |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for p in ordered(slow_by_peer):
            rs = slow_by_peer[p]
            kb = lambda key: [r[key] * 1024 if r[key] is not None else None for r in rs]  # noqa: E731
            answered = f"{sum(len(r['probe_ok']) for r in rs)} of {sum(len(r['probes']) for r in rs)}"
            w(f"| {slabel(p)} | {med_range([r['open_peak'] for r in rs], lambda v: f'{v:,.0f}')} "
              f"| {med_range(kb('rss_before_kb'), fmt_bytes)} | {med_range(kb('rss_peak_kb'), fmt_bytes)} "
              f"| {med_range([r['per_conn'] for r in rs], fmt_bytes)} | {med_range(kb('rss_after_kb'), fmt_bytes)} "
              f"| {med_range([r['kernel_per_conn'] for r in rs], fmt_bytes)} "
              f"| {answered} | {med_range([r['probe_p50'] for r in rs], fmt_lat)} "
              f"| {fmt_lat(max(clean([r['probe_max'] for r in rs]), default=None))} "
              f"| {errors_cell([e for r in rs for e in slowread_problems(r)])} |")
        w("")
        if "nginx" in slow_by_peer and len(slow_by_peer) > 1:
            w(f"RSS per slow reader ÷ nginx's (per round, median (min–max); target ≤ {fmt_ratio(SLOW_RSS_TARGET)}): "
              + "; ".join(f"{slabel(p)} {med_range(slow_rss_ratios(p), fmt_ratio)} "
                          f"({verdict(slow_rss_ratios(p), SLOW_RSS_TARGET)})"
                          for p in ordered(slow_by_peer) if p != "nginx") + ".")
            w("")
        w("To reproduce (the servers' command lines are under *Raw data*):")
        w("")
        w("```sh")
        w(f"scripts/bench.sh{' --quick' if quick else ''} --sections slowread --peers {','.join(ordered(slow_by_peer))} "
          f"--rounds {rounds} --slow-connections {n_conns} --slow-duration {secs} --slow-rate {rate} "
          f"--slow-send-timeout {st}")
        w("# for each peer and round, a fresh server (PORT chosen free), then together:")
        if meta.get("slowhttptest_cmd"):
            w(meta["slowhttptest_cmd"])
        if meta.get("probe_cmd"):
            w(meta["probe_cmd"] + "   # every 200 ms")
        w("ss -Htn state established '( sport = :PORT )' | wc -l   # every 0.5 s, with VmRSS of /proc/PID/status")
        w("```")
        w("")
        sp = ordered(slow_by_peer)
        if sp:
            panels = [("RSS per slow reader", "bytes per slow reader", [slabel(p) for p in sp], ["per slow reader"],
                       {(slabel(p), "per slow reader"): stats3([r["per_conn"] for r in slow_by_peer[p]]) for p in sp},
                       None),
                      ("Peak RSS during the attack", "MiB", [slabel(p) for p in sp], ["peak RSS"],
                       {(slabel(p), "peak RSS"): stats3([r["rss_peak_kb"] / 1024 if r["rss_peak_kb"] is not None
                                                         else None for r in slow_by_peer[p]]) for p in sp}, None)]
            name = charts.bar_chart("slowread.svg", f"Slow-read attack: {n_conns:,} connections reading "
                                    f"{size_txt} slowly (lower is better)", None, None, None, None,
                                    panels=panels, colors={"per slow reader": "#c44e52", "peak RSS": "#55a868"})
            img(name, "slow-read attack")

    if tls:
        tpeers = ordered({r["peer"] for r in tls})
        w("### TLS")
        w("")
        w(f"Each server speaks TLS with the same ECDSA P-256 certificate made for the run (ringcorn "
          f"`--certfile/--keyfile`, rustls with aws-lc-rs; nginx `ssl` with OpenSSL "
          f"{meta.get('openssl', '?').split()[1] if len(meta.get('openssl', '').split()) > 1 else '?'} and a shared "
          f"session cache), one worker on CPU {meta['cpus_server']}, the clients on CPU {meta['cpus_load']}, "
          f"{meta.get('tls_duration', '?')} s per run, a fresh server per round. *Keep-alive*: "
          f"`wrk -t1 -c64 https://…/`. *Handshakes*: {meta.get('tls_clients', '?')} `openssl s_time` loops at once, "
          "each a new TCP connection per handshake (and no request): `-new` (full, TLS 1.3), `-reuse` (resuming the "
          "first session: TLS 1.3, then with `-tls1_2`). The clients' core saturates first, so handshakes/s "
          "measure the clients; server CPU per handshake is what tells the servers apart (one server core "
          "could do 1 s ÷ that many). *Idle*: `scripts/tls_hold.py` holds "
          f"{int(meta.get('tls_hold', 0)):,} TLS connections after one request each, idle "
          f"{meta.get('idle_settle', '3')} s; (VmRSS after − before) ÷ connections.")
        w("")
        w("| peer | " + " | ".join(f"{what}: /s" + " | server CPU µs each" for _, what in TLS_TESTS)
          + " | idle TLS connection |")
        w("|---|" + "---:|---:|" * len(TLS_TESTS) + "---:|")
        for p in tpeers:
            cells = []
            for test, _ in TLS_TESTS:
                rs = [r for r in tls if r["peer"] == p and r["test"] == test]
                cells.append(med_range([r["rate"] for r in rs], fmt_rate))
                cells.append(med_range([r["cpu_us"] for r in rs], fmt_cpu))
            idle = [r["per_idle"] for r in tls if r["peer"] == p and r["test"] == "idle"]
            w(f"| {LABEL.get(p, p)} | " + " | ".join(cells) + f" | {med_range(idle, fmt_bytes)} |")
        w("")
        if "nginx" in tpeers and "ringcorn" in tpeers:
            rows = [("keep-alive: server CPU per request", tls_ratios("keepalive", "cpu_us"), 1.0),
                    ("full handshake: server CPU each", tls_ratios("full", "cpu_us"), TLS_HANDSHAKE_TARGET),
                    ("resumed (s_time -reuse): server CPU each", tls_ratios("resumed", "cpu_us"), TLS_HANDSHAKE_TARGET),
                    ("resumed TLS 1.2: server CPU each", tls_ratios("resumed12", "cpu_us"), TLS_HANDSHAKE_TARGET),
                    ("idle TLS connection: memory", tls_ratios("idle", "per_idle"), 1.0)]
            w("ringcorn ÷ nginx per round, median (min–max); targets (issue 12): handshakes ≥ 1.5× nginx's, "
              "here as server CPU per handshake ≤ ×0.67; keep-alive CPU per request and idle memory ≤ ×1.00:")
            w("")
            w("| | ratio | target |")
            w("|---|---:|---|")
            for what, vals, limit in rows:
                w(f"| {what} | {med_range(vals, fmt_ratio)} | ≤ {fmt_ratio(limit)}: {verdict(vals, limit)} |")
            w("")
        w("To reproduce:")
        w("")
        w("```sh")
        w(f"scripts/bench.sh{' --quick' if quick else ''} --sections tls --peers {','.join(tpeers)} --rounds {rounds}")
        w(f"taskset -c {meta['cpus_load']} wrk -t1 -c64 -d{meta.get('tls_duration', '?')}s https://127.0.0.1:PORT/")
        w(f"taskset -c {meta['cpus_load']} openssl s_time -connect 127.0.0.1:PORT -new -time {meta.get('tls_duration', '?')}"
          f"   # x{meta.get('tls_clients', '?')} at once; -reuse; -reuse -tls1_2")
        w(f"taskset -c {meta['cpus_load']} python3 scripts/tls_hold.py --port PORT --count {meta.get('tls_hold', '?')} --hold-secs 300")
        w("```")
        w("")

    # ------------------------------------------------------------ 4. size sweep
    if size_runs:
        sizes = sorted({size_of(r) for r in size_runs})
        speers = ordered({r["peer"] for r in size_runs})
        conns_at = {sz: sorted({r["conns"] for r in size_runs if size_of(r) == sz}) for sz in sizes}
        usual = statistics.mode([c for sz in sizes for c in conns_at[sz]])
        fewer = [sz for sz in sizes if conns_at[sz] != [usual]]
        fsize = int(meta.get("size_focus", BYTES_CPU_TARGET[0]))
        frounds = len({r["round"] for r in size_runs if size_of(r) == fsize})
        fpeers = [p for p in speers
                  if len({r["round"] for r in size_runs if r["peer"] == p and size_of(r) == fsize}) == frounds]
        w("## 4. Response size sweep")
        w("")
        w("`GET /N` answers N bytes: ringcorn's `bytes` app (nothing built per request: under 64 KiB a static block, copied "
          "after the head or sent beside it; from 64 KiB sendfile from an in-memory file), hyper-peer and "
          "uring-peer `--app bytes` (a static body), and files of those sizes holding the same bytes, served by "
          "`ringcorn static --root DIR` (*ringcorn static*) and by nginx (sendfile on). wrk unpipelined, "
          f"{usual} connections"
          + "".join(f" ({', '.join(map(str, conns_at[sz]))} at {SIZE_LABEL.get(sz, f'{sz} B')})" for sz in fewer)
          + f", {meta['size_duration']} s per run, one worker; the peers alternate within each round."
          + (f" At {SIZE_LABEL.get(fsize, f'{fsize} B')}, the size of the `bytes` target, "
             f"{and_list([slabel(p) for p in fpeers])} ran {frounds} rounds (the others {rounds}): one "
             "server's figure there moves by as much as a third from round to round, and the median of 3 "
             "rounds moves with it." if frounds > rounds else "")
          + (" Fewer connections for the largest responses: with 64, a run of a few seconds finishes only a "
             "handful of 16 MiB responses per connection, and the ones still in flight when wrk stops (server "
             "CPU spent, no request counted) would skew CPU per request; with fewer that share is small, and "
             "no response comes near wrk's 2 s timeout." if fewer else ""))

        for key, what, fmt in (("rps", "Requests/s", fmt_rate), ("bps", "Response bytes/s", fmt_bps),
                               ("cpu_us_per_req", "Server CPU µs per request", fmt_cpu)):
            w("")
            w(f"### {what}")
            w("")
            w("| peer | " + " | ".join(SIZE_LABEL.get(s, f"{s} B") for s in sizes) + " | errors |")
            w("|---|" + "---:|" * len(sizes) + "---|")
            for p in speers:
                cells = []
                for s in sizes:
                    rs = [r for r in size_runs if r["peer"] == p and size_of(r) == s]
                    vals = [(r["rps"] * s if r["rps"] is not None else None) if key == "bps" else r[key] for r in rs]
                    cells.append(med_range(vals, fmt))
                errs = summarize([e for r in size_runs if r["peer"] == p for e in problems(r)])
                w(f"| {slabel(p)} | " + " | ".join(cells) + f" | {errors_cell(errs)} |")
        w("")
        ratio_peers = [p for p in ("ringcorn-static", "ringcorn") if p in speers] if "nginx" in speers else []
        if ratio_peers:
            bsize, blim = BYTES_CPU_TARGET
            w("### Server CPU per request ÷ nginx's (lower is better)")
            w("")
            w("Each round's runs of a size ran back to back, so each round gives a ratio; the table shows their "
              "median (min–max). Below ×1.00 the peer spends less server CPU per response than nginx serving the "
              f"same file with sendfile. Targets (issue 11): ringcorn static ≤ {fmt_ratio(STATIC_CPU_TARGET)} at "
              f"every size; ringcorn bytes ≤ {fmt_ratio(blim)} at {SIZE_LABEL[bsize]}.")
            w("")
            w("| ratio | " + " | ".join(SIZE_LABEL.get(s, f"{s} B") for s in sizes) + " | target |")
            w("|---|" + "---:|" * len(sizes) + "---|")
            for p in ratio_peers:
                cells = [med_range(size_cpu_ratios(p, sz), fmt_ratio) for sz in sizes]
                if p == "ringcorn-static":
                    meds = [median_or_none(size_cpu_ratios(p, sz)) for sz in sizes]
                    met = ("—" if any(m is None for m in meds) else
                           "met" if all(m <= STATIC_CPU_TARGET for m in meds) else "**not met**")
                    target = f"≤ {fmt_ratio(STATIC_CPU_TARGET)} at every size: {met}"
                else:
                    target = (f"≤ {fmt_ratio(blim)} at {SIZE_LABEL[bsize]}: {verdict(size_cpu_ratios(p, bsize), blim)}"
                              if bsize in sizes else "—")
                w(f"| {slabel(p)} ÷ nginx static | " + " | ".join(cells) + f" | {target} |")
            w("")
        disturbed = [r for r in size_runs if r["others"] is not None and r["others"] > OTHER_WORK_LIMIT]
        if disturbed:
            w("**Other work shared the measured cores** during "
              + ", ".join(f"{r['peer']} {SIZE_LABEL.get(size_of(r), size_of(r))} round {r['round']} "
                          f"({pct(r['others'])} of a core)" for r in disturbed)
              + ": those figures are skewed.")
            w("")
        threads = min(len(load_cpus), usual)
        w("To reproduce (the servers' command lines, with PORT chosen free and `$TMP/files/N` the file of N "
          "bytes `x`, are under *Raw data*):")
        w("")
        w("```sh")
        w(f"scripts/bench.sh{' --quick' if quick else ''} --sections sizes --peers {','.join(speers)} "
          f"--rounds {rounds} --size-duration {meta['size_duration']}"
          + (f" --size-focus-rounds {frounds}" if frounds > rounds else "")
          + (f" --size-large-connections {meta['size_large_connections']}" if meta.get("size_large_connections") else ""))
        for p in speers:
            if f"sz-{p}" in cmds:
                w(cmds[f"sz-{p}"])
        w(f"taskset -c {meta['cpus_load']} wrk -t{threads} -c{usual} -d{meta['size_duration']}s --latency "
          "http://127.0.0.1:PORT/N")
        w("```")
        w("")
        xt = [(s, SIZE_LABEL.get(s, str(s))) for s in sizes]
        panels = []
        for key, ptitle, ylab in (("rps", "Requests/s", "requests/s (log scale)"),
                                  ("cpu_us_per_req", "Server CPU per request (lower is better)",
                                   "server CPU µs / request (log scale)")):
            ser = []
            for p in speers:
                pts = []
                for s in sizes:
                    st3 = stats3([r[key] for r in size_runs if r["peer"] == p and size_of(r) == s])
                    if st3:
                        pts.append((s, *st3))
                ser.append((p, pts))
            panels.append((ptitle, ser, ylab))
        name = charts.lines_chart("size_sweep.svg", f"Response size sweep (wrk, {usual} connections"
                                  + "".join(f", {', '.join(map(str, conns_at[sz]))} at {SIZE_LABEL.get(sz, sz)}"
                                            for sz in fewer) + ", one worker)",
                                  "response body size", "", None, logx=True, logy=True, xtics=xt,
                                  panels=panels, labels={p: slabel(p) for p in speers})
        img(name, "response size sweep")

    # ------------------------------------------------------------ 5. scaling
    sc_runs = sel("scaling")
    if sc_runs:
        workers = sorted({r["workers"] for r in sc_runs})
        scpeers = ordered({r["peer"] for r in sc_runs})
        sconns = sc_runs[0]["conns"]
        w("## 5. Scaling with workers")
        w("")
        overlap = set(load_cpus) & set(parse_cpu_list(meta["scale_cpus"]))
        w(f"Workers 1, …, {workers[-1]} pinned to the first CPUs of {meta['scale_cpus']}; wrk "
          f"(`-c{sconns}`, {meta['duration']} s) on CPU(s) {meta['cpus_load']}."
          + (f" **On this machine the load generator shares CPU(s) {','.join(map(str, sorted(overlap)))} "
             "with the server's workers** once they spread there: with 2 cores, 2 workers compete with wrk "
             "for the second core, so this shows little about scaling beyond one core; run "
             "`scripts/bench.sh --scale-cpus 0-7 --cpus-load 8-15` on a bigger machine." if overlap else ""))
        w("")
        cols = [(wk, m) for m in MODES for wk in workers if any(r["mode"] == m for r in sc_runs)]
        for key, what, fmt in (("rps", "Requests/s", fmt_rate), ("cpu_us_per_req", "Server CPU µs per request", fmt_cpu)):
            w(f"### {what}")
            w("")
            w("| peer | " + " | ".join(f"{MODES[m]} {wk} worker{'s' if wk > 1 else ''}" for wk, m in cols) + " | errors |")
            w("|---|" + "---:|" * len(cols) + "---|")
            for p in scpeers:
                cells = [med_range([r[key] for r in sc_runs if r["peer"] == p and r["workers"] == wk and r["mode"] == m], fmt)
                         for wk, m in cols]
                errs = summarize([e for r in sc_runs if r["peer"] == p for e in problems(r)])
                w(f"| {LABEL[p]} | " + " | ".join(cells) + f" | {errors_cell(errs)} |")
            w("")
        panels = []
        for m in [m for m in MODES if any(r["mode"] == m for r in sc_runs)]:
            ser = []
            for p in scpeers:
                pts = []
                for wk in workers:
                    s = stats3([r["rps"] for r in sc_runs if r["peer"] == p and r["workers"] == wk and r["mode"] == m])
                    if s:
                        pts.append((wk, *s))
                ser.append((p, pts))
            panels.append((f"{MODES[m]}{' ×' + depth if m == 'pipelined' else ''}", ser))
        name = charts.lines_chart("scaling.svg", f"Requests/s by workers (wrk -c{sconns})", "workers",
                                  "requests/s", None, logx=False, logy=None,
                                  xtics=[(wk, str(wk)) for wk in workers], panels=panels)
        img(name, "scaling with workers")

    # ------------------------------------------------------------ 6. micro-benchmarks
    if cg or crit:
        w("## 6. Micro-benchmarks")
        w("")
    if cg:
        n = int(meta["callgrind_requests"])
        w(f"Instructions per request through the sans-IO connection (parse → `hello` → encode, no "
          f"sockets): `valgrind --tool=callgrind target/release/examples/callgrind_requests N`, "
          f"(Ir(N) − Ir(0)) ÷ N with N = {n:,}; pipelined feeds {depth} requests per read. Callgrind "
          "counts instructions, so this is deterministic: it does not depend on the machine's load.")
        w("")
        w("| mode | Ir at N = 0 | Ir at N | instructions per request |")
        w("|---|---:|---:|---:|")
        for mode in ("plain", "pipelined"):
            per, ir0s, irns = [], [], []
            for rnd in sorted({row["round"] for row in cg}):
                rows = {int(row["requests"]): row for row in cg if row["mode"] == mode and row["round"] == rnd}
                if 0 in rows and n in rows and rows[0]["ir"] and rows[n]["ir"]:
                    ir0, irn = int(rows[0]["ir"]), int(rows[n]["ir"])
                    ir0s.append(ir0); irns.append(irn)
                    per.append((irn - ir0) / n)
            w(f"| {MODES[mode]} | {med_range(ir0s, lambda v: f'{v:,.0f}')} | {med_range(irns, lambda v: f'{v:,.0f}')} "
              f"| {med_range(per, lambda v: f'{v:,.0f}')} |")
        w("")
    if crit:
        w(f"Criterion (`{meta['criterion_cmd']}`): time per iteration, estimate [95% interval]. "
          "`wrk_get_pipelined_16` pushes 16 requests per iteration.")
        w("")
        w("| bench | time | throughput |")
        w("|---|---:|---:|")
        for name, (lo, est, hi), thr in crit:
            w(f"| `{name}` | {fmt_ns(est)} [{fmt_ns(lo)} – {fmt_ns(hi)}] | {thr or '—'} |")
        w("")
    elif "criterion" not in sections:
        w("The criterion benches (`cargo bench --bench http`) were not run (they run in the full mode, "
          "or with `--criterion`).")
        w("")

    # ------------------------------------------------------------ 7. lifecycle
    lifecycle = args.charts / "lifecycle.md"
    if lifecycle.exists():
        w("## 7. Lifecycle under load")
        w("")
        w("Reload, resize, upgrade, recycling and killed workers under a steady load, every error "
          "counted: the report `scripts/lifecycle.sh` writes to "
          f"[`{os.path.relpath(lifecycle, args.out.parent)}`]({os.path.relpath(lifecycle, args.out.parent)}), "
          "from its own run (its date and commit are in it), included here as it is.")
        w("")
        for line in lifecycle.read_text().splitlines():
            if line.startswith("# "):
                continue  # its title: this section's heading stands for it
            if line.startswith("Generated by"):
                continue
            w("#" + line if line.startswith("## ") else line)
        w("")
        p99 = args.charts / "lifecycle_p99.md"
        if p99.exists():
            w("### p99 during the events, alternating rounds")
            w("")
            for line in p99.read_text().splitlines():
                if not line.startswith("# "):
                    w(line)
            w("")

    # ------------------------------------------------------------ 8. reports of their own
    extra = [
        ("access_log.md", "8. Access log cost", "scripts/access_log_cost.sh"),
        ("socket_activation.md", "9. Socket activation: per-worker or shared sockets",
         "scripts/socket_activation.sh"),
        ("metrics.md", "10. Metrics cost", "scripts/metrics_cost.sh"),
    ]
    for name, title, script in extra:
        report = args.charts / name
        if not report.exists():
            continue
        rel = os.path.relpath(report, args.out.parent)
        w(f"## {title}")
        w("")
        w(f"From its own run of `{script}` (its date and commit are in it): "
          f"[`{rel}`]({rel}), included here as it is.")
        w("")
        for line in report.read_text().splitlines():
            if not line.startswith("# "):
                w(line)
        w("")

    # ------------------------------------------------------------ raw data
    w("## Raw data")
    w("")
    if runs:
        w("<details><summary>Every recorded wrk run, in the order it ran</summary>")
        w("")
        w("| section | round | peer | workers | mode | conns | path | req/s | requests | server CPU s "
          "| CPU µs/req | wrk p50 | wrk p99 | server cores busy | load cores busy | others | errors |")
        w("|---|---:|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in runs:
            p = problems(r)
            flag = " ⚠" if r["others"] is not None and r["others"] > OTHER_WORK_LIMIT else ""
            w(f"| {r['section']} | {r['round']} | {r['peer']} | {r['workers']} | {r['mode']} | {r['conns']} "
              f"| `{r['path']}` | {fmt_rate(r['rps'])} | {r['requests'] if r['requests'] is not None else '—'} "
              f"| {fmt_cpu(r['cpu_s'])} | {fmt_cpu(r['cpu_us_per_req'])} | {fmt_lat(r['p50'])} | {fmt_lat(r['p99'])} "
              f"| {pct(r['srv_busy'])} | {pct(r['load_busy'])} | {pct(r['others'])}{flag} | {errors_cell(p)} |")
        w("")
        w("</details>")
        w("")
    if lat:
        w("<details><summary>Every loadgen run</summary>")
        w("")
        w("| round | peer | rate | sent | completed | errors | achieved | p50 | p90 | p99 | p99.9 | max "
          "| server CPU s | others | problems |")
        w("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in lat:
            j = r["json"] or {}
            flag = " ⚠" if r["others"] is not None and r["others"] > OTHER_WORK_LIMIT else ""
            w(f"| {r['round']} | {r['peer']} | {r['rate']} | {j.get('sent', '—')} | {j.get('completed', '—')} "
              f"| {j.get('errors', '—')} | {fmt_rate(j.get('achieved_rps'))} "
              + " ".join(f"| {fmt_lat(j.get(k))}" for k in ("p50_us", "p90_us", "p99_us", "p999_us", "max_us"))
              + f" | {fmt_cpu(r['cpu_s'])} | {pct(r['others'])}{flag} | {errors_cell(latency_problems(r))} |")
        w("")
        w("</details>")
        w("")
    if mem:
        w("<details><summary>Every memory measurement</summary>")
        w("")
        w("| round | peer | held | VmRSS before (kB) | VmRSS holding (kB) | per connection |")
        w("|---:|---|---:|---:|---:|---:|")
        for row in mem:
            held = int(row["held"])
            per = (int(row["rss_after_kb"]) - int(row["rss_before_kb"])) * 1024 / held if held else None
            w(f"| {row['round']} | {row['peer']} | {held} | {row['rss_before_kb']} | {row['rss_after_kb']} "
              f"| {fmt_bytes(per)} |")
        w("")
        w("</details>")
        w("")
    if slow:
        w("<details><summary>Every slow-read attack</summary>")
        w("")
        w("| round | peer | connections | open (ss) | connected (slowhttptest) | VmRSS before (kB) | peak (kB) "
          "| after (kB) | per slow reader | readings | probes answered | p50 | slowest | slowhttptest |")
        w("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in slow:
            w(f"| {r['round']} | {r['peer']} | {r['conns']} | {r['open_peak']} | "
              f"{r['tool_connected'] if r['tool_connected'] is not None else '—'} | {r['rss_before_kb']} "
              f"| {r['rss_peak_kb']} | {r['rss_after_kb']} | {fmt_bytes(r['per_conn'])} | {r['samples']} "
              f"| {len(r['probe_ok'])} of {len(r['probes'])} | {fmt_lat(r['probe_p50'])} | {fmt_lat(r['probe_max'])} "
              f"| {r['tool_status'] or '—'} (exit {r['slow_rc']}) |")
        w("")
        w("Raw: `target/bench/raw/slowread/` (`*.samples`: ms, VmRSS kB, open connections; `*.probes`: ms, curl "
          "exit, status, bytes, seconds; slowhttptest's output, CSV and HTML).")
        w("")
        w("</details>")
        w("")
    if cg:
        w("<details><summary>Every callgrind run</summary>")
        w("")
        w("| round | mode | N | Ir | exit |")
        w("|---:|---|---:|---:|---:|")
        for row in cg:
            w(f"| {row['round']} | {row['mode']} | {row['requests']} | {row['ir'] or '—'} | {row['rc']} |")
        w("")
        w("</details>")
        w("")
    other_cmds = [(k, v) for k, v in sorted(cmds.items()) if not k.startswith(("tp-", "mem-", "sr-"))]
    mem_cmds = [(k, v) for k, v in sorted(cmds.items()) if k.startswith(("mem-", "sr-")) and k.endswith("-r1")]
    if other_cmds or mem_cmds:
        w("<details><summary>Server command lines of the other sections</summary>")
        w("")
        w("```sh")
        for k, v in mem_cmds + other_cmds:
            w(f"# {k}")
            w(v)
        w("```")
        w("")
        w("</details>")
        w("")
    if charts.failed:
        w("Charts that could not be drawn: " + "; ".join(charts.failed))
        w("")
    args.out.write_text("\n".join(md))
    for f in charts.failed:
        print(f"report.py: warning: {f}")


if __name__ == "__main__":
    main()
