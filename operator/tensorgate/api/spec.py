"""The ModelDeployment spec: typed, documented, validated. The CRD is generated from these types.

Every field carries a description (it becomes ``kubectl explain`` text). Cross-field rules are
written twice on purpose, once as a Python validator and once as the CEL rule the API server
evaluates (``x-kubernetes-validations``); ``tests/unit/api`` proves both accept and reject the
same manifests.
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Mapping
from enum import StrEnum
from itertools import pairwise
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict, JsonValue

from tensorgate.errors import SpecError
from tensorgate.redact import redact

GROUP = "tensorgate.dev"
VERSION = "v1alpha1"
KIND = "ModelDeployment"
PLURAL = "modeldeployments"
API_VERSION = f"{GROUP}/{VERSION}"

URI_SCHEMES = ("gs://", "s3://", "pvc://", "/")
GOLDEN_URI_SCHEMES = ("gs://", "s3://", "/")
GOLDEN_URI_MESSAGE = (
    "must start with s3://, gs:// or / (a path in the operator pod); the operator cannot "
    "read pvc:// claims: copy the .npz to object storage or use configMapRef"
)
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DEFAULT_SERVING_IMAGE = "tensorflow/serving:2.19.0-gpu"
DEFAULT_S3_FETCH_IMAGE = "amazon/aws-cli:2.17.0"
MAX_ACCURACY_DROP_LIMIT = 0.3
"""Largest ``analysis.maxAccuracyDrop``: where the gate's exact size is proven (engine.stats)."""
MAX_CONFIDENCE = 0.999
"""Largest ``analysis.confidence`` (idem)."""

DNS_1035_LABEL_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
"""A Service name: a DNS label that starts with a letter."""
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
"""A Secret, ConfigMap, ServiceAccount or RuntimeClass name (at most 253 characters)."""
CONFIG_MAP_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
LONGEST_CHILD_SUFFIX = "-canary"
"""The longest suffix a child object's name gets (``<name>-canary``, ``<name>-stable``)."""
MAX_NAME_LENGTH = 63 - len(LONGEST_CHILD_SUFFIX)
URI_PATTERN = r"^(gs://|s3://|pvc://|/)[A-Za-z0-9._~/@%+=,:-]*$"
"""Characters a model or golden-set URI may hold: nothing that needs quoting in TF Serving's
model config text (no quotes, backslashes, spaces, braces or control characters)."""
MAX_URI_LENGTH = 1024
MAX_QUERY_LENGTH = 4096
MAX_DURATION_LENGTH = 32
MAX_DURATION_S = 7 * 24 * 3600.0
MAX_DURATION = "168h"
QUANTITY_PATTERN = (
    r"^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]{1,3})?$"
)
"""A non-negative Kubernetes resource quantity (``500m``, ``2``, ``1.5Gi``, ``1e3``)."""
MAX_QUANTITY_LENGTH = 32
INT64_MAX = 2**63 - 1
QUERY_PLACEHOLDERS = ("model", "namespace", "track", "interval")
"""The ``{{name}}`` placeholders a metric query may use (metrics/templates.py fills them)."""
PLACEHOLDER_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_QUERY_PATTERN = r"^([^{]|\{[^{]|\{\{\s*(" + "|".join(QUERY_PLACEHOLDERS) + r")\s*\}\})*\{?$"
"""A query in which every ``{{`` opens one of the allowed placeholders (the CRD's pattern)."""

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_DURATION_UNITS_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration_s(text: str) -> float:
    """Parse a Go-style duration (``90s``, ``1m30s``, ``500ms``) into seconds."""
    if len(text) > MAX_DURATION_LENGTH or not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(
            f"invalid duration {short_repr(text)} (expected e.g. 30s, 5m, 1h30m; "
            f"at most {MAX_DURATION})"
        )
    return sum(float(n) * _DURATION_UNITS_S[u] for n, u in _DURATION_PART.findall(text))


_SHORT = reprlib.Repr()
_SHORT.maxstring = 80
_SHORT.maxother = 80
_SHORT.maxlevel = 3
_SHORT.maxdict = _SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxset = 4


def short_repr(value: Any) -> str:
    """A bounded ``repr`` for error messages: a 100 KB string or a deep value stays one line,
    and a password in a URL is masked."""
    return redact(_SHORT.repr(value))


