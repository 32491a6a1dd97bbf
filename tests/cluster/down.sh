#!/usr/bin/env bash
# Stops the test cluster started by up.sh and deletes its state (etcd data, logs, kubeconfig).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
[[ -x $CLUSTER_BIN/kwokctl ]] || { echo "cluster tools missing ($CLUSTER_BIN/kwokctl): run make cluster-tools" >&2; exit 1; }
export PATH=$CLUSTER_BIN:$PATH
supervisor_pid=$KWOK_WORKDIR/clusters/$CLUSTER_NAME/supervisor.pid
if [[ -r $supervisor_pid ]]; then  # first, or it would restart what is being stopped
  kill "$(<"$supervisor_pid")" 2>/dev/null || true
  rm -f "$supervisor_pid"
fi
if kwokctl get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
  # --kubeconfig: the file to drop the context from; ours is deleted below (never ~/.kube/config)
  kwokctl delete cluster --name "$CLUSTER_NAME" --kubeconfig="$KUBECONFIG_OUT"
else
  echo "cluster $CLUSTER_NAME is not running"
fi
rm -f "$KUBECONFIG_OUT" "$CLUSTER_STATE_DIR/audit.log" "$CLUSTER_STATE_DIR/kwokctl.yaml"
