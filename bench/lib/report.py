"""Turns bench/run.sh's results.jsonl into the one table, prints it, writes it
as markdown, and exits non-zero if any target failed to serve its load.

Usage: report.py RESULTS.jsonl OUT.md --mode full|smoke --concurrency N --rate N
                 --streams N --seconds N [--rounds N --round-seconds N]
                 [--metrics SIDECAR_METRICS]
"""

import argparse
import datetime
import json
import os
import re
import subprocess
import sys

MAX_ERROR_RATE = 0.01
# Every case, in the table's order, with the loads it must serve.
EXPECTED = {"a": ("concurrency", "rate"), "b": ("concurrency", "rate"), "c": ("concurrency", "rate"),
            "j": ("concurrency", "rate"), "i": ("concurrency", "rate"), "g": ("concurrency", "rate"), "d": ("concurrency", "rate"),
            "h": ("concurrency", "rate"), "e": ("streams",), "f": ("streams",)}
ALL_CASES = "".join(EXPECTED)
# Rows whose "Sidecar ÷ this" cell compares (c) with them: the other proxies,
# the bare hyper proxy (the floor), and the sidecar itself with many flags
# (1.00× when flag count costs nothing).
COMPARED = "bjidh"


def load(path):
    cases = {}
    for line in open(path):
        if line.strip():
            row = json.loads(line)
            cases.setdefault(row["case"], {})[row["load"]] = row
    return cases


def throughput(row):
    return row["requests"] / (row["duration_us"] / 1e6) if row.get("duration_us") else 0


def cores(row):
    seconds = row.get("duration_us", 0) / 1e6 or row.get("wall_s", 0)
    return row["server_cpu_s"] / seconds if seconds else 0


def problems_of(case, load, row):
    """Why this load does not count as served, or None."""
    if load == "streams":
        total = row["streams_ok"] + row["streams_failed"]
        if row["streams_ok"] == 0:
            return f"({case}) no stream completed: {row['errors']}"
        if row["streams_failed"] > MAX_ERROR_RATE * total:
            return f"({case}) {row['streams_failed']} of {total} streams failed: {row['errors']}"
        return None
    failed = row["bad"] + row["socket_errors"]
    if row["requests"] == 0:
        return f"({case}) {load}: no successful request ({row['bad']} bad statuses, {row['socket_errors']} socket errors)"
    if failed > MAX_ERROR_RATE * (row["requests"] + failed):
        return f"({case}) {load}: {failed} failed requests of {row['requests'] + failed}"
    return None


def ms(us):
    return "—" if us is None else f"{us / 1000:.2f} ms"


def added(us, base):
    if us is None or base is None:
        return "—"
    return f"{(us - base) / 1000:+.2f} ms"


def num(x):
    return f"{x:,.0f}"


def mb(kb):
    return f"{kb / 1024:.1f} MB"


def machine(load_start):
    model = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = int(next(l for l in open("/proc/meminfo") if l.startswith("MemTotal")).split()[1])
        load1 = open("/proc/loadavg").read().split()[0]
    except (OSError, StopIteration, ValueError):
        mem_kb, load1 = 0, "?"
    return (f"{os.cpu_count()} × {model}, {mem_kb / 1024 / 1024:.0f} GiB RAM, "
            f"load average {load_start} at the start and {load1} at the end")


def git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def observed_split(metrics_path):
    """Requests per variant of bench-split, from the sidecar's own /metrics."""
    if not metrics_path or not os.path.exists(metrics_path):
        return None
    counts = {}
    pattern = re.compile(r'^aiflags_requests_total\{([^}]*)\}\s+([0-9.e+]+)')
    for line in open(metrics_path):
        m = pattern.match(line)
        if m and 'flag="bench-split"' in m.group(1):
            variant = re.search(r'variant="([^"]*)"', m.group(1))
            if variant and variant.group(1):  # clients that left early have none
                counts[variant.group(1)] = counts.get(variant.group(1), 0) + float(m.group(2))
    total = sum(counts.values())
    if not total:
        return None
    return ", ".join(f"{v} {100 * n / total:.1f}%" for v, n in sorted(counts.items()))