def _cel(rule: str, message: str, field_path: str | None = None) -> JsonDict:
    out: JsonDict = {"rule": rule, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    return out


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=False,
    )

    def to_dict(self) -> dict[str, Any]:
        """The camelCase dict form, as it appears in the resource."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def _bounded_duration(text: str) -> str:
    if parse_duration_s(text) > MAX_DURATION_S:
        raise ValueError(f"duration {text!r} is longer than {MAX_DURATION}")
    return text


Duration = Annotated[
    str,
    Strict(),
    Field(
        pattern=DURATION_PATTERN,
        max_length=MAX_DURATION_LENGTH,
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(f"duration(self) <= duration('{MAX_DURATION}')", f"at most {MAX_DURATION}")
            ]
        },
    ),
    AfterValidator(_bounded_duration),
]
Int = Annotated[int, Strict()]
"""An integer field: ``true``, ``2.0`` and ``"2"`` are refused (the CRD says integer)."""
Float = Annotated[float, Strict(), AllowInfNan(False)]
"""A number field: finite; ``true`` is refused."""
Bool = Annotated[bool, Strict()]
"""A boolean field: ``"yes"`` and ``1`` are refused."""


def _uri(uri: str) -> str:
    """Allowed schemes, safe characters, no ``..`` segment (model and golden-set URIs)."""
    if not uri.startswith(URI_SCHEMES):
        raise ValueError(
            f"must start with gs://, s3://, pvc:// or / (got {short_repr(uri)}; "
            "file://, http:// and relative paths are not allowed)"
        )
    if uri.startswith(("gs://", "s3://", "pvc://")) and "@" in uri.split("/")[2]:
        raise ValueError(
            "must not hold credentials (user:password@); put them in a Secret and name it in "
            "serving.credentialsSecret"
        )
    if not re.fullmatch(URI_PATTERN, uri):
        bad = sorted({c for c in uri if not re.fullmatch(r"[A-Za-z0-9._~/@%+=,:-]", c)})
        raise ValueError(
            f"contains characters that are not allowed in a URI: {short_repr(''.join(bad))} "
            "(use letters, digits and . _ ~ / @ % + = , : -; percent-encode the rest)"
        )
    if ".." in uri.split("/"):
        raise ValueError(f"must not contain a '..' segment (got {short_repr(uri)})")
    if uri.startswith("pvc://") and len(uri[len("pvc://") :].split("/", 1)[0]) == 0:
        raise ValueError("pvc:// needs a claim name: pvc://claim/path")
    return uri


_DOTDOT_CEL = _cel("!self.matches('(^|/)[.][.](/|$)')", "must not contain a '..' segment")
_NO_CREDENTIALS_CEL = _cel(
    "!self.matches('^[a-z0-9]+://[^/]*@')",
    "must not hold credentials (user:password@); name a Secret instead",
)
_URI_CEL: list[JsonValue] = [
    _cel(
        " || ".join(f"self.startsWith('{s}')" for s in URI_SCHEMES),
        "must start with gs://, s3://, pvc:// or /",
    ),
    _DOTDOT_CEL,
    _NO_CREDENTIALS_CEL,
]


def _quantity(value: Any) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(
            f"must be a quantity: an integer or a string such as 500m or 1.5Gi "
            f"(got {short_repr(value)})"
        )
    if isinstance(value, int):
        if not 0 <= value <= INT64_MAX:
            raise ValueError(f"must be a quantity >= 0 (got {short_repr(value)})")
        return value
    if len(value) > MAX_QUANTITY_LENGTH or not re.fullmatch(QUANTITY_PATTERN, value):
        raise ValueError(
            f"not a Kubernetes quantity >= 0 (got {short_repr(value)}; "
            "expected e.g. 2, 500m, 1.5Gi)"
        )
    return value


class DType(StrEnum):
    FLOAT16 = "float16"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    INT8 = "int8"
    INT16 = "int16"
    INT32 = "int32"
    INT64 = "int64"
    UINT8 = "uint8"
    BOOL = "bool"
    STRING = "string"


class OutputKind(StrEnum):
    PROBABILITIES = "probabilities"
    LOGITS = "logits"
    CLASS_IDS = "classIds"
    REGRESSION = "regression"


class ModelRef(_Model):
    name: str = Field(
        description="Model name as TF Serving knows it (--model_name); a DNS label.",
        pattern=DNS_LABEL_PATTERN,
        min_length=1,
        max_length=63,
    )
    version: str = Field(
        description="Version to roll out: the numeric sub-folder of the model base path "
        "(TF Serving versions are integers).",
        pattern=r"^[0-9]+$",
        max_length=18,
    )
    uri: str = Field(
        description="Model base path: gs://bucket/path, s3://bucket/path, pvc://claim/path, "
        "or an absolute path inside the serving image.",
        min_length=1,
        max_length=MAX_URI_LENGTH,
        json_schema_extra={"pattern": URI_PATTERN, "x-kubernetes-validations": _URI_CEL},
    )

    @field_validator("uri")
    @classmethod
    def _uri_scheme(cls, uri: str) -> str:
        return _uri(uri)


class GPUSpec(_Model):
    count: Int = Field(
        default=1,
        ge=0,
        le=64,
        description="GPUs per serving pod; 0 runs on CPU nodes only.",
    )
    resource_name: str = Field(
        default="nvidia.com/gpu",
        min_length=1,
        description="Extended resource name that the device plugin advertises.",
    )


class Toleration(_Model):
    key: str | None = Field(default=None, description="Taint key the toleration applies to.")
    operator: Literal["Exists", "Equal"] | None = Field(
        default=None, description="Exists or Equal (default Equal)."
    )
    value: str | None = Field(default=None, description="Taint value for operator Equal.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect to match; empty matches all effects."
    )
    toleration_seconds: Int | None = Field(
        default=None, description="How long a NoExecute taint is tolerated."
    )


Quantity = Annotated[
    int | str,
    PlainValidator(_quantity, json_schema_input_type=int | str),
    Field(
        json_schema_extra={
            "x-kubernetes-int-or-string": True,
            "pattern": QUANTITY_PATTERN,
            "minimum": 0,
            "maxLength": MAX_QUANTITY_LENGTH,
        }
    ),
]


class ResourceRequirements(_Model):
    requests: dict[str, Quantity] = Field(
        default_factory=dict, description="Minimum resources per serving container."
    )
    limits: dict[str, Quantity] = Field(
        default_factory=dict,
        description="Maximum resources per serving container (the GPU limit is added from gpu).",
    )


class ServingSpec(_Model):
    image: str = Field(
        default=DEFAULT_SERVING_IMAGE,
        min_length=1,
        description="TF Serving image; use a -gpu tag when gpu.count > 0.",
    )
    replicas: Int = Field(default=1, ge=1, le=100, description="Serving pods of the stable track.")
    max_surge: Int = Field(
        default=1,
        ge=1,
        le=100,
        description="Serving pods (and GPUs) a rollout may run beyond replicas at any moment.",
    )
    gpu: GPUSpec = Field(default_factory=GPUSpec, description="GPU request per serving pod.")
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="Node labels the serving pods must match."
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        description="Extra tolerations; the nvidia.com/gpu NoSchedule toleration is added "
        "automatically when gpu.count > 0.",
    )
    affinity: dict[str, Any] | None = Field(
        default=None, description="Pod affinity rules, passed through unchanged."
    )
    runtime_class_name: str | None = Field(
        default=None,
        pattern=DNS_SUBDOMAIN_PATTERN,
        max_length=253,
        description="RuntimeClass for the serving pods (e.g. nvidia).",
    )
    resources: ResourceRequirements = Field(
        default_factory=ResourceRequirements, description="CPU/memory requests and limits."
    )
    credentials_secret: str | None = Field(
        default=None,
        pattern=DNS_SUBDOMAIN_PATTERN,
        max_length=253,
        description="Secret with the model store's credentials. For gs:// it must hold the "
        "service-account key file under gcsKeyFileKey; it is mounted read-only and "
        "GOOGLE_APPLICATION_CREDENTIALS points at it. For s3:// its keys (AWS_ACCESS_KEY_ID, "
        "AWS_SECRET_ACCESS_KEY, optional AWS_REGION / AWS_ENDPOINT_URL) become the environment "
        "of the init container that fetches the model.",
    )
    gcs_key_file_key: str = Field(
        default="key.json",
        min_length=1,
        max_length=253,
        pattern=CONFIG_MAP_KEY_PATTERN,
        description="Key of credentialsSecret that holds the GCS service-account JSON key.",
    )
    service_account_name: str | None = Field(
        default=None,
        pattern=DNS_SUBDOMAIN_PATTERN,
        max_length=253,
        description="ServiceAccount of the serving pods: Workload Identity for gs:// (no key "
        "file) or IRSA for s3://; the alternative to credentialsSecret.",
    )
    gate_protocol: Literal["grpc", "rest"] = Field(
        default="grpc",
        description="How the operator's gate talks to the serving pods: gRPC on port 8500 "
        "(default; float16 and uint16 tensors work) or REST on 8501.",
    )
    startup_timeout: Duration = Field(
        default="30m",
        description="How long a serving pod may take to load its model before liveness "
        "applies (the startupProbe's budget; TF Serving opens no port until loaded).",
    )
    s3_fetch_image: str = Field(
        default=DEFAULT_S3_FETCH_IMAGE,
        min_length=1,
        description="Pinned image of the init container that copies an s3:// model version "
        "into an emptyDir (TF Serving 2.7+ has no S3 filesystem); needs the aws CLI.",
    )


class TensorSpec(_Model):
    dtype: DType = Field(description="Element type the signature declares.")
    shape: list[Annotated[int, Strict(), Field(ge=-1)]] = Field(
        min_length=1,
        max_length=8,
        description="Dimensions; -1 is any size. The first dimension is the batch (-1).",
    )
    kind: OutputKind | None = Field(
        default=None,
        description="What an output means: probabilities (rows must sum to 1), logits, "
        "classIds or regression. Drives the smoke checks and how predictions are read.",
    )


class ContractSpec(_Model):
    signature: str = Field(
        default="serving_default", min_length=1, description="Signature to call."
    )
    inputs: dict[str, TensorSpec] = Field(
        min_length=1, description="Input tensors by name, as the signature declares them."
    )
    outputs: dict[str, TensorSpec] = Field(
        min_length=1, description="Output tensors by name, as the signature declares them."
    )


class ConfigMapKeyRef(_Model):
    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="ConfigMap name in the resource's namespace.",
    )
    key: str = Field(
        min_length=1,
        max_length=253,
        pattern=CONFIG_MAP_KEY_PATTERN,
        description="binaryData key holding the .npz file.",
    )


class GoldenSetSpec(_Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "has(self.uri) != has(self.configMapRef)",
                    "set exactly one of uri or configMapRef",
                )
            ]
        }
    )
    uri: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_URI_LENGTH,
        description="Location of the labelled .npz, read by the operator itself: "
        "s3://bucket/key or gs://bucket/key (credentials from credentialsSecret, else the "
        "operator's workload identity), or an absolute path inside the operator pod. "
        "pvc:// is refused: a claim in the model's namespace cannot be mounted into the "
        "operator's pod; copy the set to object storage or a ConfigMap (configMapRef).",
        json_schema_extra={
            "pattern": URI_PATTERN,
            "x-kubernetes-validations": [
                _cel(
                    " || ".join(f"self.startsWith('{s}')" for s in GOLDEN_URI_SCHEMES),
                    GOLDEN_URI_MESSAGE,
                ),
                _DOTDOT_CEL,
                _NO_CREDENTIALS_CEL,
            ],
        },
    )
    config_map_ref: ConfigMapKeyRef | None = Field(
        default=None, description="A ConfigMap key holding the .npz (small sets)."
    )
    credentials_secret: str | None = Field(
        default=None,
        pattern=DNS_SUBDOMAIN_PATTERN,
        max_length=253,
        description="Secret in the resource's namespace the operator reads to fetch uri: "
        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (optional AWS_SESSION_TOKEN) for s3://, "
        "service-account.json (a service-account key) for gs://. Unset: the operator's own "
        "credentials (workload identity, IRSA, instance role). The operator needs RBAC get "
        "on Secrets (chart: rbac.goldenSetSecrets=true).",
    )
    features: str | None = Field(
        default=None,
        description="Array holding the (single) input's features; default: the input's name.",
    )
    labels: str = Field(default="labels", min_length=1, description="Array of integer labels.")
    output: str | None = Field(
        default=None,
        description="Contract output the predicted class is read from; default: the first.",
    )
    max_samples: Int | None = Field(
        default=None, ge=1, description="Use at most this many samples (deterministic prefix)."
    )
    parity_tolerance: Float = Field(
        default=1e-3,
        ge=0,
        description="Largest allowed |served - expected_<output>| for training/serving parity.",
    )
    unlabeled: str | None = Field(
        default=None,
        min_length=1,
        description="Prefix of a second set of arrays in the same .npz: recent production "
        "inputs without labels, one array <prefix><input name> per contract input. Both "
        "models score them; their prediction agreement gets an exact lower confidence bound "
        "(see analysis.minAgreement).",
    )

    @field_validator("uri")
    @classmethod
    def _golden_uri_scheme(cls, uri: str | None) -> str | None:
        if uri is not None and not uri.startswith(GOLDEN_URI_SCHEMES):
            raise ValueError(GOLDEN_URI_MESSAGE)
        return None if uri is None else _uri(uri)  # characters, '..', no credentials

    @model_validator(mode="after")
    def _one_source(self) -> GoldenSetSpec:
        if (self.uri is None) == (self.config_map_ref is None):
            raise ValueError("set exactly one of uri or configMapRef")
        return self


class SmokeSpec(_Model):
    batch_size: Int = Field(default=8, ge=2, le=1024, description="The N of the batch-N check.")
    batch_tolerance: Float = Field(
        default=1e-4,
        ge=0,
        description="Largest allowed difference between a sample scored alone and in a batch.",
    )
    probability_tolerance: Float = Field(
        default=1e-3, ge=0, description="Largest allowed |sum(probabilities) - 1| per row."
    )
    timeout: Duration = Field(default="60s", description="Deadline for all smoke calls.")


class MetricProvider(StrEnum):
    PROMETHEUS = "prometheus"
    SCRAPE = "scrape"


class BuiltinMetric(StrEnum):
    ERROR_RATE = "error-rate"
    LATENCY_P99 = "latency-p99"


class MetricCheck(_Model):
    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "has(self.query) != has(self.builtin)",
                    "set exactly one of query or builtin",
                ),
                _cel(
                    "has(self.min) || has(self.max) || has(self.maxIncreaseOverStable)",
                    "set at least one of min, max or maxIncreaseOverStable",
                ),
                _cel(
                    "!has(self.query) || self.provider == 'prometheus'",
                    "a query needs provider prometheus",
                ),
            ]
        }
    )
    name: str = Field(pattern=DNS_LABEL_PATTERN, max_length=63, description="Check name.")
    provider: MetricProvider = Field(
        default=MetricProvider.PROMETHEUS, description="Where the value comes from."
    )
    builtin: BuiltinMetric | None = Field(
        default=None,
        description="A TF Serving metric that needs no query: error-rate (ratio) or "
        "latency-p99 (milliseconds).",
    )
    query: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_QUERY_LENGTH,
        description="PromQL returning one value; templated with {{model}}, {{namespace}}, "
        "{{track}} and {{interval}}.",
        json_schema_extra={"pattern": _QUERY_PATTERN},
    )
    min: Float | None = Field(default=None, description="Fail when the value is below.")
    max: Float | None = Field(default=None, description="Fail when the value is above.")
    max_increase_over_stable: Float | None = Field(
        default=None,
        ge=0,
        description="Fail when canary - stable exceeds this (same query on both tracks).",
    )

    @field_validator("query")
    @classmethod
    def _placeholders(cls, query: str | None) -> str | None:
        if query is None:
            return None
        unknown = sorted(set(PLACEHOLDER_RE.findall(query)) - set(QUERY_PLACEHOLDERS))
        if unknown or not re.fullmatch(_QUERY_PATTERN, query):
            got = ", ".join("{{" + u + "}}" for u in unknown) or "a stray '{{'"
            allowed = ", ".join("{{" + p + "}}" for p in QUERY_PLACEHOLDERS)
            raise ValueError(f"unknown placeholder {short_repr(got)} (allowed: {allowed})")
        return query

    @model_validator(mode="after")
    def _shape(self) -> MetricCheck:
        if (self.query is None) == (self.builtin is None):
            raise ValueError("set exactly one of query or builtin")
        if self.min is None and self.max is None and self.max_increase_over_stable is None:
            raise ValueError("set at least one of min, max or maxIncreaseOverStable")
        if self.query is not None and self.provider != MetricProvider.PROMETHEUS:
            raise ValueError("a query needs provider prometheus")
        return self


def _default_metrics() -> list[MetricCheck]:
    return [
        MetricCheck(
            name="error-rate",
            provider=MetricProvider.SCRAPE,
            builtin=BuiltinMetric.ERROR_RATE,
            max=0.01,
        ),
        MetricCheck(
            name="latency-p99",
            provider=MetricProvider.SCRAPE,
            builtin=BuiltinMetric.LATENCY_P99,
            max=1000.0,
        ),
    ]


class WebhookType(StrEnum):
    """When a webhook is called (Flagger's webhook types)."""

    PRE_ROLLOUT = "pre-rollout"
    CONFIRM_PROMOTION = "confirm-promotion"
    ROLLBACK = "rollback"
    POST_ROLLOUT = "post-rollout"
    EVENT = "event"


class WebhookFormat(StrEnum):
    """How a webhook's payload is written."""

    JSON = "json"
    CLOUDEVENTS = "cloudevents"
    SLACK = "slack"


MAX_WEBHOOK_URL_LENGTH = 2048
MAX_WEBHOOK_TIMEOUT_S = 300.0
WEBHOOK_URL_PATTERN = r"^https?://[^\s/?#]+([/?#][^\s]*)?$"


def _webhook_url(url: str) -> str:
    if not re.fullmatch(WEBHOOK_URL_PATTERN, url):
        raise ValueError(
            f"must be an http:// or https:// URL with a host, such as "
            f"https://hooks.example.com/approve (got {short_repr(url)})"
        )
    return url


def _webhook_timeout(text: str) -> str:
    if parse_duration_s(text) > MAX_WEBHOOK_TIMEOUT_S:
        raise ValueError(f"at most 5m (got {text!r}); a slow hook holds the rollout's driver")
    if parse_duration_s(text) <= 0:
        raise ValueError(f"must be more than 0s (got {text!r})")
    return text


class Webhook(_Model):
    name: str = Field(
        pattern=DNS_LABEL_PATTERN,
        max_length=63,
        description="Webhook name, unique in analysis.webhooks (it names the hook in status, "
        "Events and the payload).",
    )
    type: WebhookType = Field(
        description="pre-rollout: before the canary gets any traffic, a non-2xx answer is a "
        "failed check; confirm-promotion: after the last step, promotion waits until it "
        "answers 2xx (a manual gate); rollback: called at every step's analysis, a 2xx rolls "
        "back; post-rollout: once after Promoted or RolledBack (a failure is only reported); "
        "event: every phase change and failed check is posted (best effort)."
    )
    url: str = Field(
        min_length=1,
        max_length=MAX_WEBHOOK_URL_LENGTH,
        description="http:// or https:// URL the payload is POSTed to. It never appears in "
        "status, Events or logs (only the hook's name and host do).",
        json_schema_extra={
            "pattern": WEBHOOK_URL_PATTERN,
            "x-kubernetes-validations": [
                _cel(
                    "self.startsWith('http://') || self.startsWith('https://')",
                    "must be an http:// or https:// URL",
                )
            ],
        },
    )
    timeout: Duration = Field(
        default="10s", description="Deadline of one call (at most 5m); a call past it fails."
    )
    retries: Int = Field(
        default=2,
        ge=0,
        le=10,
        description="Extra attempts after a failed call (connection error, timeout, 5xx or "
        "429), with a short backoff.",
    )
    format: WebhookFormat = Field(
        default=WebhookFormat.JSON,
        description="json: the payload as a JSON object; cloudevents: a CloudEvents 1.0 event "
        "in structured mode (application/cloudevents+json) with the payload as data; slack: "
        '{"text": ...} for a Slack (or Mattermost, Teams workflow) incoming webhook.',
    )
    metadata: dict[str, str] = Field(
        default_factory=dict,
        max_length=32,
        description="Extra string fields sent in the payload's metadata, as in Flagger.",
        json_schema_extra={"maxProperties": 32},
    )

    @field_validator("url")
    @classmethod
    def _url_scheme(cls, url: str) -> str:
        return _webhook_url(url)

    @field_validator("timeout")
    @classmethod
    def _timeout_bound(cls, timeout: str) -> str:
        return _webhook_timeout(timeout)


Step = Annotated[int, Strict(), Field(ge=1, le=100)]


class AnalysisSpec(_Model):
    max_accuracy_drop: Float = Field(
        default=0.02,
        ge=0,
        le=MAX_ACCURACY_DROP_LIMIT,
        description="Largest accepted accuracy loss vs stable (non-inferiority margin), in "
        "[0, 0.3]. The candidate is promoted only when the one-sided upper confidence bound of "
        "stable accuracy - candidate accuracy is at most this. Above 0.3 the exact "
        "false-promotion guarantee is not proven (and such a margin is no gate).",
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "self >= 0.0 && self <= 0.3",
                    "must be in [0, 0.3]: the exact false-promotion guarantee holds there",
                )
            ]
        },
    )
    confidence: Float = Field(
        default=0.95,
        ge=0.5,
        le=MAX_CONFIDENCE,
        description="One-sided confidence of the upper bound on the accuracy drop, in "
        "[0.5, 0.999]: 0.95 means at most 5% of candidates truly worse by maxAccuracyDrop are "
        "promoted (exactly, not asymptotically; see tensorgate plan for the samples it needs).",
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "self >= 0.5 && self <= 0.999",
                    "must be in [0.5, 0.999]: it is one-sided, 0.95 = 5% false promotions",
                )
            ]
        },
    )
    min_accuracy: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Optional absolute floor: the candidate's golden-set accuracy must be at "
        "least this, whatever the stable model scores.",
    )
    slices: str | None = Field(
        default=None,
        min_length=1,
        description="Golden-set array of slice ids (class, country, device...): every slice "
        "with minSliceSupport samples is tested for a drop above maxSliceAccuracyDrop, with "
        "Holm's correction across slices (an equal candidate is flagged at most "
        "1 - confidence of the time).",
    )
    max_slice_accuracy_drop: float | None = Field(
        default=None,
        ge=0,
        le=MAX_ACCURACY_DROP_LIMIT,
        description="Largest accepted accuracy loss within a slice; default: maxAccuracyDrop.",
    )
    min_slice_support: int = Field(
        default=30, ge=1, description="Slices with fewer golden samples are reported, not tested."
    )
    decide_on_slices: bool = Field(
        default=False,
        description="Roll back when a slice test flags a slice; false: report it as a warning.",
    )
    min_agreement: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Roll back unless the one-sided lower confidence bound (exact, at "
        "confidence) of the two models' prediction agreement on goldenSet.unlabeled is at "
        "least this.",
    )
    steps: list[Step] = Field(
        default_factory=lambda: [10, 25, 50, 100],
        min_length=1,
        max_length=20,
        description="Canary traffic weights in percent, strictly increasing, ending at 100.",
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel("self[self.size() - 1] == 100", "must end at 100"),
                _cel(
                    "self.isSorted() && self.all(x, self.indexOf(x) == self.lastIndexOf(x))",
                    "must be strictly increasing",
                ),
            ]
        },
    )
    interval: Duration = Field(
        default="60s", description="Time at each step before its metric checks are judged."
    )
    failure_limit: Int = Field(
        default=1, ge=1, le=100, description="Failed checks that trigger a rollback."
    )
    readiness_timeout: Duration = Field(
        default="10m", description="Deadline for the canary pods to become Ready."
    )
    progress_deadline: Duration = Field(
        default="10m",
        description="Deadline of each of the phases SmokeTesting, Evaluating and Promoting (and "
        "of a step's analysis past its interval); crossing it rolls back, or pauses when "
        "rollback.automatic is false.",
    )
    max_edge_errors: Int = Field(
        default=5,
        ge=1,
        le=1000,
        description="Consecutive checks that cannot run (Prometheus or a serving pod "
        "unreachable) before the rollout is rolled back; a check that runs resets the count.",
    )
    metrics: list[MetricCheck] = Field(
        default_factory=_default_metrics,
        max_length=32,
        description="Checks judged at every step; default: error-rate <= 1% and "
        "latency-p99 <= 1000ms from the TF Serving metrics.",
    )
    webhooks: list[Webhook] = Field(
        default_factory=list,
        max_length=32,
        description="HTTP hooks called during the rollout (Flagger's webhook types): "
        "pre-rollout, confirm-promotion, rollback, post-rollout and event.",
        json_schema_extra={
            "x-kubernetes-validations": [
                _cel(
                    "self.all(x, self.exists_one(y, y.name == x.name))",
                    "webhook names must be unique",
                )
            ]
        },
    )

    @field_validator("steps")
    @classmethod
    def _steps(cls, steps: list[int]) -> list[int]:
        if steps[-1] != 100:
            raise ValueError(f"must end at 100 (got {steps[-1]})")
        if any(b <= a for a, b in pairwise(steps)):
            raise ValueError(f"must be strictly increasing (got {steps})")
        return steps

    @field_validator("webhooks")
    @classmethod
    def _unique_webhooks(cls, hooks: list[Webhook]) -> list[Webhook]:
        names = [h.name for h in hooks]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(
                f"webhook names must be unique (got {', '.join(twice)} more than once); "
                "rename one of them"
            )
        return hooks

    def hooks_of(self, kind: WebhookType) -> list[Webhook]:
        """The webhooks of one type, in spec order."""
        return [h for h in self.webhooks if h.type == kind]


