"""Runs oha with the given arguments and prints its result in the harness's
own one-line JSON shape (the same fields post.lua prints for wrk).

Usage: oha_json.py PATH_TO_OHA OHA_ARGS...
"""

import json
import subprocess
import sys


def main():
    oha, args = sys.argv[1], sys.argv[2:]
    run = subprocess.run([oha, "--no-tui", "--output-format", "json", *args],
                         capture_output=True, text=True, check=False)
    if run.returncode != 0:
        sys.stderr.write(run.stderr)
        sys.exit(f"oha exited {run.returncode}")
    result = json.loads(run.stdout)
    statuses = {int(code): n for code, n in result["statusCodeDistribution"].items()}
    ok = sum(n for code, n in statuses.items() if 200 <= code < 300)
    # Requests still in flight when the duration ends are cut off by design.
    errors = {e: n for e, n in result["errorDistribution"].items() if "deadline" not in e}
    percentiles = result["latencyPercentiles"]
    us = lambda seconds: round((seconds or 0) * 1e6)
    print(json.dumps({
        "tool": "oha", "requests": ok, "duration_us": us(result["summary"]["total"]),
        "bad": sum(statuses.values()) - ok, "socket_errors": sum(errors.values()),
        "errors": errors, "p50_us": us(percentiles.get("p50")), "p99_us": us(percentiles.get("p99")),
        "max_us": us(result["summary"]["slowest"]),
    }))


if __name__ == "__main__":
    main()
