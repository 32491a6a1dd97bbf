# syntax=docker/dockerfile:1
# The TensorGate operator image. No TensorFlow inside: the operator never imports it to
# reconcile (tests/unit/test_no_tensorflow.py); the gate's TF side is the `tf` extra.
#
#   docker build -t ghcr.io/tensorgate/tensorgate:0.1.0 \
#     --build-arg REVISION="$(git rev-parse HEAD)" .
#
# The base is pinned by its full version tag. For reproducible builds pin it by digest too,
# e.g. FROM python:3.11.14-slim-bookworm@sha256:<digest> (`docker buildx imagetools inspect
# python:3.11.14-slim-bookworm` prints it), and let Renovate/Dependabot bump tag and digest.
FROM python:3.11.14-slim-bookworm AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# The package and its dependencies, pinned by constraints.txt. No extras: no TensorFlow,
# no TF Serving API (constraints only pin; they install nothing by themselves).
COPY pyproject.toml constraints.txt README.md ./
COPY operator/ operator/
RUN pip install --no-cache-dir -c constraints.txt . \
 && tensorgate --help >/dev/null

FROM python:3.11.14-slim-bookworm
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="tensorgate" \
      org.opencontainers.image.description="Kubernetes operator that gates and progressively rolls out TensorFlow models" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/tensorgate/tensorgate" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.14-slim-bookworm"
COPY --from=builder /opt/venv /opt/venv
# Read-only root filesystem: no .pyc writes, HOME and temporary files on the /tmp volume.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
# Numeric, so the kubelet can enforce runAsNonRoot without an /etc/passwd lookup.
USER 10001:10001
WORKDIR /tmp
# 8080: kopf liveness (/healthz); 9090: /metrics.
EXPOSE 8080 9090
ENTRYPOINT ["tensorgate", "run"]
