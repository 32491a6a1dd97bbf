# Test cluster: a real control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler) built from the published Go modules and run by kwokctl with simulated
# GPU and CPU nodes, all on 127.0.0.1. See tests/cluster/README.md.
#   make cluster-tools   build the binaries once (cold: 6-7 min on 2 cores; 1 s after)
#   make cluster         start it; kubeconfig in $(CLUSTER_KUBECONFIG)
#   make cluster-down    stop it and delete its state
# The scripts read TENSORGATE_CACHE (default ~/.cache/tensorgate), GO, GO_BUILD_JOBS,
# CLUSTER_NAME and CLUSTER_WAIT_TIMEOUT from the environment.

CLUSTER_DIR        ?= tests/cluster
CLUSTER_KUBECONFIG ?= .cluster/kubeconfig

.PHONY: cluster-tools cluster cluster-down

cluster-tools:
	bash $(CLUSTER_DIR)/build-tools.sh
	bash $(CLUSTER_DIR)/build-helm.sh

cluster:
	KUBECONFIG_OUT=$(abspath $(CLUSTER_KUBECONFIG)) bash $(CLUSTER_DIR)/up.sh

cluster-down:
	KUBECONFIG_OUT=$(abspath $(CLUSTER_KUBECONFIG)) bash $(CLUSTER_DIR)/down.sh
