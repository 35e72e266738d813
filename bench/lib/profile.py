"""Summarises `perf script -F ip,sym,dso` output of the sidecar under load:
where its CPU goes, by component (inclusive) and by leaf function (self).

Usage: perf script -i perf.data -F ip,sym,dso | profile.py
"""

import collections
import sys

# Component -> (where to look, substrings). "path" looks at function paths
# with generic arguments removed; "raw" at the full symbols, whose generic
# arguments name the task a frame runs in; "kernel" at the leaf's DSO; "leaf"
# at the leaf frame only (self time).
COMPONENTS = {
    "client-side connection task (hyper server + proxy logic)": ("raw", (
        "aiflags_sidecar::server::", "hyper::proto::h1::dispatch::Server", "hyper_util::server::conn")),
    "upstream connection task (hyper client)": ("raw", (
        "hyper::client::conn::http1", "hyper::proto::h1::dispatch::Client")),
    "kernel (syscalls, loopback TCP)": ("kernel", ()),
    "allocator (mimalloc; glibc malloc/free)": ("path", (
        "mi_page", "mi_free", "mi_malloc", "mi_heap", "_mi_", "malloc", "_int_free", "cfree", "realloc", "unlink_chunk")),
    "JSON parse/serialize (serde_json)": ("path", ("serde_json::",)),
    "HTTP/1 head parsing and encoding (hyper role)": ("path", ("hyper::proto::h1::role::",)),
    "header maps (http::header)": ("path", ("http::header::",)),
    "sidecar request path (route/attempts/upstream/respond/stream)": ("path", (
        "aiflags_sidecar::route", "aiflags_sidecar::attempts", "aiflags_sidecar::upstream",
        "aiflags_sidecar::respond", "aiflags_sidecar::stream", "aiflags_sidecar::opening",
        "aiflags_sidecar::body", "aiflags_sidecar::record")),
    "flag selection, bucketing and body scan/splice": ("path", (
        "aiflags_sidecar::flags", "aiflags_sidecar::request", "aiflags_api::")),
    "answer checks and usage (verdict, usage, sse)": ("path", (
        "aiflags_sidecar::verdict", "aiflags_sidecar::usage", "aiflags_sidecar::sse")),
    "metrics (prometheus)": ("path", ("prometheus::", "aiflags_sidecar::telemetry::metrics")),
    "access log and tracing": ("path", (
        "tracing_subscriber::", "tracing_core::", "tracing::", "aiflags_sidecar::telemetry::access_log")),
    "tokio itself, self time (scheduler, timers, I/O driver)": ("leaf", ("tokio::",)),
    "clock reads, self time (Instant::now)": ("leaf", ("clock_gettime", "read_tsc")),
}


def function_path(sym):
    """The symbol without generic arguments, so `poll<hyper::…::Server<…>>`
    counts as `poll`, while `<hyper::…::Server as Trait>::parse` keeps its type."""
    out, depth = [], 0
    for i, ch in enumerate(sym):
        if ch == "<" and i > 0:
            depth += 1
        elif ch == ">" and depth:
            depth -= 1
        elif not depth:
            out.append(ch)
    return "".join(out)


def samples(stream):
    """Yields each sample as a list of (symbol, dso) frames, leaf first."""
    frames = []
    for line in stream:
        line = line.strip()
        if not line:
            if frames:
                yield frames
            frames = []
            continue
        parts = line.split(" ", 1)
        if len(parts) < 2:
            continue
        rest = parts[1]
        sym, _, dso = rest.rpartition(" (")
        raw = sym or rest
        frames.append((raw, function_path(raw), dso.rstrip(")")))
    if frames:
        yield frames


def main():
    total = 0
    inclusive = collections.Counter()
    leaf = collections.Counter()
    for frames in samples(sys.stdin):
        total += 1
        leaf[frames[0][1].split("+0x")[0][:100]] += 1
        for name, (where, needles) in COMPONENTS.items():
            if where == "kernel":
                hit = "kernel" in frames[0][2]
            elif where == "leaf":
                hit = any(n in frames[0][1] for n in needles)
            else:
                index = 0 if where == "raw" else 1
                hit = any(n in frame[index] for frame in frames for n in needles)
            if hit:
                inclusive[name] += 1
    if not total:
        sys.exit("no samples")
    print(f"{total} samples of the sidecar's CPU (perf, cpu-clock)")
    print("\nBy component, inclusive (a sample can count in several):")
    for name in COMPONENTS:
        print(f"  {100 * inclusive[name] / total:5.1f}%  {name}")
    print("\nHottest functions, self time:")
    for sym, n in leaf.most_common(20):
        print(f"  {100 * n / total:5.1f}%  {sym}")


if __name__ == "__main__":
    main()