def self_reported_overhead(metrics_path):
    """p50/p99 bucket bounds of the sidecar's own aiflags_proxy_overhead_seconds."""
    if not metrics_path or not os.path.exists(metrics_path):
        return None
    buckets = []
    for line in open(metrics_path):
        m = re.match(r'^aiflags_proxy_overhead_seconds_bucket\{[^}]*le="([^"]+)"[^}]*\}\s+([0-9.e+]+)', line)
        if m:
            buckets.append((float(m.group(1)), float(m.group(2))))
    if not buckets or not buckets[-1][1]:
        return None
    buckets.sort()
    total = buckets[-1][1]

    def bound(q):
        return next(le for le, n in buckets if n >= q * total)

    fmt = lambda s: "∞" if s == float("inf") else f"{s * 1e6:.0f} µs"
    return f"p50 ≤ {fmt(bound(0.5))}, p99 ≤ {fmt(bound(0.99))} over {total:,.0f} requests"


def build(cases, args):
    rows, problems = [], []
    for case, loads in EXPECTED.items():
        if case not in args.cases:
            continue
        problems += [f"({case}) {load}: not measured" for load in loads if load not in cases.get(case, {})]
    names = {c: cases[c].get("name", {}).get("name", c) for c in cases}
    label = {"concurrency": f"{args.concurrency} connections", "rate": f"{num(args.rate)} req/s",
             "streams": f"{num(args.streams)} SSE streams"}
    base = {"concurrency": "a", "rate": "a", "streams": "e"}
    sidecar = {"concurrency": "c", "rate": "c", "streams": "f"}
    for case in ALL_CASES:
        for load in ("concurrency", "rate", "streams"):
            row = cases.get(case, {}).get(load)
            if row is None:
                continue
            problem = problems_of(case, load, row)
            if problem:
                problems.append(problem)
            if load == "streams":
                tput = row["streams_ok"] / row["seconds"] if row["seconds"] else 0
                p50, p99 = row["ttft_p50_us"], row["ttft_p99_us"]
                unit = "streams/s"
            else:
                tput, p50, p99, unit = throughput(row), row["p50_us"], row["p99_us"], "req/s"
            ref = cases.get(base[load], {}).get(load) if case != base[load] else None
            ref_p = (ref.get("ttft_p50_us"), ref.get("ttft_p99_us")) if load == "streams" and ref else \
                (ref.get("p50_us"), ref.get("p99_us")) if ref else (None, None)
            side = cases.get(sidecar[load], {}).get(load)
            ratio = "—"
            if side and load == "concurrency" and case in COMPARED and tput:
                ratio = f"{throughput(side) / tput:.2f}×"
            c = cores(row)
            memory = cases.get(case, {}).get("memory", {})
            idle = cases.get(case, {}).get("idle")
            rows.append({
                "case": case, "load": load,
                "cells": [f"({case}) {names.get(case, case)}", label[load],
                          f"{num(tput)} {unit}" + (" ⚠" if problem else ""),
                          ms(p50), ms(p99), added(p50, ref_p[0]), added(p99, ref_p[1]),
                          f"{c:.2f}", num(tput / c) if c > 0.05 else "—",
                          mb(idle["rss_kb"]) if idle else "—", mb(memory.get("hwm_kb", 0)), ratio],
                "tput": tput, "per_core": tput / c if c > 0.05 else None, "cores": c,
                "p99": p99, "ref_p99": ref_p[1],
            })
    return rows, problems


