"""The Helm chart, rendered by real helm v4 (scripts/setup-helm.sh installs it):
lint, Kubernetes 1.33 schemas (kubernetes-validate), the RBAC and webhook it
declares, and the pod the operator's webhook makes from the config the chart
renders (through `aiflags-operator inject`, the webhook's own functions)."""

import base64
import json
import os
import pathlib
import re
import ssl
import subprocess
import sys
import tempfile

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "aiflags"
HELM = pathlib.Path(os.environ.get("AIFLAGS_HELM", ROOT / ".tools" / "bin" / "helm"))
BIN_DIR = pathlib.Path(os.environ.get("AIFLAGS_BIN_DIR", ROOT / "target" / "debug"))
OPERATOR = BIN_DIR / "aiflags-operator"
NAMESPACE = "aiflags-system"
APP_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]

# Non-default installs the tests render besides the default one.
VARIANTS = {
    "default": [],
    "cert-manager": ["--set", "webhook.certManager.enabled=true"],
    "cert-manager-issuer": [
        "--set", "webhook.certManager.enabled=true",
        "--set", "webhook.certManager.issuerRef.kind=ClusterIssuer",
        "--set", "webhook.certManager.issuerRef.name=cluster-ca",
    ],
    "regular-container": ["--set", "proxy.nativeSidecar=false"],
    "custom": [
        "--set", "operator.image.repository=mirror.example/aiflags-operator",
        "--set", "operator.image.tag=dev",
        "--set", "proxy.image.repository=mirror.example/aiflags-sidecar",
        "--set", "proxy.image.tag=dev",
        "--set", "proxy.image.pullPolicy=Always",
        "--set", "proxy.port=16080",
        "--set", "proxy.adminPort=16090",
        "--set", "proxy.workers=2",
        "--set", "proxy.resources.limits.cpu=1",
        "--set", "proxy.upstreams.openai=http://vllm.models.svc:8000",
        "--set", "proxy.runAsUser=null",
        "--set", "webhook.failurePolicy=Fail",
        "--set", "webhook.excludedNamespaces={kube-system,batch}",
        "--set", "monitoring.serviceMonitor.enabled=true",
        "--set", "monitoring.podMonitor.enabled=true",
        "--set", "monitoring.labels.release=kube-prometheus-stack",
        "--set", "restarts.enabled=false",
        "--set", "operator.replicas=1",
        "--set", "operator.leaderElection.enabled=false",
        "--set", "rollout.prometheus.url=https://prometheus.monitoring:9090",
        "--set", "rollout.prometheus.timeout=5s",
        "--set", "rollout.prometheus.bearerTokenSecret.name=prometheus-reader",
        "--set", "rollout.prometheus.caConfigMap.name=monitoring-ca",
        "--set", "rollout.prometheus.caConfigMap.key=bundle.pem",
    ],
}

# Kinds whose schemas come from other projects' CRDs, which
# kubernetes-validate does not ship; their fields are asserted below instead.
CRD_KINDS = {"Certificate", "Issuer", "PodMonitor", "ServiceMonitor"}


