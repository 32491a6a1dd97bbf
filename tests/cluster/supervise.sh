#!/usr/bin/env bash
# Keeps the test cluster's components running, as a kubelet keeps static pods running: once a
# second, a component whose process is gone (or a zombie: nothing reaps kwokctl's children in
# a container) loses its stale pid file and `kwokctl start cluster` starts it again. Without
# this, kube-controller-manager and kube-scheduler exit for good when the API server goes away.
# While $KWOK_WORKDIR/clusters/$CLUSTER_NAME/supervisor.hold exists nothing is restarted (a
# test holding an outage). Started by up.sh, stopped by down.sh; it also stops by itself when
# the cluster's folder is gone or after CLUSTER_SUPERVISE_MAX_S seconds (default 6 h).
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
export PATH=$CLUSTER_BIN:$PATH
dir=$KWOK_WORKDIR/clusters/$CLUSTER_NAME
max_s=${CLUSTER_SUPERVISE_MAX_S:-21600}

alive() { # a running process, not a zombie
  [[ -r /proc/$1/status ]] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}

shopt -s nullglob
components=()
for f in "$dir"/pids/*.pid; do components+=("$(basename "$f" .pid)"); done
echo "$(date -u +%FT%TZ) supervising ${components[*]}"
while ((SECONDS < max_s)) && [[ -d $dir/pids ]]; do
  if [[ ! -e $dir/supervisor.hold ]]; then
    dead=()
    for c in "${components[@]}"; do
      f=$dir/pids/$c.pid pid=""
      [[ -r $f ]] && pid=$(<"$f")
      if [[ -z $pid ]] || ! alive "$pid"; then dead+=("$c"); rm -f "$f"; fi
    done
    if ((${#dead[@]})); then
      echo "$(date -u +%FT%TZ) restarting ${dead[*]}"
      kwokctl start cluster --name "$CLUSTER_NAME" >/dev/null 2>&1 || echo "$(date -u +%FT%TZ) kwokctl start failed; retrying"
    fi
  fi
  sleep 1
done
echo "$(date -u +%FT%TZ) supervisor exits"
