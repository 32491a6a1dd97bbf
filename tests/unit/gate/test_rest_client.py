"""The REST client against recorded TF Serving answers (httpx.MockTransport)."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import numpy as np
import pytest

from tensorgate.serving.base import (
    ClientOptions,
    ServingRejectedError,
    TransientServingError,
    predict_batched,
)
from tensorgate.serving.rest import RestModelClient

METADATA = {
    "model_spec": {"name": "m", "signature_name": "", "version": "3"},
    "metadata": {
        "signature_def": {
            "signature_def": {
                "serving_default": {
                    "inputs": {"x": {"dtype": "DT_FLOAT", "tensor_shape": {"dim": [{"size": "-1"}, {"size": "2"}]}, "name": "x:0"}},
                    "outputs": {"y": {"dtype": "DT_FLOAT", "tensor_shape": {"dim": [{"size": "-1"}, {"size": "1"}]}, "name": "y:0"}},
                    "method_name": "tensorflow/serving/predict",
                }
            }
        }
    },
}  # fmt: skip

Handler = Callable[[httpx.Request], httpx.Response]


def _client(handler: Handler, **kwargs: object) -> RestModelClient:
    options = ClientOptions(retries=2, backoff_s=0.0, batch_size=2)
    return RestModelClient(
        "http://127.0.0.1:8501", "m", transport=httpx.MockTransport(handler), options=options,
        **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


def _server(log: list[httpx.Request], fail_first: int = 0, status: int = 503) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        log.append(request)
        if request.url.path.endswith("/metadata"):
            return httpx.Response(200, json=METADATA)
        if len([r for r in log if r.method == "POST"]) <= fail_first:
            return httpx.Response(status, json={"error": "overloaded"})
        body = json.loads(request.content)
        if "instances" in body:
            x = np.asarray(body["instances"])
            return httpx.Response(200, json={"predictions": x.sum(axis=1, keepdims=True).tolist()})
        x = np.asarray(body["inputs"]["x"])
        return httpx.Response(200, json={"outputs": x.sum(axis=1, keepdims=True).tolist()})

    return handle


@pytest.mark.parametrize("request_format", ["inputs", "instances"])
async def test_rest_predict_both_formats_decode_to_named_arrays(request_format: str) -> None:
    log: list[httpx.Request] = []
    client = _client(_server(log), request_format=request_format)
    out = await client.predict({"x": np.array([[1, 2], [3, 4]], np.float32)})
    assert out["y"].tolist() == [[3.0], [7.0]]
    assert out["y"].dtype == np.float32
    assert str(log[-1].url) == "http://127.0.0.1:8501/v1/models/m:predict"
    await client.aclose()


async def test_rest_retries_transient_errors_then_succeeds() -> None:
    log: list[httpx.Request] = []
    client = _client(_server(log, fail_first=2))
    out = await client.predict({"x": np.ones((1, 2), np.float32)})
    assert out["y"].tolist() == [[2.0]]
    assert len([r for r in log if r.method == "POST"]) == 3


async def test_rest_gives_up_after_bounded_retries() -> None:
    log: list[httpx.Request] = []
    client = _client(_server(log, fail_first=10))
    with pytest.raises(TransientServingError, match="gave up after 3 attempt"):
        await client.predict({"x": np.ones((1, 2), np.float32)})


async def test_rest_rejection_is_not_retried() -> None:
    log: list[httpx.Request] = []
    client = _client(_server(log, fail_first=10, status=400))
    with pytest.raises(ServingRejectedError, match="overloaded") as info:
        await client.predict({"x": np.ones((1, 2), np.float32)})
    assert info.value.code == "INVALID_ARGUMENT"
    assert len([r for r in log if r.method == "POST"]) == 1


async def test_rest_connection_error_maps_to_transient() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = _client(refuse)
    with pytest.raises(TransientServingError) as info:
        await client.status()
    assert isinstance(info.value.__cause__, TransientServingError)


async def test_rest_metadata_status_and_version_path() -> None:
    log: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        log.append(request)
        if request.url.path.endswith("/metadata"):
            return httpx.Response(200, json=METADATA)
        return httpx.Response(200, json={"model_version_status": [{"version": "3", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]})  # fmt: skip

    client = _client(handle, version=3)
    meta = await client.metadata()
    assert meta.version == 3
    assert meta.signatures["serving_default"].inputs["x"].shape == (-1, 2)
    status = await client.status()
    assert status.available_versions == [3]
    assert log[-1].url.path == "/v1/models/m/versions/3"


async def test_predict_batched_splits_and_concatenates_in_order() -> None:
    log: list[httpx.Request] = []
    client = _client(_server(log))
    seen: list[int] = []
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    out = await predict_batched(client, {"x": x}, on_progress=seen.append)
    assert out["y"][:, 0].tolist() == x.sum(axis=1).tolist()
    assert sorted(seen) == [1, 2, 2]
    assert len([r for r in log if r.method == "POST"]) == 3


@pytest.mark.parametrize(
    ("status", "retried", "code"),
    [(429, True, None), (499, True, None), (503, True, None), (504, True, None),
     (400, False, "INVALID_ARGUMENT"), (401, False, "UNAUTHENTICATED"),
     (403, False, "PERMISSION_DENIED"), (404, False, "NOT_FOUND"), (409, False, "ABORTED"),
     (501, False, "UNIMPLEMENTED")],
)  # fmt: skip
async def test_rest_retries_by_tf_serving_status_mapping(
    status: int, retried: bool, code: str | None
) -> None:
    """The statuses of tensorflow/serving model_servers/http_server.cc ToHTTPStatusCode:
    RESOURCE_EXHAUSTED 429, CANCELLED 499, UNAVAILABLE 503, DEADLINE_EXCEEDED 504 (and the
    --rest_api_timeout_in_ms cut) are retried; refusals never are."""
    log: list[httpx.Request] = []
    client = _client(_server(log, fail_first=1, status=status))
    x = np.ones((2, 2), dtype=np.float32)
    if retried:
        out = await client.predict({"x": x})
        np.testing.assert_array_equal(out["y"], [[2.0], [2.0]])
    else:
        with pytest.raises(ServingRejectedError) as err:
            await client.predict({"x": x})
        assert err.value.code == code
    assert len([r for r in log if r.method == "POST"]) == (2 if retried else 1)
    await client.aclose()


async def test_rest_sends_strings_of_any_rank_and_decodes_b64_outputs() -> None:
    """util/json_tensor.cc: DT_STRING outputs named *_bytes come back as {"b64": ...};
    string inputs keep their shape, bytes that are not UTF-8 travel as {"b64": ...}."""
    import base64

    seen: list[object] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/metadata"):
            return httpx.Response(200, json=METADATA)
        body = json.loads(request.content)
        seen.append(body["inputs"]["x"])
        raw = [[base64.b64encode(b"\xff\x00").decode(), base64.b64encode(b"ok").decode()]]
        return httpx.Response(200, json={"outputs": {"y_bytes": [[{"b64": v} for v in raw[0]]]}})

    client = _client(handle)
    words = np.array([[b"caf\xc3\xa9", b"\xff"], [b"a", b""]], dtype=object)
    out = await client.predict({"x": words})
    assert seen == [[["caf\u00e9", {"b64": "/w=="}], ["a", ""]]]
    assert out["y_bytes"].shape == (1, 2) and out["y_bytes"].tolist() == [[b"\xff\x00", b"ok"]]
    await client.aclose()


async def test_rest_client_builds_no_more_bodies_than_it_has_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``predict_batched`` starts every batch at once; the REST client builds a batch's
    JSON-ready body only when it may send it, so at most ``concurrency`` exist at once."""
    live: list[int] = []
    build, decode = RestModelClient._body, RestModelClient._decode_answer

    def body(self: RestModelClient, inputs: dict[str, np.ndarray]) -> dict[str, object]:
        live.append(1)
        assert len(live) <= 2, "more request bodies than requests in flight"
        return build(self, inputs)

    def answer(self: RestModelClient, *args: object) -> dict[str, np.ndarray]:
        live.pop()
        return decode(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(RestModelClient, "_body", body)
    monkeypatch.setattr(RestModelClient, "_decode_answer", answer)
    log: list[httpx.Request] = []
    client = RestModelClient(
        "http://127.0.0.1:8501",
        "m",
        transport=httpx.MockTransport(_server(log)),
        options=ClientOptions(retries=0, batch_size=2, concurrency=2),
    )
    x = np.arange(28, dtype=np.float32).reshape(14, 2)
    out = await predict_batched(client, {"x": x})
    assert out["y"][:, 0].tolist() == x.sum(axis=1).tolist()
    assert len([r for r in log if r.method == "POST"]) == 7