def goals(rows, cases, args, paired):
    """The goals, judged on the paired rounds (r) when they ran, else on the
    single pass; with both, the single pass's figure follows in brackets."""
    by = {(r["case"], r["load"]): r for r in rows}
    out = []
    rounds = f"median of {plural(paired['rounds'], 'paired round')}" if paired else ""

    def goal(text, value, ok):
        out.append(f"- {'met' if ok else 'NOT met'}: {text} — {value}")

    def against_nginx(case, label, target):
        side, b = by.get((case, "concurrency")), by.get(("b", "concurrency"))
        single = None
        if side and b and side["per_core"] and b["per_core"]:
            raw, per = side["tput"] / b["tput"], side["per_core"] / b["per_core"]
            single = (per, f"{per:.2f}× per core of CPU used ({num(side['per_core'])} vs {num(b['per_core'])} "
                           f"req/s per core); {raw:.2f}× raw ({num(side['tput'])} vs {num(b['tput'])} req/s)")
        text = f"throughput ≥ {target} × nginx reverse proxy's (per core), {label}"
        if paired:
            p = paired[case]
            lo, hi = p["ratio_range"]
            goal(text, f"{p['ratio']:.2f}× per core, {rounds} (rounds {lo:.2f}–{hi:.2f})"
                 + (f"; single pass {single[1]}" if single else ""), p["ratio"] >= target)
        elif single:
            goal(text, single[1], single[0] >= target)

    c, d = by.get(("c", "concurrency")), by.get(("d", "concurrency"))
    against_nginx("g", "access log on (g), issue 8", 0.8)
    against_nginx("c", "access log off (c), issue 4", 0.8)
    cr = by.get(("c", "rate"))
    single = None
    if cr and cr["ref_p99"] is not None:
        single = (cr["p99"] - cr["ref_p99"]) / 1000
    text = f"added p99 ≤ 1 ms at {num(args.rate)} req/s (c)"
    if paired:
        extra = paired["c"]["added_p99"] / 1000
        goal(text, f"{extra:+.2f} ms over nginx direct, {rounds}; nginx's proxy "
             f"{paired['b']['added_p99'] / 1000:+.2f} ms"
             + (f"; single pass {single:+.2f} ms" if single is not None else ""), extra <= 1.0)
    elif single is not None:
        goal(text, f"{single:+.2f} ms over nginx direct", single <= 1.0)
    if c and d and d["tput"]:
        goal("throughput ≥ 50 × LiteLLM's", f"{c['tput'] / d['tput']:.0f}× ({num(c['tput'])} vs {num(d['tput'])} req/s)",
             c["tput"] >= 50 * d["tput"])
    mem_c = cases.get("c", {}).get("memory")
    if mem_c:
        goal("sidecar RSS ≤ 20 MB under load", f"peak {mb(mem_c['hwm_kb'])} (VmHWM), {mb(mem_c['rss_kb'])} at the end",
             mem_c["hwm_kb"] <= 20 * 1024)
    mem_f, streams_f = cases.get("f", {}).get("memory"), cases.get("f", {}).get("streams")
    if mem_f and streams_f:
        goal(f"sidecar RSS ≤ 50 MB with {num(args.streams)} open streams",
             f"peak {mb(mem_f['hwm_kb'])} with {num(streams_f['max_open'])} streams open at once",
             mem_f["hwm_kb"] <= 50 * 1024)
    out += many_flags_goals(by, cases, paired)
    return out


def many_flags_goals(by, cases, paired):
    """(i) against (c): throughput within 10 %, RSS at most 5 MB more."""
    out = []
    c, i = by.get(("c", "concurrency")), by.get(("i", "concurrency"))
    single = None
    if c and i and c["per_core"] and i["per_core"]:
        ratio = i["per_core"] / c["per_core"]
        single = (ratio, f"{ratio:.2f}× ({num(i['per_core'])} vs {num(c['per_core'])} req/s per core; "
                         f"{num(i['tput'])} vs {num(c['tput'])} raw)")
    text = "throughput with 1,000 flags within 10 % of one flag's (per core)"
    if paired:
        ratio, (lo, hi) = paired["i"]["vs_c"], paired["i"]["vs_c_range"]
        out.append(f"- {'met' if ratio >= 0.9 else 'NOT met'}: {text} — {ratio:.2f}×, median of "
                   f"{plural(paired['rounds'], 'paired round')} (rounds {lo:.2f}–{hi:.2f})"
                   + (f"; single pass {single[1]}" if single else ""))
    elif single:
        out.append(f"- {'met' if single[0] >= 0.9 else 'NOT met'}: {text} — {single[1]}")
    one, many = cases.get("c", {}), cases.get("i", {})
    if one.get("idle") and many.get("idle") and one.get("memory") and many.get("memory"):
        idle = (many["idle"]["rss_kb"] - one["idle"]["rss_kb"]) / 1024
        peak = (many["memory"]["hwm_kb"] - one["memory"]["hwm_kb"]) / 1024
        out.append(f"- {'met' if max(idle, peak) <= 5 else 'NOT met'}: RSS with 1,000 flags at most 5 MB over one "
                   f"flag's — idle {idle:+.1f} MB ({mb(many['idle']['rss_kb'])} vs {mb(one['idle']['rss_kb'])}), "
                   f"under load {peak:+.1f} MB ({mb(many['memory']['hwm_kb'])} vs {mb(one['memory']['hwm_kb'])})")
    return out


