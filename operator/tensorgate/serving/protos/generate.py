"""Compile the project's TF Serving protos into the committed ``*_pb2`` modules.

``make protos`` runs ``python -m tensorgate.serving.protos.generate`` (needs ``grpcio-tools``,
a dev dependency); ``tests/unit/gate/test_grpc_client_protos.py`` runs :func:`generate` into a
temporary folder and fails when the committed modules differ. The operator never imports this
module.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["MODULES", "PROTOS", "generate", "main"]

HERE = Path(__file__).resolve().parent
SOURCE_ROOT = HERE.parents[2]  # operator/
PACKAGE = "tensorgate/serving/protos"
PROTOS = ("tf_core.proto", "tf_error.proto", "serving_apis.proto")
MODULES = (
    "tf_core_pb2.py",
    "tf_core_pb2.pyi",
    "tf_error_pb2.py",
    "tf_error_pb2.pyi",
    "serving_apis_pb2.py",
    "serving_apis_pb2.pyi",
    "serving_apis_pb2_grpc.py",
)
_DEFAULT_POOL = "_descriptor_pool.Default().AddSerializedFile("
_OWN_POOL = "_POOL.AddSerializedFile("
_IMPORTS_MARK = "# @@protoc_insertion_point(imports)\n"
_POOL_IMPORT = "from tensorgate.serving.protos._pool import POOL as _POOL\n"


def _own_pool(text: str, name: str) -> str:
    if _DEFAULT_POOL not in text or _IMPORTS_MARK not in text:
        raise RuntimeError(f"{name}: protoc output changed shape; update generate.py")
    text = text.replace(_DEFAULT_POOL, _OWN_POOL)
    return text.replace(_IMPORTS_MARK, _IMPORTS_MARK + _POOL_IMPORT, 1)


def generate(out_dir: Path) -> list[Path]:
    """Write every module of ``MODULES`` into ``out_dir``; returns their paths.

    protoc runs in a child process: grpc_tools' protoc in a process that has loaded
    TensorFlow's protobuf runtime crashed (SIGSEGV) the whole test session."""
    from grpc_tools import protoc  # type: ignore[import-untyped]  # dev dependency

    with tempfile.TemporaryDirectory() as tmp:
        args = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{SOURCE_ROOT}",
            f"-I{Path(protoc.__file__).parent / '_proto'}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *(f"{SOURCE_ROOT / PACKAGE / p}" for p in PROTOS),
        ]
        done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"protoc failed ({done.returncode}): {done.stderr.strip()}")
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name in MODULES:
            text = (Path(tmp) / PACKAGE / name).read_text()
            if name.endswith("_pb2.py"):
                text = _own_pool(text, name)
            target = out_dir / name
            target.write_text(text)
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else HERE
    for path in generate(out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
