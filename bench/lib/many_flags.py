"""Prints the flags of the benchmark's many-flags case: N flags in one
sidecar's config, each matching its models by a glob, the one the load
matches last (in the file and in key order).

The N - 1 others cover versioned models of the same family
(`bench-model-0001-*`, ...): every one shares the request model's prefix, so a
matcher that tries the globs one by one does real work before each says no.
The last is bench/flags.yaml's bench-split (90/10, the candidate with a
`temperature` patch, a fallback chain) with `bench-model*` as its pattern.

Usage: many_flags.py N > flags.yaml
"""

import sys

OTHER = """apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {{name: bench-decoy-{i:04d}, namespace: bench}}
spec:
  match: {{models: ["bench-model-{i:04d}-*"], operations: [chat]}}
  defaultVariant: stable
  variants:
    - {{name: stable, model: gpt-4o-mini}}
    - {{name: candidate, model: gpt-4.1-mini, params: {{temperature: 0.2}}}}
  rollout:
    stickyBy: ["header:x-user-id", "body:user"]
    weights: {{stable: 90, candidate: 10}}
---
"""

MATCHING = """apiVersion: aiflags.dev/v1alpha1
kind: AIFeatureFlag
metadata: {name: bench-split, namespace: bench}
spec:
  match: {models: ["bench-model*"], operations: [chat]}
  defaultVariant: stable
  variants:
    - {name: stable, model: gpt-4o-mini}
    - {name: candidate, model: gpt-4.1-mini, params: {temperature: 0.2}}
  rollout:
    stickyBy: ["header:x-user-id", "body:user"]
    weights: {stable: 90, candidate: 10}
  fallback:
    on: [timeout, connect, "429", "5xx"]
    chain: [stable]
    retries: 1
    perAttemptTimeout: 30s
    firstTokenTimeout: 10s
    deadline: 120s
"""


def main():
    count = int(sys.argv[1])
    if count < 1:
        sys.exit("many_flags.py: N must be at least 1")
    out = sys.stdout
    for i in range(1, count):
        out.write(OTHER.format(i=i))
    out.write(MATCHING)


if __name__ == "__main__":
    main()
