#!/usr/bin/env python3
"""Turn the raw numbers collected by scripts/bench.sh into BENCHMARKS.md.

Inputs (all written by bench.sh into target/bench/):
  meta.tsv   key<TAB>value lines: machine, versions, options, commands, notes
  runs.tsv   one row per recorded wrk run: round, server, mode, server CPU ticks before/after,
             wrk exit code, whether the server was alive after the run, restarts, raw file name
  *.txt      wrk's own output for each run (parsed here)
"""
import argparse
import csv
import re
import statistics
from pathlib import Path

OTHER_WORK_LIMIT = 0.05  # share of the server core used by others beyond which a run is flagged
MODES = {"plain": "Unpipelined", "pipelined": "Pipelined"}
TIME_UNITS_US = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}


def parse_time_us(value, unit):
    return float(value) * TIME_UNITS_US[unit]


def parse_wrk(text):
    """The figures we need from wrk's output (None where wrk did not print them)."""
    out = {"rps": None, "requests": None, "p50": None, "p99": None,
           "connect": 0, "read": 0, "write": 0, "timeout": 0, "non2xx": 0}
    if m := re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M):
        out["rps"] = float(m.group(1))
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


def core_busy(raw_dir, raw_name, cpus):
    """(busy ticks, total ticks) of CPUS over one run, from the snapshots bench.sh took."""
    stem = raw_dir / raw_name.removesuffix(".txt")
    try:
        before = read_procstat(Path(f"{stem}.procstat-before"))
        after = read_procstat(Path(f"{stem}.procstat-after"))
    except (OSError, ValueError):
        return None
    busy = sum(after[c][0] - before[c][0] for c in cpus if c in after and c in before)
    total = sum(after[c][1] - before[c][1] for c in cpus if c in after and c in before)
    return (busy, total) if total > 0 else None


def load_runs(runs_tsv, raw_dir, clk_tck, server_cpus, load_cpus):
    runs = []
    with open(runs_tsv, newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            text = (raw_dir / row["raw"]).read_text(errors="replace")
            r = parse_wrk(text)
            r.update(round=int(row["round"]), server=row["server"], mode=row["mode"],
                     wrk_rc=int(row["wrk_rc"]), alive=row["alive_after"] == "1",
                     restarts=int(row["restarts"]), raw=row["raw"])
            ticks = int(row["ticks_after"]) - int(row["ticks_before"])
            # A server that died during the run took its CPU time with it: no figure.
            r["cpu_s"] = ticks / clk_tck if r["alive"] and ticks >= 0 else None
            r["cpu_us_per_req"] = (r["cpu_s"] * 1e6 / r["requests"]
                                   if r["cpu_s"] is not None and r["requests"] else None)
            # How busy the cores were: the server's core beyond the server's own time means other
            # work shared it; a load core below ~100% means wrk was not the bottleneck.
            srv, load = core_busy(raw_dir, row["raw"], server_cpus), core_busy(raw_dir, row["raw"], load_cpus)
            r["srv_busy"] = srv[0] / srv[1] if srv else None
            r["srv_other"] = (max(0, srv[0] - ticks) / srv[1]
                              if srv and r["cpu_s"] is not None else None)
            r["load_busy"] = load[0] / load[1] if load else None
            runs.append(r)
    return runs


def problems(r):
    """Human-readable list of what went wrong in one run (empty when nothing did)."""
    p = []
    if r["non2xx"]:
        p.append(f"non-2xx/3xx {r['non2xx']}")
    for k in ("connect", "read", "write", "timeout"):
        if r[k]:
            p.append(f"{k} errors {r[k]}")
    if r["wrk_rc"] != 0:
        p.append(f"wrk exit {r['wrk_rc']}")
    if r["rps"] is None or r["requests"] is None:
        p.append("no result from wrk")
    elif r["requests"] == 0:
        p.append("0 requests")
    if not r["alive"]:
        p.append("server died")
    return p


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
    return "—" if v is None else f"{v:.2f}"


def fmt_lat(us):
    if us is None:
        return "n/a"
    if us >= 1e6:
        return f"{us / 1e6:.2f} s"
    if us >= 1e3:
        return f"{us / 1e3:.2f} ms"
    return f"{us:.0f} µs"


def med_range(values, fmt):
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    med = fmt(statistics.median(values))
    if len(values) == 1:
        return med
    return f"{med} ({fmt(min(values))}–{fmt(max(values))})"


def median_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a, b):
    return "—" if a is None or b is None or b == 0 else f"{a / b:.2f}"


