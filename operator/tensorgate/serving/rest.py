"""``ModelClient`` over TF Serving's REST API (httpx; no TensorFlow import).

URLs: ``GET /v1/models/<name>[/versions/<v>]`` (status), ``GET .../metadata`` and
``POST ...:predict``. Predict bodies use the columnar ``inputs`` format by default, or the row
``instances`` format (``request_format="instances"``); both answers (``outputs`` and
``predictions``) are decoded.

As TF Serving's JSON (``util/json_tensor.cc``) has it: string inputs of any rank are sent as
text, or ``{"b64": ...}`` where not UTF-8; ``{"b64": ...}`` answers (DT_STRING outputs named
``*_bytes``) are decoded to bytes. JSON encoding and decoding run in a worker thread. Status
codes follow ``model_servers/http_server.cc``: 429 (RESOURCE_EXHAUSTED), 499 (CANCELLED), 502,
503 (UNAVAILABLE) and 504 (DEADLINE_EXCEEDED, also ``--rest_api_timeout_in_ms``) are transient
and retried; 400, 401, 403, 404, 409 and 501 are refusals and are not.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Mapping
from typing import Any, Literal

import httpx
import numpy as np

from tensorgate.errors import ServingError
from tensorgate.serving.base import (
    TF_DTYPES,
    UNREADABLE,
    ClientOptions,
    MalformedAnswerError,
    ModelMetadata,
    ModelStatus,
    ModelVersionStatus,
    ServingRejectedError,
    Signature,
    TensorInfo,
    TransientServingError,
    VersionState,
    numpy_dtype,
    with_retries,
)

__all__ = ["RestModelClient", "parse_metadata"]

RequestFormat = Literal["inputs", "instances"]

TRANSIENT_HTTP = frozenset({408, 429, 499, 502, 503, 504})
"""HTTP statuses worth another attempt: overload, cancelled, unavailable, timed out."""
# http_server.cc ToHTTPStatusCode, read backwards (409 is ABORTED or ALREADY_EXISTS).
HTTP_CODES: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def _tensor_info(raw: Mapping[str, Any]) -> TensorInfo:
    dtype = TF_DTYPES.get(str(raw.get("dtype", "")), str(raw.get("dtype", "unknown")).lower())
    shape_raw = raw.get("tensor_shape") or {}
    if shape_raw.get("unknown_rank"):
        return TensorInfo(dtype=dtype, shape=None)
    dims = tuple(int(d.get("size", -1)) for d in shape_raw.get("dim", []))
    return TensorInfo(dtype=dtype, shape=dims)


def parse_metadata(body: Mapping[str, Any], model_name: str) -> ModelMetadata:
    """Decode TF Serving's ``/metadata`` JSON answer."""
    try:
        spec = body.get("model_spec") or {}
        version = spec.get("version")
        defs = body["metadata"]["signature_def"]["signature_def"]
        signatures = {
            name: Signature(
                name=name,
                inputs={k: _tensor_info(v) for k, v in (sig.get("inputs") or {}).items()},
                outputs={k: _tensor_info(v) for k, v in (sig.get("outputs") or {}).items()},
            )
            for name, sig in defs.items()
        }
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ServingError(f"model {model_name}: unreadable metadata answer ({exc})") from exc
    return ModelMetadata(
        model_name=str(spec.get("name", model_name)),
        version=int(version) if version not in (None, "") else None,
        signatures=signatures,
    )


def _json_string(x: Any) -> Any:
    if isinstance(x, bytes):
        try:
            return x.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(x).decode()}
    return x if isinstance(x, str) else str(x)


def _encode(arr: np.ndarray) -> Any:
    """A tensor as TF Serving's JSON: numbers as nested lists; strings of any rank as text,
    or ``{"b64": ...}`` where the bytes are not UTF-8."""
    if arr.dtype.kind in "SOU":
        leaves = np.empty(arr.size, dtype=object)
        leaves[:] = [_json_string(x) for x in arr.ravel().tolist()]
        return leaves.reshape(arr.shape).tolist()
    return arr.tolist()


def _unb64(value: Any) -> Any:
    if isinstance(value, dict) and "b64" in value:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_unb64(v) for v in value]
    return value


def _has_b64(value: Any) -> bool:
    while isinstance(value, list) and value:
        value = value[0]
    return isinstance(value, dict) and "b64" in value


def _decode(value: Any, info: TensorInfo | None) -> np.ndarray:
    if _has_b64(value):  # DT_STRING outputs named *_bytes (util/json_tensor.cc)
        decoded = _unb64(value)
        out = np.empty(np.shape(np.asarray(decoded, dtype=object)), dtype=object)
        out[...] = decoded
        return out
    if info is not None and info.dtype != "unknown":
        try:
            return np.asarray(value, dtype=numpy_dtype(info.dtype))
        except (TypeError, ValueError):
            pass
    return np.asarray(value)


def _dumps(body: Any) -> bytes:
    return json.dumps(body).encode()


