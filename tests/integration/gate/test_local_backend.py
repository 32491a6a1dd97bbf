"""The local serving backend: TF Serving's REST/gRPC answers, metrics, and process mode."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tensorgate.serving.base import ServingRejectedError, VersionState
from tests.integration.gate.conftest import ClientFactory, Served

pytestmark = pytest.mark.tf


def test_local_rest_status_and_metadata_have_tf_serving_shape(served: dict[str, Served]) -> None:
    entry = served["shapes"]
    url = entry.server.rest_url  # type: ignore[attr-defined]
    status = httpx.get(f"{url}/v1/models/shapes/versions/1").json()
    assert status == {
        "model_version_status": [
            {
                "version": "1",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    meta = httpx.get(f"{url}/v1/models/shapes/versions/1/metadata").json()
    assert meta["model_spec"] == {"name": "shapes", "signature_name": "", "version": "1"}
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["inputs"]["pixels"]["dtype"] == "DT_FLOAT"
    assert sig["inputs"]["pixels"]["tensor_shape"]["dim"] == [{"size": "-1"}, {"size": "6"}]
    assert sig["method_name"] == "tensorflow/serving/predict"
    missing = httpx.get(f"{url}/v1/models/nope")
    assert missing.status_code == 404
    assert "error" in missing.json()


def test_local_rest_predict_row_and_columnar_formats_agree(served: dict[str, Served]) -> None:
    entry = served["shapes"]
    url = f"{entry.server.rest_url}/v1/models/shapes/versions/1:predict"  # type: ignore[attr-defined]
    x = entry.golden.inputs["pixels"][:3]
    rows = httpx.post(url, json={"instances": x.tolist()}).json()["predictions"]
    cols = httpx.post(url, json={"inputs": {"pixels": x.tolist()}}).json()["outputs"]
    assert np.allclose(rows, cols)
    assert np.asarray(rows).shape == (3, 3)
    bad = httpx.post(url, json={"inputs": {"wrong": x.tolist()}})
    assert bad.status_code == 400


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
async def test_local_clients_status_metadata_and_rejection(
    served: dict[str, Served], make_client: ClientFactory, protocol: str
) -> None:
    entry = served["fraud"]
    client = make_client(entry, "good", protocol)
    status = await client.status()
    assert status.versions[0].state == VersionState.AVAILABLE
    meta = await client.metadata()
    sig = meta.signatures["serving_default"]
    assert sig.inputs["txn"].shape == (-1, 5)
    assert sig.outputs["p_fraud"].dtype == "float32"
    with pytest.raises(ServingRejectedError):
        await client.predict({"txn": np.zeros((2, 3), np.float32)})


async def test_local_metrics_use_tf_serving_names(
    served: dict[str, Served], make_client: ClientFactory
) -> None:
    entry = served["fraud"]
    for protocol in ("rest", "grpc"):
        await make_client(entry, "good", protocol).predict({"txn": entry.golden.inputs["txn"][:4]})
    async with httpx.AsyncClient() as http:
        answer = await http.get(
            f"{entry.server.rest_url}/monitoring/prometheus/metrics"  # type: ignore[attr-defined]
        )
    text = answer.text
    assert ':tensorflow:serving:request_count{model_name="fraud",status="OK"}' in text
    # REST predicts carry API="predict", gRPC API="Predict" (tensorflow/serving
    # model_servers/http_server.cc, prediction_service_impl.cc)
    for api, entrypoint in (("predict", "REST"), ("Predict", "GRPC")):
        labels = f'model_name="fraud",API="{api}",entrypoint="{entrypoint}"'
        assert f':tensorflow:serving:request_latency_bucket{{{labels},le="+Inf"}}' in text
        assert f":tensorflow:serving:request_latency_count{{{labels}}}" in text
        assert f":tensorflow:serving:request_latency_sum{{{labels}}}" in text


def test_local_backend_process_prints_ready_and_exits_on_sigterm(served: dict[str, Served]) -> None:
    entry = served["fraud"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "tensorgate.serving.backend",
            "--model-name", "fraud",
            "--model-base-path", str(entry.base),
            "--rest-port", "0", "--grpc-port", "0",
            "--host", "127.0.0.1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        line = ""
        assert proc.stdout is not None
        while time.monotonic() < deadline and "ready" not in line:
            ready, _, _ = select.select([proc.stdout], [], [], deadline - time.monotonic())
            if not ready:
                break
            line = proc.stdout.readline()
            if not line:
                break
        assert "tensorgate-serving ready" in line, line
        fields = dict(part.split("=", 1) for part in line.split()[2:])
        assert fields["versions"] == str(max(entry.versions.values()))
        status = httpx.get(f"http://{fields['rest']}/v1/models/fraud").json()
        assert status["model_version_status"][0]["state"] == "AVAILABLE"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_local_backend_rejects_a_path_without_savedmodel(tmp_path: Path) -> None:
    from tensorgate.errors import ConfigError
    from tensorgate.serving.backend import find_versions

    with pytest.raises(ConfigError, match="no SavedModel"):
        find_versions(tmp_path)


@pytest.mark.parametrize(
    "dtype",
    ["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16",
     "uint32", "uint64", "bool"],
)  # fmt: skip
def test_inputs_reach_tensorflow_unchanged(dtype: str) -> None:
    """The backend hands inputs to TensorFlow through one aligned copy and DLPack (bool and
    empty arrays through ``tf.constant``): values, dtype and shape survive for scalars, strided
    views, big-endian and read-only arrays (a view of a request's bytes is read-only)."""
    from tensorgate.serving.backend import _as_tensor

    base = (np.arange(12) % 7).astype(dtype)
    arrays = [
        np.array(base[3]),
        base.reshape(3, 4)[:, ::2],
        base.astype(base.dtype.newbyteorder(">")),
        np.frombuffer(base.tobytes(), dtype=dtype).reshape(2, 6),
        base[:0].reshape(0, 4),
    ]
    for arr in arrays:
        tensor = _as_tensor(arr)
        assert tensor.dtype.name == dtype and tuple(tensor.shape) == arr.shape
        np.testing.assert_array_equal(tensor.numpy(), arr)