def bar_chart(rows, width=40):
    """rows: [(label, value)] -> lines of a text bar chart (value None -> no bar)."""
    vmax = max((v for _, v in rows if v is not None), default=0) or 1
    label_w = max(len(label) for label, _ in rows)
    lines = []
    for label, v in rows:
        if v is None:
            lines.append(f"{label:<{label_w}}  (no data)")
            continue
        n = max(1, round(v / vmax * width))
        lines.append(f"{label:<{label_w}}  {'█' * n} {v:.2f}")
    return lines


# ---------------------------------------------------------------- report
def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--meta", required=True, type=Path)
    ap.add_argument("--runs", required=True, type=Path)
    ap.add_argument("--raw", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args()

    meta, notes = {}, []
    for line in args.meta.read_text().splitlines():
        key, _, value = line.partition("\t")
        if key == "note":
            notes.append(value)
        else:
            meta[key] = value
    servers = meta["servers"].split(",")
    runs = load_runs(args.runs, args.raw, int(meta["clk_tck"]),
                     parse_cpu_list(meta["cpus_server"]), parse_cpu_list(meta["cpus_load"]))
    depth = meta["depth"]

    md = []
    w = md.append
    w("# Benchmarks")
    w("")
    w("<!-- Generated by scripts/bench.sh; do not edit by hand: rerun the script. -->")
    w("")
    w(f"Generated by `scripts/bench.sh` on {meta['date']}, commit {meta['commit']}.")
    w("")
    w("| | |")
    w("|---|---|")
    w(f"| CPU | {meta['cpu']}, {meta['cores']} cores |")
    w(f"| Kernel | {meta['kernel']} |")
    w(f"| Load average at start | {meta.get('loadavg', '?')} (1, 5, 15 min; other work skews the figures) |")
    w(f"| wrk | {meta['wrk']} |")
    if "nginx" in meta:
        w(f"| nginx | {meta['nginx']} (Debian nginx-light) |")
    if "ringcorn" in meta:
        w(f"| ringcorn | {meta['ringcorn']} |")
    if "rustc" in meta:
        w(f"| rustc | {meta['rustc']} |")
    w(f"| Run | {meta['rounds']} round(s) × {meta['duration']} s per server and mode, "
      f"{meta['warmup']} s warm-up; whole script took {meta['elapsed']} s |")
    w("")

    w("## Method")
    w("")
    w(f"- Each server answers `GET /` with `200 OK`, `Content-Type: text/plain`, body `Hello, World!`, "
      f"from one worker pinned to CPU {meta['cpus_server']}; wrk is pinned to CPU {meta['cpus_load']}. "
      "All servers stay up on their own 127.0.0.1 ports for the whole run; only one is under load at a time.")
    w("- Runs alternate: for each round, for each server "
      f"({', '.join(servers)}), for each mode (unpipelined, then pipelined {depth} deep). "
      "Figures are medians over the rounds, with (min–max).")
    w("- **Server CPU µs/req** = utime+stime of the server (from `/proc/PID/stat`, summed over the "
      "process and its descendants: nginx's master and worker) read right before and right after the wrk "
      "run, ÷ requests completed. On a 2-core machine wrk saturates its own core near the servers' "
      "rate, so requests/s mostly measures wrk; CPU per request is what tells the servers apart "
      "(lower is better).")
    w(f"- Pipelined mode uses `scripts/pipeline.lua`: {depth} requests per write. wrk counts requests "
      f"from responses, so requests/s counts every pipelined request; its latency is recorded per "
      f"batch of {depth}.")
    w("- Latency p50/p99 are wrk's `--latency` figures, medians over rounds. Unpipelined they are per "
      "request. Pipelined they are per batch and not trustworthy: wrk 4.1.0 corrects for coordinated "
      "omission with an interval computed per request, not per batch, which adds synthetic samples "
      "below the real ones, and prints 0 for percentiles that land there (shown as n/a). Compare "
      "pipelined runs by requests/s and CPU per request.")
    w("- Core load: `/proc/stat` is read with the server's CPU time. In the raw table, *server core "
      "busy* is how busy the server's core was, *(others)* the part not spent by the server (other "
      "processes: such a run is flagged above 5%), *load core busy* how busy wrk's core was.")
    w("- Errors: wrk's socket errors (connect/read/write/timeout) and non-2xx/3xx responses, summed over "
      "rounds; a server that died or a wrk run that failed is listed there too.")
    w("")
    w("Commands (PORT is chosen free at run time):")
    w("")
    w("```sh")
    for s in servers:
        w(meta.get(f"cmd_{s}", ""))
    w(meta["wrk_plain"])
    w(f"PIPELINE_DEPTH={depth} " + meta["wrk_pipelined"])
    w("```")
    w("")
    w("nginx runs from `scripts/nginx.conf.template` (one worker, `access_log off`, "
      "`keepalive_requests 10000000`, `return 200 \"Hello, World!\"`). The ceiling is "
      "`../shared/ceiling`, a bare io_uring loop that answers every `\\r\\n\\r\\n` with a fixed "
      "response without parsing HTTP: the most one core can serve on this kernel.")
    w("")
    w("Response to one `curl -i` before the runs (status line, whole response size):")
    w("")
    w("| server | status | bytes |")
    w("|---|---|---:|")
    for s in servers:
        w(f"| {s} | `{meta.get(f'response_{s}', '?') or '(no response)'}` | {meta.get(f'response_bytes_{s}', '?')} |")
    w("")
    if notes:
        w("Notes:")
        w("")
        for n in notes:
            w(f"- {n}")
        w("")

    w("## Results")
    medians = {}
    for mode, title in MODES.items():
        w("")
        w(f"### {title}" + (f" ×{depth}" if mode == "pipelined" else "")
          + f" (`wrk -t1 -c{meta['connections']}`)")
        w("")
        lat = " (per batch, unreliable)" if mode == "pipelined" else ""
        w(f"| server | req/s median (min–max) | server CPU µs/req median (min–max) | p50{lat} | p99{lat} | errors |")
        w("|---|---:|---:|---:|---:|---|")
        for s in servers:
            rs = [r for r in runs if r["server"] == s and r["mode"] == mode]
            errs = [p for r in rs for p in problems(r)]
            if any(r["restarts"] for r in rs):
                errs.append(f"restarted {max(r['restarts'] for r in rs)}×")
            medians[(s, mode)] = (median_or_none([r["rps"] for r in rs]),
                                  median_or_none([r["cpu_us_per_req"] for r in rs]))
            w(f"| {s} | {med_range([r['rps'] for r in rs], fmt_rate)} "
              f"| {med_range([r['cpu_us_per_req'] for r in rs], fmt_cpu)} "
              f"| {fmt_lat(median_or_none([r['p50'] for r in rs]))} "
              f"| {fmt_lat(median_or_none([r['p99'] for r in rs]))} "
              f"| {'**' + '; '.join(errs) + '**' if errs else 'none'} |")
        disturbed = [r for r in runs if r["mode"] == mode
                     and r["srv_other"] is not None and r["srv_other"] > OTHER_WORK_LIMIT]
        if disturbed:
            w("")
            w("**Other work shared the server core** during "
              + ", ".join(f"{r['server']} round {r['round']} ({pct(r['srv_other'])} of the core)"
                          for r in disturbed)
              + ": those figures are skewed; rerun on an idle machine.")
        if "ringcorn" in servers:
            w("")
            rr, rc = medians[("ringcorn", mode)]
            for peer in ("nginx", "ceiling"):
                if peer in servers:
                    pr, pc = medians[(peer, mode)]
                    w(f"- ringcorn / {peer}: req/s × {ratio(rr, pr)}, CPU per request × {ratio(rc, pc)}"
                      " (CPU: lower is better)")
        w("")
        w("Server CPU µs per request (median):")
        w("")
        w("```")
        md.extend(bar_chart([(s, medians[(s, mode)][1]) for s in servers]))
        w("```")

    w("")
    w("## Raw runs")
    w("")
    w("<details><summary>Every recorded run, in the order it ran</summary>")
    w("")
    w("| round | server | mode | req/s | requests | server CPU s | CPU µs/req | p50 | p99 "
      "| server core busy (others) | load core busy | errors |")
    w("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in runs:
        p = problems(r)
        w(f"| {r['round']} | {r['server']} | {r['mode']} | {fmt_rate(r['rps'])} "
          f"| {r['requests'] if r['requests'] is not None else '—'} | {fmt_cpu(r['cpu_s'])} "
          f"| {fmt_cpu(r['cpu_us_per_req'])} | {fmt_lat(r['p50'])} | {fmt_lat(r['p99'])} "
          f"| {pct(r['srv_busy'])} ({pct(r['srv_other'])}) | {pct(r['load_busy'])} "
          f"| {'**' + '; '.join(p) + '**' if p else 'none'} |")
    w("")
    w("</details>")
    w("")
    args.out.write_text("\n".join(md))


if __name__ == "__main__":
    main()
