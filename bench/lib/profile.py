"""Summarises `perf script -F ip,sym,dso` output of the sidecar under load:
where its CPU goes, by component (inclusive) and by leaf function (self).

Usage: perf script -i perf.data -F ip,sym,dso | profile.py
"""

import collections
import sys

# Component -> substrings of a frame's symbol that put a sample in it.
COMPONENTS = {
    "kernel (syscalls, loopback TCP)": None,  # leaf frame in the kernel
    "JSON parse/serialize (serde_json)": ("serde_json::",),
    "allocator (malloc/free/realloc)": ("malloc", "_int_free", "cfree", "realloc", "unlink_chunk"),
    "metrics (prometheus)": ("prometheus::", "aiflags_sidecar::metrics"),
    "logging (tracing)": ("tracing_subscriber::", "tracing_core::", "tracing::"),
    "HTTP/1 head parsing and encoding (hyper role)": ("hyper::proto::h1::role::",),
    "upstream client (hyper_util pool and connection)": ("hyper_util::client::legacy",
                                                         "dispatch::Client"),
    "flag evaluation and rewrite": ("aiflags_sidecar::evaluate", "aiflags_sidecar::rewrite",
                                    "aiflags_sidecar::bucketing", "aiflags_api::"),
    "usage extraction": ("aiflags_sidecar::usage", "aiflags_sidecar::sse"),
    "header handling (http::header)": ("http::header::",),
}


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
        frames.append((sym or rest, dso.rstrip(")")))
    if frames:
        yield frames


def main():
    total = 0
    inclusive = collections.Counter()
    leaf = collections.Counter()
    for frames in samples(sys.stdin):
        total += 1
        leaf_sym, leaf_dso = frames[0]
        leaf[leaf_sym.split("+0x")[0][:100]] += 1
        for name, needles in COMPONENTS.items():
            if needles is None:
                hit = "kernel" in leaf_dso
            else:
                hit = any(n in sym for sym, _ in frames for n in needles)
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