PAIRED = "abjcgi"


def plural(n, noun):
    return f"{n} {noun}" + ("" if n == 1 else "s")


def median(values):
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def cpu_of(row):
    """A fixed-concurrency load's throughput per core and CPU a request (µs)."""
    per_request = lambda seconds: 1e6 * seconds / row["requests"]
    return {"per_core": row["requests"] / row["server_cpu_s"], "cpu": per_request(row["server_cpu_s"]),
            "user": per_request(row["server_user_s"]), "kernel": per_request(row["server_sys_s"])}


def collect_rounds(cases, tag, targets, loads, args):
    """Each target's loads in each round of case `tag`: per[target][round]
    holds cpu_of() its fixed-concurrency load and the p99 of its fixed-rate
    one. Returns (per, the rounds every target completed, problems)."""
    per, problems = {}, []
    for case in targets:
        measured = cases.get(f"{tag}:{case}", {})
        for k in range(1, args.rounds + 1):
            for load in loads:
                row = measured.get(f"{load}:{k}")
                if row is None:
                    problems.append(f"({tag}) {case} {load}, round {k}: not measured")
                    continue
                problem = problems_of(f"{tag} {case}", f"{load}, round {k}", row)
                if problem:
                    problems.append(problem)
                    continue
                entry = per.setdefault(case, {}).setdefault(k, {})
                if load == "rate":
                    entry["p99"] = row["p99_us"]
                elif row["server_cpu_s"] > 0:
                    entry.update(cpu_of(row))
    wanted = {"per_core", "p99"} if "rate" in loads else {"per_core"}
    rounds = [k for k in range(1, args.rounds + 1)
              if all(wanted <= per.get(c, {}).get(k, {}).keys() for c in targets)]
    return per, rounds, problems


def round_summary(per, case, rounds):
    """One target's medians over the rounds: per core, its ratio to nginx's
    proxy's taken within each round (and their range), CPU a request."""
    pick = lambda key: [per[case][k][key] for k in rounds]
    ratios = [per[case][k]["per_core"] / per["b"][k]["per_core"] for k in rounds]
    return {"per_core": median(pick("per_core")), "ratio": median(ratios),
            "ratio_range": (min(ratios), max(ratios)), "cpu": median(pick("cpu")),
            "user": median(pick("user")), "kernel": median(pick("kernel"))}


def paired_rounds(cases, args):
    """(r): per round, each target's CPU a request and p99 at the fixed rate;
    ratios are taken within a round (seconds apart), then their median over
    the rounds. Returns ({case: summary}, problems)."""
    per, rounds, problems = collect_rounds(cases, "r", PAIRED, ("concurrency", "rate"), args)
    if not rounds:
        return {}, problems
    out = {}
    for case in PAIRED:
        added = [per[case][k]["p99"] - per["a"][k]["p99"] for k in rounds]
        out[case] = round_summary(per, case, rounds) | {
            "p99": median([per[case][k]["p99"] for k in rounds]), "added_p99": median(added),
            "added_range": (min(added), max(added))}
    many = [per["i"][k]["per_core"] / per["c"][k]["per_core"] for k in rounds]
    out["i"]["vs_c"], out["i"]["vs_c_range"] = median(many), (min(many), max(many))
    out["rounds"] = len(rounds)
    return out, problems


# How the rounds' tables read.
ROUNDS_NOTE = ("Each cell is the median over the rounds of a figure taken within one round; "
               "the ranges are the rounds' lowest and highest.")


def ratio_cell(case, p):
    """A target's median ratio to nginx's proxy and its range; none for (b) itself."""
    lo, hi = p["ratio_range"]
    return "—" if case == "b" else f"{p['ratio']:.2f}× ({lo:.2f}–{hi:.2f})"


