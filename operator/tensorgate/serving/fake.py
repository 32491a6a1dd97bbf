"""``FakeModelClient``: a Python function behind the ``ModelClient`` interface (for tests)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from tensorgate.errors import ServingError
from tensorgate.serving.base import (
    ClientOptions,
    ModelMetadata,
    ModelStatus,
    ModelVersionStatus,
    ServingRejectedError,
    Signature,
    TensorInfo,
    VersionState,
)

__all__ = ["FakeModelClient", "PredictFn"]

PredictFn = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]


class FakeModelClient:
    """Answers ``predict`` with ``fn``; records every request in ``requests``.

    ``fn`` may raise ``ServingRejectedError`` (a refused request) or any ``ServingError``.
    Any other exception is reported as a rejected request, as a real server would.
    """

    def __init__(
        self,
        fn: PredictFn,
        *,
        inputs: Mapping[str, TensorInfo],
        outputs: Mapping[str, TensorInfo],
        signature_name: str = "serving_default",
        model_name: str = "fake",
        version: int = 1,
        options: ClientOptions | None = None,
    ) -> None:
        self.fn = fn
        self.model_name = model_name
        self.version = version
        self.signature = Signature(signature_name, dict(inputs), dict(outputs))
        self._options = options or ClientOptions(retries=0, backoff_s=0.0)
        self.requests: list[dict[str, np.ndarray]] = []
        self.closed = False

    @property
    def options(self) -> ClientOptions:
        return self._options

    async def metadata(self) -> ModelMetadata:
        return ModelMetadata(self.model_name, self.version, {self.signature.name: self.signature})

    async def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.closed:
            raise ServingError("client is closed")
        self.requests.append({k: np.array(v) for k, v in inputs.items()})
        try:
            result = self.fn(inputs)
        except ServingError:
            raise
        except Exception as exc:
            raise ServingRejectedError(f"{type(exc).__name__}: {exc}") from exc
        return {k: np.asarray(v) for k, v in result.items()}

    async def status(self) -> ModelStatus:
        return ModelStatus((ModelVersionStatus(self.version, VersionState.AVAILABLE),))

    async def aclose(self) -> None:
        self.closed = True
