"""PromQL templates: the built-in TF Serving checks, and rendering of user queries.

A query may use four placeholders, written ``{{name}}`` (spaces inside the braces allowed):

==============  =================================================================
``{{model}}``     the ModelDeployment's name (pod label ``tensorgate.dev/model``)
``{{namespace}}`` its namespace
``{{track}}``     ``canary`` or ``stable`` (pod label ``tensorgate.dev/track``)
``{{interval}}``  ``analysis.interval`` as a PromQL range, in whole seconds (``60s``)
==============  =================================================================

Any other placeholder is a configuration error (a typo must not become a literal string that
silently matches nothing).

The built-in checks assume that Prometheus scrapes TF Serving's
``/monitoring/prometheus/metrics`` on every serving pod and copies the pod's labels onto the
series as ``model``, ``track`` and ``namespace``. With the Kubernetes service discovery, the
scrape job looks like this (the Helm chart documents the same)::

    - job_name: tensorgate-serving
      metrics_path: /monitoring/prometheus/metrics
      kubernetes_sd_configs: [{role: pod}]
      relabel_configs:
        - source_labels: [__meta_kubernetes_pod_label_tensorgate_dev_track]
          regex: (.+)
          action: keep
        - source_labels: [__meta_kubernetes_pod_label_tensorgate_dev_track]
          target_label: track
        - source_labels: [__meta_kubernetes_pod_label_tensorgate_dev_model]
          target_label: model
        - source_labels: [__meta_kubernetes_namespace]
          target_label: namespace
        - source_labels: [__meta_kubernetes_pod_container_port_name]
          regex: http
          action: keep

Predict traffic only. Real TF Serving counts every ``/v1/...`` REST request in
``request_count`` (status and metadata GETs, HTTP readiness probes) and records their latency
with an empty ``API`` label (tensorflow/serving ``model_servers/http_server.cc``); gRPC
Predicts carry ``API="Predict"``, REST ones ``API="predict"``. ``request_count`` has no API
label, so the error rate is failed requests / (failed requests + successful predicts), the
successful predicts read from the latency histogram's count filtered on ``API``: a probe or a
status GET that succeeds is in neither numerator nor denominator. The p99 is over predicts
only. The serving pods' readiness probe is a gRPC health check, which no counter sees.

TF Serving's metric names start with a colon (``:tensorflow:serving:request_count``); the
built-ins select them with ``{__name__="..."}``, which every PromQL version parses.
"""

from __future__ import annotations

from tensorgate.api.spec import PLACEHOLDER_RE, QUERY_PLACEHOLDERS, BuiltinMetric
from tensorgate.errors import ConfigError

REQUEST_COUNT = ":tensorflow:serving:request_count"
LATENCY_BUCKET = ":tensorflow:serving:request_latency_bucket"
LATENCY_COUNT = ":tensorflow:serving:request_latency_count"
PREDICT_APIS = ("predict", "Predict")
"""``API`` label values of predict requests: REST (``predict``) and gRPC (``Predict``)."""
_API_MATCH = 'API=~"' + "|".join(PREDICT_APIS) + '"'
OK_STATUS = "OK"
PLACEHOLDERS = QUERY_PLACEHOLDERS
"""The allowed placeholders; the spec's validator rejects any other (``{{modle}}``)."""
MIN_RANGE_S = 1

_PLACEHOLDER = PLACEHOLDER_RE

_FAILED = (
    '(sum(rate({__name__="' + REQUEST_COUNT + '",namespace="{{namespace}}",'
    'model="{{model}}",track="{{track}}",status!="' + OK_STATUS + '"}[{{interval}}]))'
    " or vector(0))"
)
_OK_PREDICTS = (
    'sum(rate({__name__="' + LATENCY_COUNT + '",namespace="{{namespace}}",'
    'model="{{model}}",track="{{track}}",' + _API_MATCH + "}[{{interval}}]))"
)
ERROR_RATE_TEMPLATE = f"{_FAILED} / ({_FAILED} + {_OK_PREDICTS})"
"""Failed requests / (failed + successful predicts). No predicts at all gives no series."""

LATENCY_P99_TEMPLATE = (
    'histogram_quantile(0.99, sum by (le) (rate({__name__="' + LATENCY_BUCKET + '",'
    'namespace="{{namespace}}",model="{{model}}",track="{{track}}",' + _API_MATCH + "}"
    "[{{interval}}])))"
    " / 1000"
)
"""p99 of successful predicts, microseconds -> milliseconds."""

BUILTIN_TEMPLATES: dict[BuiltinMetric, str] = {
    BuiltinMetric.ERROR_RATE: ERROR_RATE_TEMPLATE,
    BuiltinMetric.LATENCY_P99: LATENCY_P99_TEMPLATE,
}


def promql_range(interval_s: float) -> str:
    """A PromQL range for ``interval_s`` seconds, in whole seconds (at least 1s)."""
    return f"{max(MIN_RANGE_S, round(interval_s))}s"


def _label_value(text: str) -> str:
    """Escape a value for use inside a double-quoted PromQL label matcher (backslash, quote
    and line breaks), so it cannot close the string and add ``or vector(1)``."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")


def placeholders(template: str) -> set[str]:
    """The placeholder names a template uses."""
    return set(_PLACEHOLDER.findall(template))


def render(template: str, *, model: str, namespace: str, track: str, interval_s: float) -> str:
    """Fill a query template; unknown placeholders raise ``ConfigError``."""
    unknown = sorted(placeholders(template) - set(PLACEHOLDERS))
    if unknown:
        raise ConfigError(
            f"unknown placeholder(s) {', '.join('{{' + u + '}}' for u in unknown)} in query "
            f"(expected {', '.join('{{' + p + '}}' for p in PLACEHOLDERS)})"
        )
    values = {
        "model": _label_value(model),
        "namespace": _label_value(namespace),
        "track": _label_value(track),
        "interval": promql_range(interval_s),
    }
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def builtin_query(
    builtin: BuiltinMetric, *, model: str, namespace: str, track: str, interval_s: float
) -> str:
    """The PromQL of a built-in check for one track."""
    return render(
        BUILTIN_TEMPLATES[builtin],
        model=model,
        namespace=namespace,
        track=track,
        interval_s=interval_s,
    )