class RestModelClient:
    """TF Serving REST client for one model, optional pinned version, one signature."""

    def __init__(
        self,
        base_url: str,
        model_name: str,
        *,
        version: int | None = None,
        signature_name: str = "serving_default",
        options: ClientOptions | None = None,
        request_format: RequestFormat = "inputs",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._options = options or ClientOptions()
        self.model_name = model_name
        self.version = version
        self.signature_name = signature_name
        self.request_format: RequestFormat = request_format
        self.base_url = base_url.rstrip("/")
        self._path = f"/v1/models/{model_name}" + (f"/versions/{version}" if version else "")
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=self._options.timeout_s,
            transport=transport,
            limits=httpx.Limits(max_connections=self._options.concurrency * 2),
        )
        self._limit = asyncio.Semaphore(self._options.concurrency)
        # Bodies are built only for requests about to be sent: at most ``concurrency`` of a
        # big input's batches exist as JSON-ready lists at once (``predict_batched`` starts
        # them all; a golden set as Python lists is ~30 bytes a number).
        self._bodies = asyncio.Semaphore(self._options.concurrency)
        self._signature: Signature | None = None

    def __repr__(self) -> str:
        return f"RestModelClient({self.base_url}{self._path})"

    @property
    def options(self) -> ClientOptions:
        return self._options

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        what = f"REST {method} {self.base_url}{path}"

        async def attempt() -> Any:
            async with self._limit:
                content = None if body is None else await asyncio.to_thread(_dumps, body)
                try:
                    # One deadline for the whole exchange: httpx's timeout is per read, so a
                    # server trickling a byte every few seconds would never reach it.
                    async with asyncio.timeout(self._options.timeout_s):
                        status, raw = await self._exchange(method, path, content)
                except (TimeoutError, httpx.TimeoutException) as exc:
                    raise TransientServingError(
                        f"timed out after {self._options.timeout_s}s"
                    ) from exc
                except httpx.TransportError as exc:
                    raise TransientServingError(f"{type(exc).__name__}: {exc}") from exc
            text = raw[:500].decode("utf-8", "replace")
            if status in TRANSIENT_HTTP:
                raise TransientServingError(f"HTTP {status}: {text[:200]}")
            try:
                payload = await asyncio.to_thread(json.loads, raw)
            except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
                if 200 <= status < 300:
                    raise ServingError(
                        f"{what}: answer is not JSON ({type(exc).__name__})"
                    ) from exc
                payload = {"error": text}
            if not 200 <= status < 300:
                message = payload.get("error") if isinstance(payload, dict) else None
                code = HTTP_CODES.get(status, "UNKNOWN")
                raise ServingRejectedError(f"{what}: HTTP {status}: {message or text}", code)
            return payload

        return await with_retries(attempt, options=self._options, what=what)

    async def _exchange(self, method: str, path: str, content: bytes | None) -> tuple[int, bytes]:
        """Send one request; the answer's status and body, refused past ``max_message_bytes``
        (as gRPC refuses a message over its limit) so a flooding server cannot fill memory."""
        headers = {"content-type": "application/json"} if content is not None else None
        limit = self._options.max_message_bytes
        async with self._http.stream(method, path, content=content, headers=headers) as resp:
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise ServingError(
                        f"REST {method} {self.base_url}{path}: the answer is over "
                        f"{limit} bytes (max_message_bytes)"
                    )
                chunks.append(chunk)
            return resp.status_code, b"".join(chunks)

    async def metadata(self) -> ModelMetadata:
        body = await self._call("GET", f"{self._path}/metadata")
        meta = parse_metadata(body, self.model_name)
        self._signature = meta.signatures.get(self.signature_name)
        return meta

    async def _served_signature(self) -> Signature | None:
        if self._signature is None:
            try:
                await self.metadata()
            except ServingRejectedError:
                return None
        return self._signature

    async def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        signature = await self._served_signature()
        async with self._bodies:
            body = await asyncio.to_thread(self._body, inputs)
            answer = await self._call("POST", f"{self._path}:predict", body)
            del body
        outputs_info = dict(signature.outputs) if signature else {}
        try:
            return await asyncio.to_thread(self._decode_answer, answer, outputs_info)
        except UNREADABLE as exc:
            raise MalformedAnswerError(f"model {self.model_name}", exc) from exc

    def _body(self, inputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
        if self.request_format == "instances":
            names = list(inputs)
            batch = len(next(iter(inputs.values())))
            if len(names) == 1:
                instances: list[Any] = _encode(np.asarray(inputs[names[0]]))
            else:
                cols = {n: _encode(np.asarray(inputs[n])) for n in names}
                instances = [{n: cols[n][i] for n in names} for i in range(batch)]
            body: dict[str, Any] = {"signature_name": self.signature_name, "instances": instances}
        else:
            body = {
                "signature_name": self.signature_name,
                "inputs": {n: _encode(np.asarray(a)) for n, a in inputs.items()},
            }
        return body

    def _decode_answer(
        self, answer: Any, outputs_info: Mapping[str, TensorInfo]
    ) -> dict[str, np.ndarray]:
        single = next(iter(outputs_info)) if len(outputs_info) == 1 else None
        if not isinstance(answer, dict):
            raise ServingError(f"model {self.model_name}: predict answer is not an object")
        if "outputs" in answer:
            out = answer["outputs"]
            if isinstance(out, dict):
                return {k: _decode(v, outputs_info.get(k)) for k, v in out.items()}
            name = single or "outputs"
            return {name: _decode(out, outputs_info.get(name))}
        if "predictions" in answer:
            rows = answer["predictions"]
            if rows and isinstance(rows[0], dict):
                keys = list(rows[0])
                return {k: _decode([r[k] for r in rows], outputs_info.get(k)) for k in keys}
            name = single or "predictions"
            return {name: _decode(rows, outputs_info.get(name))}
        raise ServingError(f"model {self.model_name}: predict answer has no outputs/predictions")

    async def status(self) -> ModelStatus:
        body = await self._call("GET", self._path)
        try:
            versions = tuple(
                ModelVersionStatus(
                    version=int(v["version"]),
                    state=VersionState(v.get("state", "UNKNOWN")),
                    error_code=str((v.get("status") or {}).get("error_code", "OK")),
                    error_message=str((v.get("status") or {}).get("error_message", "")),
                )
                for v in body["model_version_status"]
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ServingError(f"model {self.model_name}: unreadable status answer") from exc
        return ModelStatus(versions=versions)

    async def aclose(self) -> None:
        await self._http.aclose()
