{{/* This subchart only ships CRDs (crds/); it renders nothing. */}}
