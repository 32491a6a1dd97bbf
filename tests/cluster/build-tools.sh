#!/usr/bin/env bash
# Builds the test cluster's binaries from the pinned Go modules in tools/ into
#   ${TENSORGATE_CACHE:-~/.cache/tensorgate}/cluster/<k8s>-etcd<ver>-kwok<ver>/bin/
# Idempotent: a binary already there is kept; a stamp records a complete build.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
[[ -x $GO ]] || { echo "go not found: install Go >= 1.26 or set GO=/path/to/go" >&2; exit 1; }
JOBS=${GO_BUILD_JOBS:-2}   # -p: parallel compile jobs (each can take >1 GiB)
STAMP=$CLUSTER_TOOLS_DIR/stamp
mkdir -p "$CLUSTER_BIN"

# Version stamping: unstamped Kubernetes binaries report v0.0.0-master, which kwokctl and
# clients misread. The module proxy has no commit hash, so gitCommit names the module instead.
minor=${K8S_VERSION#v*.}; minor=${minor%%.*}; major=${K8S_VERSION#v}; major=${major%%.*}
k8s_date=$(cd "$CLUSTER_DIR/tools/k8s" && "$GO" list -m -json k8s.io/kubernetes \
  | sed -n 's/.*"Time": "\(.*\)".*/\1/p') || k8s_date=
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  k8s_ldflags+=" -X $pkg.gitCommit=k8s.io/kubernetes@$K8S_VERSION -X $pkg.gitTreeState=clean"
  k8s_ldflags+=" -X $pkg.buildDate=${k8s_date:-1970-01-01T00:00:00Z}"
done
kwok_ldflags="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}"
kwok_ldflags+=" -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${K8S_VERSION#v}"

build() { # build <binary> <tools module> <package> <ldflags>
  local out=$CLUSTER_BIN/$1 t0=$SECONDS
  if [[ -x $out ]]; then echo "  $1: present, skipped"; return; fi
  echo "  $1: building $3 ..."
  (cd "$CLUSTER_DIR/tools/$2" && CGO_ENABLED=0 "$GO" build -trimpath -p "$JOBS" -ldflags "$4" -o "$out.tmp" "$3")
  mv "$out.tmp" "$out"
  echo "  $1: built in $((SECONDS - t0))s"
}

echo "cluster tools $K8S_VERSION etcd $ETCD_VERSION kwok $KWOK_VERSION -> $CLUSTER_BIN"
start=$SECONDS
build etcd                    etcd go.etcd.io/etcd/server/v3 "-s -w"
build kwok                    kwok sigs.k8s.io/kwok/cmd/kwok "$kwok_ldflags"
build kwokctl                 kwok sigs.k8s.io/kwok/cmd/kwokctl "$kwok_ldflags"
build kwok-stages             kwok ./stages "-s -w"
build kubectl                 k8s  k8s.io/kubernetes/cmd/kubectl "$k8s_ldflags"
build kube-apiserver          k8s  k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags"
build kube-controller-manager k8s  k8s.io/kubernetes/cmd/kube-controller-manager "$k8s_ldflags"
build kube-scheduler          k8s  k8s.io/kubernetes/cmd/kube-scheduler "$k8s_ldflags"
printf 'k8s=%s etcd=%s kwok=%s go=%s built=%s\n' "$K8S_VERSION" "$ETCD_VERSION" "$KWOK_VERSION" \
  "$("$GO" env GOVERSION)" "$(date -u +%FT%TZ)" > "$STAMP"
echo "cluster tools ready in $((SECONDS - start))s: $CLUSTER_BIN"
