"""The dashboards and rules in the chart are what dashboards/generate.py makes
(no hand edits, no drift), and every metric they read is one the sidecar or
the operator exports, or one named here as on its way."""

import subprocess
import sys

import yaml

from conftest import ROOT
from promstack import RULES, dashboards, metrics_in, targets

# Families the dashboards and alerts read before the code exports them; each
# leaves this list when its code lands (the test below insists).
COMING = {}


def test_the_generated_files_are_up_to_date():
    result = subprocess.run([sys.executable, "dashboards/generate.py", "--check"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def read_metrics():
    names = set()
    for board in dashboards().values():
        for _, target in targets(board):
            names |= metrics_in(target["expr"])
        for variable in board["templating"]["list"]:
            names |= metrics_in(str(variable.get("query", "")))
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            names |= metrics_in(rule["expr"])
    return names


def exported_in_source():
    sources = [*ROOT.glob("sidecar/src/**/*.rs"), *ROOT.glob("operator/src/**/*.rs")]
    text = "\n".join(p.read_text() for p in sources)
    return lambda name: f'"{name}"' in text


def test_every_metric_read_is_exported_or_on_its_way():
    exported = exported_in_source()
    for name in sorted(read_metrics()):
        if name in COMING:
            assert not exported(name), f"{name} is exported now: remove it from COMING"
        else:
            assert exported(name), f"{name} is read by a dashboard or alert but exported nowhere"
