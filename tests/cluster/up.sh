#!/usr/bin/env bash
# Starts the TensorGate test cluster: etcd, kube-apiserver (RBAC, audit log), kube-controller-manager,
# kube-scheduler and the kwok controller as local processes run by kwokctl, all on 127.0.0.1;
# then starts tests/cluster/supervise.sh (restarts a component that exits, as a kubelet would),
# applies crds/ and the simulated nodes and waits until the nodes take pods.
# Writes the kubeconfig to .cluster/kubeconfig. Re-running it on a running cluster only re-applies.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
WAIT_TIMEOUT=${CLUSTER_WAIT_TIMEOUT:-180}   # seconds, for each wait below
POD_CIDR=${CLUSTER_POD_CIDR:-127.1.0.0/16}
SKIP_LABEL=${CLUSTER_PLAYER_LABEL:-app.kubernetes.io/name=tfserving}
# Optional Service range (kube-apiserver's default 10.0.0.0/24 holds ~250 Services); the
# 1,000-object benchmark (make bench-scale) sets 10.0.0.0/16. Read when the cluster is created.
SERVICE_CIDR=${CLUSTER_SERVICE_CIDR:-}

for b in "${CLUSTER_BINARIES[@]}"; do
  [[ -x $CLUSTER_BIN/$b ]] || { echo "cluster tools missing ($CLUSTER_BIN/$b): run make cluster-tools" >&2; exit 1; }
done
export PATH=$CLUSTER_BIN:$PATH   # kwokctl runs the kubectl it finds on PATH
start=$SECONDS
mkdir -p "$CLUSTER_STATE_DIR" "$(dirname "$KUBECONFIG_OUT")"

# Poll until "$@" succeeds, at most WAIT_TIMEOUT seconds.
wait_for() {
  local what=$1; shift; local deadline=$((SECONDS + WAIT_TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      echo "timed out after ${WAIT_TIMEOUT}s waiting for $what; logs: $KWOK_WORKDIR/clusters/$CLUSTER_NAME/logs" >&2
      "$@" >&2 || true; exit 1
    fi
    sleep 1
  done
}

if kwokctl get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
  echo "cluster $CLUSTER_NAME exists: reusing it (make cluster-down to start afresh)"
  kwokctl start cluster --name "$CLUSTER_NAME"   # restarts stopped components, e.g. after a reboot
else
  config=$CLUSTER_STATE_DIR/kwokctl.yaml
  cat > "$config" <<YAML
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  runtime: binary
  bindAddress: 127.0.0.1
  kubeVersion: $K8S_VERSION
  etcdVersion: ${ETCD_VERSION#v}
  kubeApiserverBinary: $CLUSTER_BIN/kube-apiserver
  kubeControllerManagerBinary: $CLUSTER_BIN/kube-controller-manager
  kubeSchedulerBinary: $CLUSTER_BIN/kube-scheduler
  kubectlBinary: $CLUSTER_BIN/kubectl
  etcdBinary: $CLUSTER_BIN/etcd
  kwokControllerBinary: $CLUSTER_BIN/kwok
  kubeAuthorization: true
  kubeAuditPolicy: $CLUSTER_DIR/audit-policy.yaml
componentsPatches:
- name: kube-apiserver
  extraArgs:  # the default 10.0.0.0/24 holds 254 Services; the load test creates 500+
  - {key: service-cluster-ip-range, value: 10.96.0.0/16}
- name: kwok-controller
  extraArgs:
  - {key: manage-all-nodes, value: "false", override: true}
  - {key: manage-nodes-with-annotation-selector, value: kwok.x-k8s.io/node=fake}
  - {key: node-ip, value: 127.0.0.1, override: true}
  - {key: cidr, value: "$POD_CIDR"}
YAML
  if [[ -n $SERVICE_CIDR ]]; then
    cat >> "$config" <<YAML
- name: kube-apiserver
  extraArgs:
  - {key: service-cluster-ip-range, value: "$SERVICE_CIDR"}
YAML
  fi
  echo "---" >> "$config"
  kwok-stages -skip-label "$SKIP_LABEL" >> "$config"
  { echo "---"; cat "$CLUSTER_DIR/tfserving-stage.yaml"; } >> "$config"
  echo "creating cluster $CLUSTER_NAME ($K8S_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION) in $KWOK_WORKDIR"
  kwokctl create cluster --name "$CLUSTER_NAME" --config "$config" --timeout "${WAIT_TIMEOUT}s" \
    --kubeconfig=""   # leave ~/.kube/config alone
fi

# A kubelet restarts static pods that exit; supervise.sh does that for the components.
supervisor_pid=$KWOK_WORKDIR/clusters/$CLUSTER_NAME/supervisor.pid
if ! { [[ -r $supervisor_pid ]] && kill -0 "$(<"$supervisor_pid")" 2>/dev/null; }; then
  rm -f "$KWOK_WORKDIR/clusters/$CLUSTER_NAME/supervisor.hold"
  setsid nohup bash "$CLUSTER_DIR/supervise.sh" \
    >>"$KWOK_WORKDIR/clusters/$CLUSTER_NAME/logs/supervisor.log" 2>&1 </dev/null &
  echo $! > "$supervisor_pid"
fi

kwokctl get kubeconfig --name "$CLUSTER_NAME" > "$KUBECONFIG_OUT.tmp" && mv "$KUBECONFIG_OUT.tmp" "$KUBECONFIG_OUT"
export KUBECONFIG=$KUBECONFIG_OUT
ln -sfn "$KWOK_WORKDIR/clusters/$CLUSTER_NAME/logs/audit.log" "$CLUSTER_STATE_DIR/audit.log"
wait_for "the API server" kubectl get --raw /readyz

shopt -s nullglob
crds=("$REPO_ROOT"/crds/*.yaml)
if ((${#crds[@]})); then
  for f in "${crds[@]}"; do kubectl apply -f "$f" >/dev/null; done
  wait_for "CRDs to be established" kubectl wait --for=condition=Established crd --all --timeout=1s
fi

kubectl apply -f "$CLUSTER_DIR/nodes.yaml" >/dev/null
nodes=$(kubectl get -f "$CLUSTER_DIR/nodes.yaml" -o name | tr '\n' ' ')
nodes_ready() { # every node Ready and without the not-ready / unreachable taints
  local out; out=$(kubectl get $nodes -o jsonpath='{range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status} {.spec.taints[*].key}{"\n"}{end}')
  [[ -n $out ]] && ! grep -vE '^\S+ True( |$)' <<<"$out" | grep -q . && ! grep -qE 'node\.kubernetes\.io/(not-ready|unreachable)' <<<"$out"
}
wait_for "nodes to be Ready and schedulable ($nodes)" nodes_ready
wait_for "the default ServiceAccount" kubectl get serviceaccount default -n default

echo "cluster $CLUSTER_NAME ready in $((SECONDS - start))s"
echo "  export KUBECONFIG=$KUBECONFIG_OUT"
echo "  audit log: $CLUSTER_STATE_DIR/audit.log   component logs: $KWOK_WORKDIR/clusters/$CLUSTER_NAME/logs"
