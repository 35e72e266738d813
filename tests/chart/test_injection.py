"""The pod the webhook makes is the pod the chart promises: render the chart,
take the injection config it gives the operator, run a pod through the
webhook's own functions (`aiflags-operator inject`), and compare field by
field with the values. The injected pod must also be a valid Kubernetes 1.33
Pod, and be what the chart's PodMonitor scrapes."""

import subprocess
import sys

import pytest
import yaml

from test_chart import APP_VERSION, NAMESPACE, OPERATOR, VARIANTS, one, env_of, render

APP_POD = """
apiVersion: v1
kind: Pod
metadata:
  name: summarizer
  namespace: shop
  labels: {app: summarizer}
spec:
  containers:
    - name: app
      image: registry.example/summarizer:1.2
      env:
        - {name: OPENAI_API_KEY, valueFrom: {secretKeyRef: {name: openai, key: key}}}
"""

# What each variant's values say the sidecar gets.
EXPECTED = {
    "default": {
        "image": f"ghcr.io/aiflags/aiflags-sidecar:{APP_VERSION}", "pull": "IfNotPresent", "native": True,
        "port": 15080, "admin": 15090, "workers": "1", "user": 65532, "openai": None,
        "resources": {"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
    },
    "regular-container": {
        "image": f"ghcr.io/aiflags/aiflags-sidecar:{APP_VERSION}", "pull": "IfNotPresent", "native": False,
        "port": 15080, "admin": 15090, "workers": "1", "user": 65532, "openai": None,
        "resources": {"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
    },
    "custom": {
        "image": "mirror.example/aiflags-sidecar:dev", "pull": "Always", "native": True,
        "port": 16080, "admin": 16090, "workers": "2", "user": None, "openai": "http://vllm.models.svc:8000",
        "resources": {"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}},
    },
}


def injection_config(docs, tmp_path):
    config_map = one(docs, "ConfigMap", "aiflags-injection")
    path = tmp_path / "injection.json"
    path.write_text(config_map["data"]["injection.json"])
    return path


def inject(config_path, pod=APP_POD, *labels):
    args = [str(OPERATOR), "inject", "-f", "-", "--injection-config", str(config_path)]
    for label in labels:
        args += ["--namespace-label", label]
    return subprocess.run(args, input=pod, capture_output=True, text=True)


@pytest.fixture(scope="module", autouse=True)
def binary():
    assert OPERATOR.exists(), f"{OPERATOR} missing: cargo build -p aiflags-operator"


@pytest.mark.parametrize("variant", EXPECTED)
def test_the_webhook_injects_what_the_chart_configures(variant, tmp_path):
    expected = EXPECTED[variant]
    config = injection_config(render(variant), tmp_path)
    out = inject(config, APP_POD, "aiflags.dev/inject=enabled")
    assert out.returncode == 0, out.stderr
    pod = yaml.safe_load(out.stdout)
    spec = pod["spec"]
    if expected["native"]:
        sidecar = spec["initContainers"][0]
        assert sidecar["restartPolicy"] == "Always"
        assert [c["name"] for c in spec["containers"]] == ["app"]
    else:
        assert "initContainers" not in spec
        assert [c["name"] for c in spec["containers"]] == ["app", "aiflags-proxy"]
        sidecar = spec["containers"][1]
        assert "restartPolicy" not in sidecar
    assert sidecar["name"] == "aiflags-proxy"
    assert sidecar["image"] == expected["image"]
    assert sidecar["imagePullPolicy"] == expected["pull"]
    assert sidecar["resources"] == expected["resources"]
    assert sidecar["ports"] == [{"name": "aiflags-admin", "containerPort": expected["admin"], "protocol": "TCP"}]
    assert sidecar["securityContext"].get("runAsUser") == expected["user"]
    env = env_of(sidecar)
    assert env["AIFLAGS_LISTEN"] == f"127.0.0.1:{expected['port']}"
    assert env["AIFLAGS_ADMIN_LISTEN"] == f"0.0.0.0:{expected['admin']}"
    assert env["AIFLAGS_WORKERS"] == expected["workers"]
    assert env["AIFLAGS_LOG_FORMAT"] == "json"
    assert env.get("AIFLAGS_OPENAI_UPSTREAM") == expected["openai"]
    app = env_of(next(c for c in spec["containers"] if c["name"] == "app"))
    assert app["OPENAI_BASE_URL"] == f"http://127.0.0.1:{expected['port']}/v1"
    assert app["ANTHROPIC_BASE_URL"] == f"http://127.0.0.1:{expected['port']}"


@pytest.mark.parametrize("variant", EXPECTED)
def test_the_injected_pod_is_a_valid_kubernetes_pod(variant, tmp_path):
    config = injection_config(render(variant), tmp_path)
    out = inject(config, APP_POD, "aiflags.dev/inject=enabled")
    assert out.returncode == 0, out.stderr
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(out.stdout)
    result = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "-k", "1.33", "--strict", str(manifest)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_pod_monitor_scrapes_the_injected_sidecar(tmp_path):
    docs = render("custom")
    pod = yaml.safe_load(inject(injection_config(docs, tmp_path), APP_POD, "aiflags.dev/inject=enabled").stdout)
    monitor = one(docs, "PodMonitor")["spec"]
    assert monitor["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    sidecar = pod["spec"]["initContainers"][0]
    port_names = [p["name"] for p in sidecar["ports"]]
    assert monitor["podMetricsEndpoints"][0]["port"] in port_names


@pytest.mark.parametrize("variant", ["default", "custom"])
def test_excluded_namespaces_reach_the_webhook_too(variant, tmp_path):
    """The namespaceSelector keeps these namespaces away from the webhook;
    the webhook's own config excludes them again, should a selector be edited."""
    docs = render(variant)
    config = injection_config(docs, tmp_path)
    selector = one(docs, "MutatingWebhookConfiguration")["webhooks"][0]["namespaceSelector"]
    excluded = selector["matchExpressions"][0]["values"]
    assert NAMESPACE in excluded
    for namespace in excluded:
        pod = APP_POD.replace("namespace: shop", f"namespace: {namespace}")
        out = inject(config, pod, "aiflags.dev/inject=enabled")
        assert out.returncode == 0, out.stderr
        assert out.stderr == "not injected: the namespace is excluded from injection\n", namespace
        assert "initContainers" not in yaml.safe_load(out.stdout)["spec"]


def test_variants_cover_the_injection_switches():
    assert set(EXPECTED) <= set(VARIANTS)
