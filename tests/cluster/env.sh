# Sourced by build-tools.sh, up.sh and down.sh: versions and paths of the test cluster.
# Versions come from the pinned tools modules, so bumping a go.mod moves the cache folder.
CLUSTER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$CLUSTER_DIR/../.." && pwd)
_modver() { awk -v m="$2" '$1 == m || ($1 == "require" && $2 == m) { print ($1 == m ? $2 : $3); exit }' "$CLUSTER_DIR/tools/$1/go.mod"; }
K8S_VERSION=$(_modver k8s k8s.io/kubernetes)          # v1.36.3
ETCD_VERSION=$(_modver etcd go.etcd.io/etcd/server/v3) # v3.6.16
KWOK_VERSION=$(_modver kwok sigs.k8s.io/kwok)         # v0.8.0
[[ -n $K8S_VERSION && -n $ETCD_VERSION && -n $KWOK_VERSION ]] || {
  echo "cannot read pinned versions from $CLUSTER_DIR/tools/*/go.mod" >&2; exit 1; }
TENSORGATE_CACHE=${TENSORGATE_CACHE:-$HOME/.cache/tensorgate}
CLUSTER_TOOLS_DIR=${CLUSTER_TOOLS_DIR:-$TENSORGATE_CACHE/cluster/$K8S_VERSION-etcd${ETCD_VERSION#v}-kwok${KWOK_VERSION#v}}
CLUSTER_BIN=$CLUSTER_TOOLS_DIR/bin
CLUSTER_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok kwokctl kwok-stages)
CLUSTER_NAME=${CLUSTER_NAME:-tensorgate}
CLUSTER_STATE_DIR=${CLUSTER_STATE_DIR:-$REPO_ROOT/.cluster}
KUBECONFIG_OUT=${KUBECONFIG_OUT:-$CLUSTER_STATE_DIR/kubeconfig}
# kwokctl keeps each cluster's files (pids, logs, certs, etcd data) under KWOK_WORKDIR.
export KWOK_WORKDIR=${KWOK_WORKDIR:-$TENSORGATE_CACHE/kwok}
