"""The generated CRD is a valid Kubernetes 1.33 manifest, and every example
flag is valid against the CRD's own OpenAPI schema, as the apiserver checks it
before the CEL rules run (those are tested in api/tests/rules.rs)."""

import pathlib
import subprocess
import sys

import jsonschema
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "aifeatureflag.yaml"


def test_crd_is_a_valid_kubernetes_manifest():
    result = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "-k", "1.33", "--strict", str(CRD)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed" in result.stdout


def openapi_to_jsonschema(node):
    """Kubernetes' `nullable: true` is JSON Schema's `type: [T, "null"]`; the
    x-kubernetes-* extensions are ignored by jsonschema already."""
    if isinstance(node, dict):
        out = {k: openapi_to_jsonschema(v) for k, v in node.items() if k != "nullable"}
        if node.get("nullable") and "type" in node:
            out["type"] = [node["type"], "null"]
        return out
    if isinstance(node, list):
        return [openapi_to_jsonschema(v) for v in node]
    return node


@pytest.fixture(scope="module")
def flag_schema():
    crd = yaml.safe_load(CRD.read_text())
    version = crd["spec"]["versions"][0]
    return openapi_to_jsonschema(version["schema"]["openAPIV3Schema"])


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_examples_match_the_crd_schema(flag_schema, path):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "AIFeatureFlag"]
    assert docs, f"{path} holds no AIFeatureFlag"
    for doc in docs:
        jsonschema.validate(doc, flag_schema)


def test_the_schema_rejects_a_bad_variant_name(flag_schema):
    doc = yaml.safe_load((ROOT / "examples" / "summarizer-split.yaml").read_text())
    doc["spec"]["variants"][0]["name"] = "Stable_1"
    with pytest.raises(jsonschema.ValidationError, match="does not match"):
        jsonschema.validate(doc, flag_schema)
