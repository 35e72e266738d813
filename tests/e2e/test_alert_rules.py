"""The alert rules shipped in the chart: promtool accepts them, and its unit
tests (tests/alerts/) show every alert firing under its failure and silent
otherwise. Each alert has a summary, a description and a runbook in docs."""

import re
import shutil
import subprocess

import pytest
import yaml

from conftest import ROOT
from promstack import RULES

TESTS = ROOT / "tests" / "alerts" / "aiflags.rules.test.yaml"


def promtool(*args):
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool not found: run scripts/setup-dashboard-deps.sh")
    result = subprocess.run([binary, *args], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def alerts():
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_promtool_accepts_the_rules():
    assert f"SUCCESS: {len(alerts())} rules found" in promtool("check", "rules", str(RULES))


def test_promtool_unit_tests_pass():
    assert "SUCCESS" in promtool("test", "rules", str(TESTS))


def test_every_alert_is_tested_firing_and_silent():
    cases = [case for test in yaml.safe_load(TESTS.read_text())["tests"] for case in test["alert_rule_test"]]
    for rule in alerts():
        mine = [c for c in cases if c["alertname"] == rule["alert"]]
        assert any(c["exp_alerts"] for c in mine), f"{rule['alert']} is never shown firing"
        assert any(not c["exp_alerts"] for c in mine), f"{rule['alert']} is never shown silent"


def test_every_alert_explains_itself_and_has_a_runbook():
    runbooks = (ROOT / "docs" / "alerts.md").read_text()
    anchors = {h.lower() for h in re.findall(r"^### (\w+)$", runbooks, re.M)}
    for rule in alerts():
        notes = rule["annotations"]
        assert notes["summary"] and notes["description"], rule["alert"]
        assert notes["runbook"] == f"docs/alerts.md#{rule['alert'].lower()}"
        assert rule["alert"].lower() in anchors, f"docs/alerts.md has no runbook for {rule['alert']}"
        assert rule["labels"]["severity"] in {"warning", "critical"}
