#!/usr/bin/env bash
# Builds a real `helm` (Helm 4, pinned in tools/helm/go.mod) from the Go module proxy into the
# cluster tools folder, next to kubectl:
#   ${TENSORGATE_CACHE:-~/.cache/tensorgate}/cluster/<k8s>-etcd<ver>-kwok<ver>/bin/helm
# Idempotent: a helm of the pinned version already there is kept (0 s); another version is rebuilt.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
[[ -x $GO ]] || { echo "go not found: install Go >= 1.26 or set GO=/path/to/go" >&2; exit 1; }
JOBS=${GO_BUILD_JOBS:-2}
HELM_DIR=$CLUSTER_DIR/tools/helm
HELM_VERSION=$(awk '$1 == "require" && $2 == "helm.sh/helm/v4" { print $3; exit }' "$HELM_DIR/go.mod")
[[ -n $HELM_VERSION ]] || { echo "cannot read the pinned helm version from $HELM_DIR/go.mod" >&2; exit 1; }
out=$CLUSTER_BIN/helm
mkdir -p "$CLUSTER_BIN"

if [[ -x $out ]] && "$out" version --template '{{.Version}}' 2>/dev/null | grep -qx "$HELM_VERSION"; then
  echo "  helm: $HELM_VERSION present, skipped"
  exit 0
fi

# Stamped like Helm's own Makefile does, less the commit, which the module proxy does not have
# (`helm version` would print "+g<commit>" after the version).
ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION"
ldflags+=" -X helm.sh/helm/v4/internal/version.gitTreeState=clean"
start=$SECONDS
echo "  helm: building helm.sh/helm/v4/cmd/helm@$HELM_VERSION ..."
(cd "$HELM_DIR" && CGO_ENABLED=0 "$GO" build -trimpath -p "$JOBS" -ldflags "$ldflags" \
  -o "$out.tmp" helm.sh/helm/v4/cmd/helm)
mv "$out.tmp" "$out"
echo "  helm: $("$out" version --short) built in $((SECONDS - start))s -> $out"
