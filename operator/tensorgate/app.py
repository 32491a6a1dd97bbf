"""Start the kopf operator with TensorGate's handlers and dependencies."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf

from tensorgate.checks import PlatformChecker
from tensorgate.handlers import OperatorMemo, SystemClock, register
from tensorgate.metrics.factory import make_providers
from tensorgate.notify.webhooks import HttpWebhookSender
from tensorgate.platform.base import TrafficRouter
from tensorgate.platform.golden_sources import GoldenSources
from tensorgate.platform.kubernetes.client import KubeClient
from tensorgate.platform.kubernetes.platform import (
    GatewayRouter,
    KubernetesPlatform,
    ReplicaRouter,
)
from tensorgate.reconcile import Checker, Reconciler
from tensorgate.settings import Settings


def build_reconciler(
    client: KubeClient, settings: Settings, checker: Checker | None = None
) -> Reconciler:
    """Wire the Kubernetes edges into a Reconciler."""
    platform = KubernetesPlatform(client, GoldenSources(settings.golden_sources))
    routers: dict[str, TrafficRouter] = {
        "replicas": ReplicaRouter(client),
        "gateway-api": GatewayRouter(client),
    }
    if checker is None:
        providers = make_providers(
            prometheus_url=settings.prometheus_url,
            timeout_s=settings.request_timeout_s,
            retries=settings.retries,
            prometheus=settings.prometheus,
        )
        checker = PlatformChecker(platform, providers)
    return Reconciler(
        platform, routers, checker, SystemClock(), reports=platform, webhooks=HttpWebhookSender()
    )


def make_memo(settings: Settings, **state: Any) -> OperatorMemo:
    return OperatorMemo(settings=settings, make_reconciler=build_reconciler, state=dict(state))


async def run_operator(
    settings: Settings,
    *,
    memo: OperatorMemo | None = None,
    stop_flag: asyncio.Event | None = None,
    ready_flag: asyncio.Event | None = None,
) -> None:
    """Run until ``stop_flag`` is set (or forever)."""
    registry = kopf.OperatorRegistry()
    register(registry, settings)
    await kopf.operator(
        registry=registry,
        memo=memo or make_memo(settings),
        clusterwide=not settings.namespaces,
        namespaces=list(settings.namespaces),
        standalone=settings.peering is None,
        peering_name=settings.peering,
        liveness_endpoint=settings.liveness_endpoint,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )


def configure_logging(settings: Settings) -> None:
    level = getattr(logging, settings.log_level.upper(), logging.INFO)
    if settings.log_format == "json":
        kopf.configure(verbose=False, log_format=kopf.LogFormat.JSON)
    else:
        kopf.configure(verbose=False, log_format=kopf.LogFormat.PLAIN)
    logging.getLogger().setLevel(level)
    # One line per HTTP request is DEBUG, not INFO (24.6 KB/s at 100 objects otherwise):
    # httpx logs each request at INFO, so its records are demoted and shown only at DEBUG.
    for noisy in ("httpx", "httpcore"):
        logger = logging.getLogger(noisy)
        logger.setLevel(logging.DEBUG if level <= logging.DEBUG else logging.WARNING)
        if not any(isinstance(f, _RequestLinesAreDebug) for f in logger.filters):
            logger.addFilter(_RequestLinesAreDebug())


class _RequestLinesAreDebug(logging.Filter):
    """An INFO record of an HTTP library (one per request) becomes DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True