class ParentRef(_Model):
    name: str = Field(min_length=1, description="Gateway name.")
    namespace: str | None = Field(default=None, description="Gateway namespace.")
    section_name: str | None = Field(default=None, description="Listener name.")


class TrafficRouterKind(StrEnum):
    REPLICAS = "replicas"
    GATEWAY_API = "gateway-api"


class TrafficSpec(_Model):
    router: TrafficRouterKind = Field(
        default=TrafficRouterKind.REPLICAS,
        description="replicas: one Service selects both tracks and weights follow replica "
        "counts; gateway-api: an HTTPRoute with weighted backendRefs.",
    )
    parent_refs: list[ParentRef] = Field(
        default_factory=list, description="Gateways the HTTPRoute attaches to (gateway-api)."
    )
    hostnames: list[str] = Field(default_factory=list, description="HTTPRoute hostnames.")


class RollbackSpec(_Model):
    automatic: Bool = Field(
        default=True,
        description="Roll back as soon as a check fails; false pauses for a human instead.",
    )


class ModelDeploymentSpec(_Model):
    model: ModelRef = Field(description="The model and version to serve.")
    serving: ServingSpec = Field(
        default_factory=ServingSpec, description="How TF Serving runs (image, replicas, GPUs)."
    )
    contract: ContractSpec = Field(description="The signature smoke inference asserts.")
    golden_set: GoldenSetSpec | None = Field(
        default=None,
        description="Labelled data for the canary accuracy comparison; without it the "
        "comparison is skipped and only smoke and metric checks gate a rollout.",
    )
    smoke: SmokeSpec = Field(default_factory=SmokeSpec, description="Smoke inference settings.")
    analysis: AnalysisSpec = Field(
        default_factory=AnalysisSpec, description="Accuracy gate and progressive analysis."
    )
    traffic: TrafficSpec = Field(default_factory=TrafficSpec, description="Traffic routing.")
    rollback: RollbackSpec = Field(
        default_factory=RollbackSpec, description="What happens when a check fails."
    )
    paused: Bool = Field(default=False, description="Hold the rollout at its current step.")

    @model_validator(mode="after")
    def _cross_fields(self) -> ModelDeploymentSpec:
        out = self.golden_set.output if self.golden_set else None
        if out is not None and out not in self.contract.outputs:
            raise ValueError(
                f"goldenSet.output {out!r} is not a contract output "
                f"(expected one of {sorted(self.contract.outputs)})"
            )
        if self.traffic.router == TrafficRouterKind.GATEWAY_API and not self.traffic.parent_refs:
            raise ValueError("traffic.parentRefs: the gateway-api router needs at least one")
        return self

    @property
    def prediction_output(self) -> str:
        """The contract output that predictions (classes) are read from."""
        if self.golden_set and self.golden_set.output:
            return self.golden_set.output
        return next(iter(self.contract.outputs))


