#!/usr/bin/env bash
# Checks a running test cluster (make cluster): GPU Deployment lands on GPU nodes with 127.x pod
# IPs, a plain pod on a CPU node, a tfserving pod stays NOT ready until its status is patched
# (what the pod player does), deletion works, nothing listens beyond 127.0.0.1, audit log written.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
export PATH=$CLUSTER_BIN:$PATH KUBECONFIG=${KUBECONFIG:-$KUBECONFIG_OUT}
[[ -f $KUBECONFIG ]] || { echo "no kubeconfig at $KUBECONFIG: run make cluster" >&2; exit 1; }
NS=tg-smoke T=${SMOKE_TIMEOUT:-60}
fail() { echo "FAIL: $*" >&2; kubectl -n $NS get pods -o wide >&2 || true; exit 1; }
wait_for() { local what=$1 deadline=$((SECONDS + T)); shift
  until "$@" >/dev/null 2>&1; do ((SECONDS < deadline)) || fail "timed out waiting for $what"; sleep 0.5; done; }
jp() { kubectl -n $NS get "$1" -o jsonpath="$2"; }

kubectl delete namespace $NS --ignore-not-found --wait=true >/dev/null
kubectl create namespace $NS >/dev/null
trap 'kubectl delete namespace $NS --wait=false >/dev/null 2>&1 || true' EXIT
# The controller-manager creates a namespace's "default" ServiceAccount shortly after the
# namespace; pods created before it are rejected by the ServiceAccount admission plugin.
wait_for "ServiceAccount $NS/default" kubectl -n $NS get serviceaccount default
kubectl -n $NS apply -f - >/dev/null <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: gpu-smoke}
spec:
  replicas: 2
  selector: {matchLabels: {app: gpu-smoke}}
  template:
    metadata: {labels: {app: gpu-smoke}}
    spec:
      nodeSelector: {tensorgate.dev/accelerator: gpu}
      tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
      containers:
      - {name: main, image: example.invalid/never-pulled, resources: {limits: {nvidia.com/gpu: "1"}}}
---
apiVersion: v1
kind: Pod
metadata: {name: plain}
spec:
  containers: [{name: main, image: example.invalid/never-pulled}]
---
apiVersion: v1
kind: Pod
metadata: {name: tfserving, labels: {app.kubernetes.io/name: tfserving}}
spec:
  tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
  containers:
  - {name: tfserving, image: tensorflow/serving, resources: {limits: {nvidia.com/gpu: "1"}}}
YAML

wait_for "Deployment gpu-smoke available" kubectl -n $NS rollout status deploy/gpu-smoke --timeout=1s
gpu_pods=$(kubectl -n $NS get pods -l app=gpu-smoke -o jsonpath='{range .items[*]}{.metadata.name} {.spec.nodeName} {.status.podIP}{"\n"}{end}')
[[ $(grep -c . <<<"$gpu_pods") == 2 ]] || fail "want 2 gpu-smoke pods, got: $gpu_pods"
while read -r pod node ip; do
  [[ $node == gpu-node-* ]] || fail "$pod on $node, not a GPU node"
  [[ $ip == 127.* ]] || fail "$pod has pod IP '$ip', not in 127.0.0.0/8"
  echo "ok: $pod on $node, pod IP $ip"
done <<<"$gpu_pods"

wait_for "pod plain Ready" kubectl -n $NS wait pod/plain --for=condition=Ready --timeout=1s
node=$(jp pod/plain '{.spec.nodeName}'); [[ $node == cpu-node-* ]] || fail "plain on $node, not a CPU node"
echo "ok: plain on $node, pod IP $(jp pod/plain '{.status.podIP}')"

has_ip() { [[ -n $(jp pod/tfserving '{.status.podIP}') ]]; }
wait_for "pod tfserving Running with an IP" has_ip
ready=$(jp pod/tfserving '{.status.conditions[?(@.type=="Ready")].status}')
[[ $(jp pod/tfserving '{.status.phase}') == Running && $ready == False ]] || fail "tfserving: want Running, Ready=False; got Ready=$ready"
echo "ok: tfserving Running on $(jp pod/tfserving '{.spec.nodeName}') at $(jp pod/tfserving '{.status.podIP}'), Ready=False (left to the pod player)"
# What the pod player does: read the pod, flip readiness, replace /status (resourceVersion guards it).
kubectl -n $NS get pod/tfserving -o json | python3 -c '
import json, sys, datetime
pod = json.load(sys.stdin); now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
for c in pod["status"]["conditions"]:
    if c["type"] in ("Ready", "ContainersReady"):
        c.update(status="True", lastTransitionTime=now); c.pop("reason", None); c.pop("message", None)
for cs in pod["status"]["containerStatuses"]:
    cs["ready"] = True
json.dump(pod, sys.stdout)' | kubectl replace --subresource=status -f - >/dev/null
wait_for "pod tfserving Ready after the status patch" kubectl -n $NS wait pod/tfserving --for=condition=Ready --timeout=1s
[[ $(jp pod/tfserving '{.status.containerStatuses[0].ready} {.status.containerStatuses[0].state.running.startedAt}') == true\ 20* ]] \
  || fail "tfserving container status lost its running state"
echo "ok: tfserving Ready after replacing its pods/status"
kubectl -n $NS delete pod/tfserving --wait=false >/dev/null
gone() { local out; out=$(kubectl -n $NS get pods --field-selector metadata.name=tfserving -o name) && [[ -z $out ]]; }
wait_for "pod tfserving to be deleted" gone
echo "ok: tfserving deleted"

wide=$(ss -Hltnp | grep -E 'etcd|kube-|kwok' | awk '$4 !~ /^127\.0\.0\.1:/' || true)
[[ -z $wide ]] || fail "cluster processes listen beyond 127.0.0.1:"$'\n'"$wide"
echo "ok: every cluster listener is on 127.0.0.1 ($(ss -Hltnp | grep -cE 'etcd|kube-|kwok') sockets)"
audit=$(readlink -f "$CLUSTER_STATE_DIR/audit.log" || true)
[[ -s $audit ]] || fail "audit log $audit missing or empty"
echo "ok: audit log $(wc -l < "$audit") events at $audit"
echo "smoke test passed"