def helm(*args, check=True):
    result = subprocess.run([str(HELM), *args], capture_output=True, text=True)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def render(variant="default", *extra):
    out = helm("template", "aiflags", str(CHART), "--namespace", NAMESPACE, *VARIANTS[variant], *extra)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def one(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def env_of(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


@pytest.fixture(scope="module", autouse=True)
def tools():
    assert HELM.exists(), f"{HELM} missing: run scripts/setup-helm.sh"
    assert helm("version", "--short").stdout.startswith("v4."), "the chart targets helm v4"


@pytest.mark.parametrize("variant", VARIANTS)
def test_helm_lint_is_clean(variant):
    out = helm("lint", "--strict", str(CHART), "--namespace", NAMESPACE, *VARIANTS[variant])
    assert "1 chart(s) linted, 0 chart(s) failed" in out.stdout


@pytest.mark.parametrize(
    "values, message",
    [
        (["--set", "proxy.port=80"], "at '/proxy/port': minimum: got 80, want 1,024"),
        (["--set", "webhook.failurePolicy=Sometimes"], "at '/webhook/failurePolicy'"),
        (["--set", "operator.replicas=0"], "at '/operator/replicas': minimum: got 0, want 1"),
        (["--set", "operator.leaderElection.enabled=yes"], "at '/operator/leaderElection/enabled'"),
        (["--set", "rollout.prometheus.url=prometheus:9090"], "at '/rollout/prometheus/url'"),
        (["--set", "rollout.prometheus.timeout=soon"], "at '/rollout/prometheus/timeout'"),
        (["--set", "operator.leaderElection.enabled=false"],
         "operator.replicas > 1 needs operator.leaderElection.enabled"),
        (["--set", "proxy.upstreams.openai=api.openai.com"], "at '/proxy/upstreams/openai'"),
        (["--set", "proxy.resources.requests.memory=lots"], "at '/proxy/resources/requests/memory'"),
    ],
)
def test_the_schema_names_a_bad_value(values, message):
    out = helm("template", "aiflags", str(CHART), *values, check=False)
    assert out.returncode != 0
    assert message in out.stderr, out.stderr


@pytest.mark.parametrize("variant", VARIANTS)
def test_rendered_manifests_are_valid_kubernetes_1_33(variant, tmp_path):
    docs = render(variant)
    core = [d for d in docs if d["kind"] not in CRD_KINDS]
    manifest = tmp_path / "rendered.yaml"
    manifest.write_text(yaml.safe_dump_all(core))
    result = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "-k", "1.33", "--strict", str(manifest)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(core), result.stdout


def test_the_default_install():
    docs = render()
    kinds = sorted(d["kind"] for d in docs)
    # Three of the ConfigMaps are the Grafana dashboards (tests/e2e/test_chart_dashboards.py).
    assert kinds == sorted([
        "ServiceAccount", "Secret", "ConfigMap", "ClusterRole", "ClusterRoleBinding",
        "Role", "RoleBinding",
        "Service", "Service", "Deployment", "MutatingWebhookConfiguration",
        "ConfigMap", "ConfigMap", "ConfigMap",
    ])
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2, "two replicas: one leads, both serve the webhook"
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == f"ghcr.io/aiflags/aiflags-operator:{APP_VERSION}"
    assert container["args"] == ["run"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
        "privileged": False, "capabilities": {"drop": ["ALL"]},
    }
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    env = env_of(container)
    assert env["AIFLAGS_WEBHOOK_LISTEN"] == "0.0.0.0:9443"
    assert env["AIFLAGS_INJECTION_CONFIG"] == "/etc/aiflags-operator/injection/injection.json"
    assert env["AIFLAGS_DISABLE_RESTARTS"] == "false"
    assert env["AIFLAGS_LEADER_ELECTION"] == "true"
    assert env["AIFLAGS_LEADER_ELECTION_LEASE"] == "aiflags"
    assert env["AIFLAGS_LEADER_ELECTION_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["AIFLAGS_LEADER_ELECTION_IDENTITY"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert "AIFLAGS_PROMETHEUS_URL" not in env, "no Prometheus unless configured"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "webhook": 9443}
    assert pod["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["tls"] == "/etc/aiflags-operator/tls" and "subPath" not in str(container["volumeMounts"])
    assert volumes["tls"]["secret"]["secretName"] == one(docs, "Secret")["metadata"]["name"]
    assert volumes["injection"]["configMap"]["name"] == "aiflags-injection"
    one(docs, "ConfigMap", "aiflags-injection")


def test_the_default_image_references_match_the_documented_build():
    """The Dockerfile's comment shows the build commands; the chart's
    defaults must name what they build."""
    builds = dict(re.findall(r"docker build --target (\w+)\s+-t (\S+) \.", (ROOT / "Dockerfile").read_text()))
    assert set(builds) == {"operator", "sidecar"}
    cargo_version = re.search(r'^version = "([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M).group(1)
    assert APP_VERSION == cargo_version, "the chart's appVersion follows the workspace version"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert builds["operator"] == f"{values['operator']['image']['repository']}:{APP_VERSION}"
    assert builds["sidecar"] == f"{values['proxy']['image']['repository']}:{APP_VERSION}"
    stages = re.findall(r"^FROM \S+ AS (\w+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert stages == ["build", "sidecar", "operator"]


def test_the_cluster_role_lists_exactly_what_the_operator_uses():
    rules = one(render(), "ClusterRole")["rules"]
    granted = {
        (group, resource): sorted(rule["verbs"])
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert granted == {
        ("aiflags.dev", "aifeatureflags"): ["get", "list", "patch", "watch"],
        ("aiflags.dev", "aifeatureflags/status"): ["get", "patch"],
        ("aiflags.dev", "aifeatureflags/finalizers"): ["update"],
        ("", "configmaps"): ["create", "delete", "get", "list", "patch", "watch"],
        ("rbac.authorization.k8s.io", "roles"): ["create", "delete", "get", "list", "patch", "watch"],
        ("rbac.authorization.k8s.io", "rolebindings"): ["create", "delete", "get", "list", "patch", "watch"],
        ("", "pods"): ["get", "list", "watch"],
        ("", "namespaces"): ["get", "list", "watch"],
        ("apps", "deployments"): ["get", "list", "patch", "watch"],
        ("apps", "statefulsets"): ["get", "list", "patch", "watch"],
        ("apps", "daemonsets"): ["get", "list", "patch", "watch"],
        ("events.k8s.io", "events"): ["create", "patch"],
    }
    binding = one(render(), "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "aiflags", "namespace": NAMESPACE}]


def test_leader_election_may_only_read_and_write_leases_in_the_release_namespace():
    docs = render()
    role = one(docs, "Role", "aiflags-leader-election")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                              "verbs": ["get", "create", "update"]}]
    binding = one(docs, "RoleBinding", "aiflags-leader-election")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": "aiflags-leader-election"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "aiflags", "namespace": NAMESPACE}]

    single = render("custom")
    assert one(single, "Deployment")["spec"]["replicas"] == 1
    assert not [d for d in single if d["kind"] in ("Role", "RoleBinding")]
    env = env_of(one(single, "Deployment")["spec"]["template"]["spec"]["containers"][0])
    assert env["AIFLAGS_LEADER_ELECTION"] == "false"
    assert "AIFLAGS_LEADER_ELECTION_IDENTITY" not in env


def test_the_rollout_analysis_reaches_prometheus_with_its_token_and_ca():
    deployment = one(render("custom"), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = env_of(container)
    assert env["AIFLAGS_PROMETHEUS_URL"] == "https://prometheus.monitoring:9090"
    assert env["AIFLAGS_PROMETHEUS_TIMEOUT"] == "5s"
    assert env["AIFLAGS_PROMETHEUS_TOKEN_FILE"] == "/etc/aiflags-operator/prometheus-token/token"
    assert env["AIFLAGS_PROMETHEUS_CA_FILE"] == "/etc/aiflags-operator/prometheus-ca/bundle.pem"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts["prometheus-token"] == "/etc/aiflags-operator/prometheus-token"
    assert mounts["prometheus-ca"] == "/etc/aiflags-operator/prometheus-ca"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["prometheus-token"]["secret"] == {
        "secretName": "prometheus-reader", "items": [{"key": "token", "path": "token"}]}
    assert volumes["prometheus-ca"]["configMap"] == {
        "name": "monitoring-ca", "items": [{"key": "bundle.pem", "path": "bundle.pem"}]}


def test_the_webhook_registration():
    docs = render()
    config = one(docs, "MutatingWebhookConfiguration")
    service = one(docs, "Service", "aiflags-webhook")
    deployment = one(docs, "Deployment")
    assert [w["name"] for w in config["webhooks"]] == ["namespace.inject.aiflags.dev", "pod.inject.aiflags.dev"]
    for webhook in config["webhooks"]:
        assert webhook["failurePolicy"] == "Ignore"
        assert webhook["sideEffects"] == "NoneOnDryRun"
        assert webhook["timeoutSeconds"] <= 10
        assert webhook["admissionReviewVersions"] == ["v1"]
        assert webhook["rules"] == [{
            "operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
            "resources": ["pods"], "scope": "Namespaced",
        }]
        target = webhook["clientConfig"]["service"]
        assert target == {"name": "aiflags-webhook", "namespace": NAMESPACE, "path": "/mutate-pods", "port": 443}
        excluded = webhook["namespaceSelector"]["matchExpressions"][0]
        assert excluded["key"] == "kubernetes.io/metadata.name" and excluded["operator"] == "NotIn"
        assert set(excluded["values"]) == {"kube-system", "kube-public", "kube-node-lease", NAMESPACE}
    by_namespace, by_pod = config["webhooks"]
    assert by_namespace["namespaceSelector"]["matchExpressions"][1] == {"key": "aiflags.dev/inject", "operator": "In", "values": ["enabled"]}
    assert by_namespace["objectSelector"] == {"matchExpressions": [{"key": "aiflags.dev/inject", "operator": "NotIn", "values": ["disabled"]}]}
    assert by_pod["namespaceSelector"]["matchExpressions"][1] == {"key": "aiflags.dev/inject", "operator": "NotIn", "values": ["enabled", "disabled"]}
    assert by_pod["objectSelector"] == {"matchLabels": {"aiflags.dev/inject": "enabled"}}
    # The Service reaches the operator's webhook port.
    assert service["spec"]["ports"] == [{"name": "https", "port": 443, "targetPort": "webhook", "protocol": "TCP"}]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def tls_handshake(cert_pem, key_pem, ca_pem, server_name):
    """A real TLS handshake in memory: a server with the chart's certificate,
    a client that trusts only the chart's caBundle and checks the name."""
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = pathlib.Path(tmp, "tls.crt"), pathlib.Path(tmp, "tls.key")
        cert.write_bytes(cert_pem)
        key.write_bytes(key_pem)
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(cadata=ca_pem.decode())
    pipes = [ssl.MemoryBIO() for _ in range(4)]
    client = client_ctx.wrap_bio(pipes[0], pipes[1], server_hostname=server_name)
    server = server_ctx.wrap_bio(pipes[2], pipes[3], server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for side, obj, outgoing, incoming in (("client", client, pipes[1], pipes[2]), ("server", server, pipes[3], pipes[0])):
            if not done[side]:
                try:
                    obj.do_handshake()
                    done[side] = True
                except ssl.SSLWantReadError:
                    pass
            incoming.write(outgoing.read())
        if all(done.values()):
            return
    raise AssertionError("handshake did not finish")


def test_the_generated_certificate_serves_the_webhook_service():
    docs = render()
    secret = one(docs, "Secret")
    assert secret["type"] == "kubernetes.io/tls"
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    for webhook in one(docs, "MutatingWebhookConfiguration")["webhooks"]:
        assert base64.b64decode(webhook["clientConfig"]["caBundle"]) == data["ca.crt"]
    for name in (f"aiflags-webhook.{NAMESPACE}.svc", f"aiflags-webhook.{NAMESPACE}.svc.cluster.local"):
        tls_handshake(data["tls.crt"], data["tls.key"], data["ca.crt"], name)
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_handshake(data["tls.crt"], data["tls.key"], data["ca.crt"], "somewhere-else.example")


def test_cert_manager_issues_the_certificate_instead():
    docs = render("cert-manager")
    assert not [d for d in docs if d["kind"] == "Secret"], "cert-manager writes the Secret"
    certificate = one(docs, "Certificate")
    issuer = one(docs, "Issuer")
    assert issuer["spec"] == {"selfSigned": {}}
    assert certificate["spec"]["issuerRef"] == {"kind": "Issuer", "name": issuer["metadata"]["name"]}
    assert f"aiflags-webhook.{NAMESPACE}.svc" in certificate["spec"]["dnsNames"]
    volumes = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == certificate["spec"]["secretName"]
    config = one(docs, "MutatingWebhookConfiguration")
    assert config["metadata"]["annotations"] == {"cert-manager.io/inject-ca-from": f"{NAMESPACE}/{certificate['metadata']['name']}"}
    assert all("caBundle" not in w["clientConfig"] for w in config["webhooks"])

    docs = render("cert-manager-issuer")
    assert not [d for d in docs if d["kind"] == "Issuer"]
    assert one(docs, "Certificate")["spec"]["issuerRef"] == {"kind": "ClusterIssuer", "name": "cluster-ca"}


def test_the_monitors_carry_the_release_label_and_find_their_targets():
    docs = render("custom")
    service_monitor = one(docs, "ServiceMonitor")
    pod_monitor = one(docs, "PodMonitor")
    for monitor in (service_monitor, pod_monitor):
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    metrics = one(docs, "Service", "aiflags-metrics")
    selected = service_monitor["spec"]["selector"]["matchLabels"]
    assert selected.items() <= metrics["metadata"]["labels"].items()
    assert service_monitor["spec"]["endpoints"][0]["port"] == metrics["spec"]["ports"][0]["name"]
    assert pod_monitor["spec"]["namespaceSelector"] == {"any": True}
    assert pod_monitor["spec"]["podMetricsEndpoints"][0]["path"] == "/metrics"
    assert not [d for d in render() if d["kind"] in ("ServiceMonitor", "PodMonitor")], "off by default"


def test_notes_say_how_to_opt_in():
    out = helm("install", "aiflags", str(CHART), "--namespace", NAMESPACE, "--dry-run=client")
    notes = out.stdout.split("NOTES:", 1)[1]
    assert "kubectl label namespace shop aiflags.dev/inject=enabled" in notes
    assert "kubectl -n shop rollout restart deployment/summarizer" in notes
    assert "kubectl -n shop get aiff" in notes