# --- parsing with readable errors ------------------------------------------------------------

_EXPECTED = {
    "missing": "a value",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a mapping",
    "list_type": "a list",
    "model_type": "a mapping",
    "extra_forbidden": "no such field",
    "finite_number": "a finite number",
}


_WHAT = {
    "greater_than_equal": "too small",
    "greater_than": "too small",
    "less_than_equal": "too large",
    "less_than": "too large",
    "enum": "not an allowed value",
    "literal_error": "not an allowed value",
    "string_pattern_mismatch": "bad format",
    "too_short": "too few items",
    "string_too_short": "too short",
    "too_long": "too many items",
    "string_too_long": "too long",
}


def _path(loc: tuple[int | str, ...], root: str) -> str:
    parts = [root]
    for item in loc:
        if isinstance(item, int):
            parts[-1] += f"[{item}]"
        elif item in {"function-after", "function-before"} or "[" in str(item):
            continue
        elif not re.fullmatch(r"[A-Za-z0-9_./-]{1,63}", str(item)):
            parts[-1] += f"[{short_repr(item)}]"  # a key with spaces, newlines, 100 KB...
        else:
            parts.append(str(item))
    return ".".join(parts)


_PATTERN_NAMES = {
    DNS_SUBDOMAIN_PATTERN: "a DNS subdomain such as 'gcs-key' (lower-case letters, digits, "
    "'-' and '.')",
    DNS_LABEL_PATTERN: "a DNS label such as 'mnist' (lower-case letters, digits and '-')",
    DURATION_PATTERN: "a duration such as 30s, 5m or 1h30m",
    CONFIG_MAP_KEY_PATTERN: "a ConfigMap key such as 'golden.npz' (letters, digits, '-', '_', '.')",
}


