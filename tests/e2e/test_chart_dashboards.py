"""The chart carries the dashboards and alerts: real helm renders a ConfigMap
per dashboard labelled for Grafana's sidecar, holding exactly the generated
JSON, and a PrometheusRule holding exactly the plain rules file (valid to
promtool), shaped by the alerts values."""

import json
import shutil
import subprocess

import pytest
import yaml

from conftest import ROOT
from promstack import CHART, RULES, dashboards

HELM = ROOT / ".tools" / "bin" / "helm"
RULE_API = "monitoring.coreos.com/v1/PrometheusRule"


def helm_template(*args, ok=True):
    if not HELM.exists():
        pytest.fail(f"{HELM} not found: run scripts/setup-helm.sh")
    result = subprocess.run([HELM, "template", "aiflags", str(CHART), "-n", "platform", *args],
                            capture_output=True, text=True)
    assert (result.returncode == 0) == ok, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d] if ok else result.stderr


def of_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def dashboard_maps(docs):
    """The chart's ConfigMaps that Grafana's sidecar would pick up."""
    return [m for m in of_kind(docs, "ConfigMap") if "grafana_dashboard" in m["metadata"].get("labels", {})
            or m["metadata"]["name"].startswith("aiflags-dashboard-")]


def test_each_dashboard_is_a_configmap_for_grafanas_sidecar():
    maps = dashboard_maps(helm_template())
    assert {m["metadata"]["name"] for m in maps} == {
        "aiflags-dashboard-overview", "aiflags-dashboard-rollout", "aiflags-dashboard-operator"}
    shipped = {f"{name}.json": board for name, board in dashboards().items()}
    for cm in maps:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["namespace"] == "platform"
        ((key, text),) = cm["data"].items()
        assert json.loads(text) == shipped[key]


def test_dashboard_labels_namespace_and_folder_are_values():
    maps = dashboard_maps(helm_template("--set", "dashboards.namespace=monitoring",
                                        "--set", "dashboards.labels.custom_dashboard=yes",
                                        "--set", "dashboards.annotations.grafana_folder=aiflags"))
    for cm in maps:
        assert cm["metadata"]["namespace"] == "monitoring"
        assert cm["metadata"]["labels"]["custom_dashboard"] == "yes"
        assert cm["metadata"]["annotations"] == {"grafana_folder": "aiflags"}
    assert not dashboard_maps(helm_template("--set", "dashboards.enabled=false"))


def test_the_prometheusrule_is_the_rules_file_where_the_api_exists(tmp_path):
    assert not of_kind(helm_template(), "PrometheusRule"), "rendered without the Prometheus Operator's API"
    (rule,) = of_kind(helm_template("--api-versions", RULE_API), "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(RULES.read_text())
    # What the Prometheus Operator will load is a valid rules file.
    rendered = tmp_path / "rendered.rules.yaml"
    rendered.write_text(yaml.safe_dump(rule["spec"]))
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: run scripts/setup-dashboard-deps.sh"
    check = subprocess.run([promtool, "check", "rules", str(rendered)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_alerts_can_be_dropped_labelled_and_linked_to_runbooks():
    (rule,) = of_kind(helm_template(
        "--api-versions", RULE_API,
        "--set", "alerts.disabled={AIFlagsCircuitOpen,AIFlagsRolloutAborted}",
        "--set", "alerts.labels.release=kube-prometheus-stack",
        "--set", "alerts.ruleLabels.team=platform", "--set", "alerts.ruleLabels.severity=info",
        "--set", "alerts.runbookBaseUrl=https://wiki.example/aiflags/alerts"), "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    rules = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    names = {r["alert"] for r in rules}
    assert "AIFlagsCircuitOpen" not in names and "AIFlagsRolloutAborted" not in names
    assert len(names) == 6
    for r in rules:
        assert r["labels"]["team"] == "platform"
        assert r["labels"]["severity"] in {"warning", "critical"}, "a rule's own severity wins"
        assert r["annotations"]["runbook_url"] == f"https://wiki.example/aiflags/alerts#{r['alert'].lower()}"


def test_the_values_schema_knows_every_alert_and_rejects_others():
    schema = json.loads((CHART / "values.schema.json").read_text())
    known = schema["properties"]["alerts"]["properties"]["disabled"]["items"]["enum"]
    rules = yaml.safe_load(RULES.read_text())["groups"]
    assert sorted(known) == sorted(r["alert"] for g in rules for r in g["rules"])
    error = helm_template("--set", "alerts.disabled={AIFlagsCircuitOpn}", ok=False)
    assert "/alerts/disabled/0" in error, error
