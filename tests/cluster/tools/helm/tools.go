//go:build tools

// Package tools pins the command build-helm.sh builds.
package tools

import _ "helm.sh/helm/v4/cmd/helm"