def paired_table(paired, cases, args):
    if not paired:
        return []
    # The single pass names its cases; a run of the rounds alone has none.
    known = {"a": "nginx upstream (direct)", "b": "nginx reverse proxy", "j": "bare hyper proxy (the floor)",
             "c": "aiflags sidecar", "g": "aiflags sidecar, access log on", "i": "aiflags sidecar, 1,000 flags"}
    names = {c: cases.get(c, {}).get("name", {}).get("name", known[c]) for c in PAIRED}
    out = ["", f"Paired rounds (r): the six targets side by side, loaded in turn ({num(args.concurrency)} connections, "
           f"then {num(args.rate)} req/s, {args.round_seconds} s each), {plural(paired['rounds'], 'round')}, each starting one "
           f"target later. {ROUNDS_NOTE}", "",
           "| Target | Per core | ÷ nginx proxy's per core | user space | kernel | p99 at "
           f"{num(args.rate)} req/s | added p99 (over (a) in the round) |",
           "|---|---|---|---|---|---|---|"]
    for case in PAIRED:
        p = paired[case]
        added_cell = "—" if case == "a" else \
            f"{p['added_p99'] / 1000:+.2f} ms ({p['added_range'][0] / 1000:+.2f} to {p['added_range'][1] / 1000:+.2f})"
        out.append(f"| ({case}) {names[case]} | {num(p['per_core'])} | {ratio_cell(case, p)} | {p['user']:.1f} µs | "
                   f"{p['kernel']:.1f} µs | {ms(p['p99'])} | {added_cell} |")
    return out


# (x), the ablation: each target and what it has switched off, in run.sh's order.
ABLATION = {"b": ("nginx reverse proxy", "—"), "j": ("bare hyper proxy (the floor)", "—"),
            "k": ("raw HTTP/1.1 forwarder, no hyper", "—"),
            "x0": ("sidecar, ablation build", "nothing"),
            "x1": ("sidecar, ablation build", "the answer judge (and usage)"),
            "x2": ("sidecar, ablation build", "the report (metrics, access-log line)"),
            "x3": ("sidecar, ablation build", "the judge and the report"),
            "x4": ("sidecar, ablation build, a request no flag matches", "all flag work"),
            "x5": ("sidecar, ablation build, a request no flag matches", "all flag work and the report")}


def ablation_rounds(cases, args):
    """(x): per round, each target's throughput per core over nginx's proxy's
    in the same round, and CPU a request; medians over the rounds."""
    per, rounds, problems = collect_rounds(cases, "x", ABLATION, ("concurrency",), args)
    if not rounds:
        return {}, problems
    return {"rounds": len(rounds)} | {case: round_summary(per, case, rounds) for case in ABLATION}, problems


def ablation_table(ablation, args):
    if not ablation:
        return []
    budget = ablation["b"]["cpu"] / 0.8
    out = ["", f"Ablation (x): what each part of a request's work costs. The sidecar's ablation build "
           "(`--features ablation`) with parts switched off by `AIFLAGS_ABLATE`, access log on, loaded in "
           "turn with (b), (j) and (k), a forwarder without hyper (`aiflags-dev raw-proxy`: `httparse` and byte "
           f"copies) ({num(args.concurrency)} connections, {args.round_seconds} s each), "
           f"{plural(ablation['rounds'], 'round')}, each starting one target later. {ROUNDS_NOTE}", "",
           "| Target | switched off | Per core | ÷ nginx proxy's per core | CPU a request | user space | kernel |",
           "|---|---|---|---|---|---|---|"]
    for case, (name, off) in ABLATION.items():
        p = ablation[case]
        out.append(f"| ({case}) {name} | {off} | {num(p['per_core'])} | {ratio_cell(case, p)} | {p['cpu']:.1f} µs | "
                   f"{p['user']:.1f} µs | {p['kernel']:.1f} µs |")
    out += ["", f"0.8 × nginx's throughput per core allows {budget:.1f} µs of CPU a request "
            f"(nginx's proxy: {ablation['b']['cpu']:.1f} µs; the floor: {ablation['j']['cpu']:.1f} µs)."]
    return out