def _expected(err: Mapping[str, Any]) -> str:
    ctx = err.get("ctx") or {}
    kind = err["type"]
    if kind in _EXPECTED:
        return _EXPECTED[kind]
    if kind == "greater_than_equal":
        return f">= {ctx.get('ge')}"
    if kind == "greater_than":
        return f"> {ctx.get('gt')}"
    if kind == "less_than_equal":
        return f"<= {ctx.get('le')}"
    if kind == "less_than":
        return f"< {ctx.get('lt')}"
    if kind == "enum":
        return f"one of {ctx.get('expected')}"
    if kind == "literal_error":
        return f"one of {ctx.get('expected')}"
    if kind == "string_pattern_mismatch" and ctx.get("pattern") in _PATTERN_NAMES:
        return _PATTERN_NAMES[str(ctx.get("pattern"))]
    if kind == "string_too_long":
        return f"at most {ctx.get('max_length')} characters"
    if kind == "string_pattern_mismatch":
        return f"a string matching {ctx.get('pattern')}"
    if kind in {"too_short", "string_too_short"}:
        return f"at least {ctx.get('min_length')} item(s)"
    if kind in {"too_long", "string_too_long"}:
        return f"at most {ctx.get('max_length')} item(s)"
    return "a valid value"


def _format_error(err: Mapping[str, Any], root: str) -> str:
    path = _path(tuple(err["loc"]), root)
    if err["type"] == "value_error":
        msg = str(err.get("ctx", {}).get("error", err["msg"]))
        return f"{path}: {msg}"
    if err["type"] == "missing":
        return f"{path}: required field is missing (expected {_expected(err)})"
    if err["type"] == "extra_forbidden":
        return (
            f"{path}: unknown field (got {short_repr(err['input'])}; "
            "remove it or check the spelling)"
        )
    got = err.get("input")
    what = _WHAT.get(err["type"], str(err["msg"]).lower())
    hint = ""
    if isinstance(got, bool) and err["type"] in {"int_type", "float_type", "string_type"}:
        hint = "; YAML reads yes/no/on/off/true/false as booleans: quote it or use a number"
    return f"{path}: {what} (got {short_repr(got)}; expected {_expected(err)}{hint})"


