"""Build metric providers by name; unknown names and missing settings are errors."""

from __future__ import annotations

from tensorgate.api.spec import MetricProvider
from tensorgate.errors import ConfigError
from tensorgate.metrics.base import MetricsProvider
from tensorgate.settings import PrometheusOptions


def make_provider(
    kind: str,
    *,
    prometheus_url: str | None = None,
    timeout_s: float = 10.0,
    retries: int = 3,
    prometheus: PrometheusOptions | None = None,
) -> MetricsProvider:
    """The provider called ``kind`` (``prometheus`` or ``scrape``)."""
    try:
        provider = MetricProvider(kind)
    except ValueError as exc:
        known = ", ".join(p.value for p in MetricProvider)
        raise ConfigError(f"unknown metrics provider {kind!r} (expected one of {known})") from exc
    if provider == MetricProvider.PROMETHEUS:
        if not prometheus_url:
            raise ConfigError(
                "metrics provider prometheus needs a Prometheus URL "
                "(--prometheus-url or TENSORGATE_PROMETHEUS_URL)"
            )
        from tensorgate.metrics.prometheus import PrometheusProvider

        return PrometheusProvider(
            prometheus_url, timeout_s=timeout_s, retries=retries, options=prometheus
        )
    from tensorgate.metrics.scrape import ScrapeProvider

    return ScrapeProvider(timeout_s=timeout_s, retries=retries)


def make_providers(
    *,
    prometheus_url: str | None,
    timeout_s: float = 10.0,
    retries: int = 3,
    prometheus: PrometheusOptions | None = None,
) -> dict[str, MetricsProvider]:
    """Every provider that can run with these settings (prometheus only with a URL)."""
    providers: dict[str, MetricsProvider] = {
        MetricProvider.SCRAPE.value: make_provider(
            MetricProvider.SCRAPE, timeout_s=timeout_s, retries=retries
        )
    }
    if prometheus_url:
        providers[MetricProvider.PROMETHEUS.value] = make_provider(
            MetricProvider.PROMETHEUS,
            prometheus_url=prometheus_url,
            timeout_s=timeout_s,
            retries=retries,
            prometheus=prometheus,
        )
    return providers