def cpu_per_request(cases, args):
    """User-space and kernel CPU per request under fixed concurrency, from
    the servers' utime and stime: how far each side of the sidecar is from
    nginx's cost, and what 0.8 × nginx's throughput per core would allow."""
    rows = {}
    for case in ("b", "j", "c", "g", "i"):
        row = cases.get(case, {}).get("concurrency")
        if row and row.get("requests") and "server_user_s" in row:
            rows[case] = (1e6 * row["server_user_s"] / row["requests"],
                          1e6 * row["server_sys_s"] / row["requests"])
    if "b" not in rows or len(rows) < 2:
        return []
    names = {c: cases[c].get("name", {}).get("name", c) for c in rows}
    out = ["", f"CPU per request at {args.concurrency} connections (utime and stime over the load; "
           "clock ticks, so about ±1 µs):", "",
           "| Target | user space | kernel | total | over nginx's: user | kernel |",
           "|---|---|---|---|---|---|"]
    nu, nk = rows["b"]
    for case, (u, k) in rows.items():
        over = ("—", "—") if case == "b" else (f"{u - nu:+.1f} µs", f"{k - nk:+.1f} µs")
        out.append(f"| ({case}) {names[case]} | {u:.1f} µs | {k:.1f} µs | {u + k:.1f} µs | {over[0]} | {over[1]} |")
    budget = (nu + nk) / 0.8
    out += ["", f"0.8 × nginx's throughput per core allows {budget:.1f} µs of CPU per request "
            f"(nginx: {nu + nk:.1f} µs)."]
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("results")
    p.add_argument("out")
    p.add_argument("--mode", default="full")
    p.add_argument("--cases", default=ALL_CASES)
    p.add_argument("--concurrency", type=int)
    p.add_argument("--rate", type=int)
    p.add_argument("--streams", type=int)
    p.add_argument("--seconds", type=int)
    p.add_argument("--rounds", type=int, default=0)
    p.add_argument("--round-seconds", type=int, default=0)
    p.add_argument("--metrics")
    p.add_argument("--versions", default="")
    p.add_argument("--load-start", default="?")
    args = p.parse_args()
    cases = load(args.results)
    rows, problems = build(cases, args)
    paired, ablation = {}, {}
    if "r" in args.cases:
        paired, paired_problems = paired_rounds(cases, args)
        problems += paired_problems
    if "x" in args.cases:
        ablation, ablation_problems = ablation_rounds(cases, args)
        problems += ablation_problems
    header = ["Target", "Load", "Throughput", "p50", "p99", "Added p50", "Added p99",
              "Server CPU (cores)", "Per core", "Idle RSS", "Peak RSS", "Sidecar ÷ this"]
    lines = [
        f"# aiflags benchmark ({args.mode})",
        "",
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, harness at commit {git_commit()}, "
        f"`bench/run.sh{' --smoke' if args.mode == 'smoke' else ''}`; {machine(args.load_start)}.",
        f"Measured: {args.versions}.",
        f"{args.seconds} s per load. Latency for streams is time to first token; added = minus "
        "(a) for requests, minus (e) for streams. Server CPU is the target's own CPU time over the "
        "load; per core = throughput ÷ that. Idle RSS is VmRSS after one request and before any load, "
        "peak RSS is VmHWM after the loads, each summed over the target's processes. "
        "Sidecar ÷ this is (c)'s throughput over the row's.",
    ]
    if rows:
        lines += ["", "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(r["cells"]) + " |" for r in rows]
    measured_goals = any(c in args.cases for c in ALL_CASES + "r")
    split, overhead = observed_split(args.metrics), self_reported_overhead(args.metrics)
    if split:
        lines += ["", f"The sidecar's own metrics after (c): split of bench-split {split}; "
                  f"proxy overhead (aiflags_proxy_overhead_seconds, time not spent waiting on "
                  f"the upstream) {overhead}."]
    if measured_goals:
        lines += ["", "Goals (issue 8, and issue 4's that stand)"
                  + (" — smoke durations, indicative only:" if args.mode == "smoke" else ":")]
        lines += goals(rows, cases, args, paired)
    lines += paired_table(paired, cases, args)
    lines += cpu_per_request(cases, args)
    lines += ablation_table(ablation, args)
    if problems:
        lines += ["", "FAILED — a target did not serve its load:"] + [f"- {x}" for x in problems]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(args.out, "w") as f:
        f.write(text)
    # One check per load a target had to serve, in the plain form test logs read.
    checks = sum(len(loads) for case, loads in EXPECTED.items() if case in args.cases)
    if "r" in args.cases:
        checks += len(PAIRED) * 2 * args.rounds
    if "x" in args.cases:
        checks += len(ABLATION) * args.rounds
    print(f"bench: {checks - len(problems)} passed, {len(problems)} failed")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