def format_validation_error(exc: ValidationError, root: str = "spec") -> list[str]:
    """One line per problem: ``spec.field.path: what is wrong (got X; expected Y)``."""
    lines = [_format_error(e, root) for e in exc.errors(include_url=False)]
    return list(dict.fromkeys(lines))  # a union's branches can report the same line twice


def parse_spec(spec: Mapping[str, Any] | None) -> ModelDeploymentSpec:
    """Parse and default a resource's ``spec``; raise SpecError listing every problem."""
    if not isinstance(spec, Mapping):
        raise SpecError([f"spec: must be a mapping (got {type(spec).__name__})"])
    try:
        return ModelDeploymentSpec.model_validate(dict(spec))
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc)) from exc


TOP_LEVEL_FIELDS = ("apiVersion", "kind", "metadata", "spec", "status")


def metadata_problems(meta: Any) -> list[str]:
    """What is wrong with a manifest's ``metadata`` (name, namespace), one line each.

    The name becomes the Service ``<name>`` and the Deployments and Services
    ``<name>-stable`` / ``<name>-canary``: a DNS-1035 label of at most 63 characters each.
    """
    if not isinstance(meta, Mapping):
        return [f"metadata: must be a mapping with a name (got {short_repr(meta)})"]
    problems: list[str] = []
    name = meta.get("name")
    if not isinstance(name, str) or not re.fullmatch(DNS_1035_LABEL_PATTERN, name):
        problems.append(
            f"metadata.name: got {short_repr(name)}; expected a DNS label that starts with a "
            "letter (lower-case letters, digits and '-'), such as 'mnist'"
        )
    elif len(name) > MAX_NAME_LENGTH:
        problems.append(
            f"metadata.name: {len(name)} characters; at most {MAX_NAME_LENGTH} (the operator "
            f"names child objects <name>{LONGEST_CHILD_SUFFIX}, which must fit 63)"
        )
    namespace = meta.get("namespace")
    if namespace is not None and (
        not isinstance(namespace, str)
        or len(namespace) > 63
        or not re.fullmatch(DNS_LABEL_PATTERN, namespace)
    ):
        problems.append(
            f"metadata.namespace: got {short_repr(namespace)}; expected a DNS label such as 'ml'"
        )
    return problems


def parse_resource(body: Mapping[str, Any]) -> ModelDeploymentSpec:
    """Parse a whole ModelDeployment manifest (apiVersion, kind, metadata, spec)."""
    if not isinstance(body, Mapping):
        raise SpecError([f"a manifest must be a mapping (got {type(body).__name__})"])
    problems: list[str] = []
    if body.get("apiVersion") != API_VERSION:
        problems.append(
            f"apiVersion: got {short_repr(body.get('apiVersion'))}; expected {API_VERSION!r}"
        )
    if body.get("kind") != KIND:
        problems.append(f"kind: got {short_repr(body.get('kind'))}; expected {KIND!r}")
    problems.extend(metadata_problems(body.get("metadata")))
    for key in body:
        if key not in TOP_LEVEL_FIELDS:
            problems.append(
                f"top-level field {short_repr(key)}: unknown (expected only "
                f"{', '.join(TOP_LEVEL_FIELDS)}; check the indentation)"
            )
    try:
        spec = parse_spec(body.get("spec"))
    except SpecError as exc:
        problems.extend(exc.errors)
    if problems:
        raise SpecError(problems)
    return spec
