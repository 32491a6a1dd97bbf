// Command kwok-stages prints kwok's default node and pod Stages (the ones kwokctl uses when its
// config has none), taken from the pinned kwok module, with the default pod-ready Stage narrowed
// so that it skips pods carrying -skip-label. kwokctl replaces ALL default Stages as soon as its
// config holds one, so up.sh appends its own Stages for the skipped pods to this output.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	nodefast "sigs.k8s.io/kwok/kustomize/stage/node/fast"
	nodelease "sigs.k8s.io/kwok/kustomize/stage/node/heartbeat-with-lease"
	podfast "sigs.k8s.io/kwok/kustomize/stage/pod/fast"
	"sigs.k8s.io/yaml"
)

func main() {
	skip := flag.String("skip-label", "app.kubernetes.io/name=tfserving", "key=value: pods with this label are left out of the default pod-ready Stage")
	flag.Parse()
	key, value, ok := strings.Cut(*skip, "=")
	if !ok || key == "" || value == "" {
		fail(fmt.Errorf("-skip-label must be key=value, got %q", *skip))
	}
	docs := []string{nodefast.DefaultNodeInit, nodelease.DefaultNodeHeartbeatWithLease,
		podfast.DefaultPodReady, podfast.DefaultPodComplete, podfast.DefaultPodDelete}
	narrowed := false
	for i, doc := range docs {
		var stage map[string]any
		if err := yaml.Unmarshal([]byte(doc), &stage); err != nil {
			fail(err)
		}
		if name, _ := dig(stage, "metadata", "name").(string); name == "pod-ready" {
			selector, _ := dig(stage, "spec", "selector").(map[string]any)
			exprs, _ := selector["matchExpressions"].([]any)
			if selector == nil || exprs == nil {
				fail(fmt.Errorf("pod-ready Stage has no spec.selector.matchExpressions"))
			}
			selector["matchExpressions"] = append(exprs, map[string]any{
				"key": fmt.Sprintf(".metadata.labels[%q]", key), "operator": "NotIn", "values": []any{value},
			})
			narrowed = true
		}
		out, err := yaml.Marshal(stage)
		if err != nil {
			fail(err)
		}
		if i > 0 {
			fmt.Println("---")
		}
		fmt.Print(string(out))
	}
	if !narrowed {
		fail(fmt.Errorf("no pod-ready Stage among kwok's defaults"))
	}
}

func dig(m map[string]any, keys ...string) any {
	var v any = m
	for _, k := range keys {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kwok-stages:", err)
	os.Exit(1)
}
