"""numpy arrays <-> ``tensorflow.TensorProto`` without TensorFlow and without Python loops.

Packing writes numbers either into ``tensor_content`` (little-endian bytes; what the gate
sends) or into the typed ``*_val`` fields (what TF Serving answers by default: TensorFlow's
``Tensor::AsProtoField``; ``tensor_content`` only with
``--enable_serialization_as_tensor_content``). Unpacking reads both. ``float16`` travels as
its 16 bits in ``half_val`` (an int32 each), ``DT_STRING`` always in ``string_val``.

The functions take any message with TensorProto's fields, so the local serving backend uses
them on TensorFlow's own ``TensorProto`` too. :func:`split_predict_request` reads a
serialised ``PredictRequest`` without copying its tensors' ``tensor_content`` (the serving
backend's fast path: the numbers become numpy arrays over the request's own bytes).
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from typing import Any

import numpy as np

from tensorgate.errors import ServingError
from tensorgate.serving.base import TF_DTYPES
from tensorgate.serving.protos import tf_core_pb2

__all__ = [
    "DTYPE_ENUM",
    "ENUM_DTYPE",
    "dtype_enum_name",
    "keep_freed_memory",
    "pack",
    "packed_tensor_parts",
    "split_predict_request",
    "unpack",
]

DTYPE_ENUM: dict[str, int] = {
    np_name: tf_core_pb2.DataType.Value(tf_name) for tf_name, np_name in TF_DTYPES.items()
}
"""numpy-style dtype name -> ``tensorflow.DataType`` value."""
ENUM_DTYPE: dict[int, str] = {v: k for k, v in DTYPE_ENUM.items()}

# Typed value fields by dtype (tensorflow/core/framework/tensor.proto).
_VAL_FIELD: dict[str, str] = {
    "float32": "float_val",
    "float64": "double_val",
    "int8": "int_val",
    "int16": "int_val",
    "int32": "int_val",
    "uint8": "int_val",
    "uint16": "int_val",
    "int64": "int64_val",
    "uint32": "uint32_val",
    "uint64": "uint64_val",
    "bool": "bool_val",
    "float16": "half_val",
    "string": "string_val",
}
# Packed fixed-width fields: written as one length-delimited record, no per-value work.
_FIXED_FIELD_NUMBER = {"float32": 5, "float64": 6}


def dtype_enum_name(value: int) -> str:
    """``DT_FLOAT`` for 1, ``DT_<n>`` for a value the project's protos do not name."""
    try:
        return str(tf_core_pb2.DataType.Name(value))
    except ValueError:
        return f"DT_{value}"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _dtype_name(arr: np.ndarray) -> str:
    return "string" if arr.dtype.kind in "OSU" else arr.dtype.name


def _string_values(arr: np.ndarray) -> list[bytes]:
    if arr.dtype.kind == "S":
        return list(arr.ravel().tolist())
    if arr.dtype.kind == "U":
        return list(np.char.encode(arr.ravel(), "utf-8").tolist())
    return [x if isinstance(x, bytes) else str(x).encode() for x in arr.ravel().tolist()]


def pack(value: Any, out: Any = None, *, content: bool = True) -> Any:
    """Pack ``value`` into ``out`` (a new project ``TensorProto`` by default) and return it.

    ``content=True`` puts numbers in ``tensor_content``; ``False`` in the typed field, as TF
    Serving answers by default. Raises ``ValueError`` for a dtype TF Serving has no type for.
    """
    arr = np.asarray(value)
    proto = tf_core_pb2.TensorProto() if out is None else out
    name = _dtype_name(arr)
    if name not in DTYPE_ENUM:
        raise ValueError(f"unsupported dtype {arr.dtype} (no TensorFlow DataType)")
    proto.dtype = DTYPE_ENUM[name]
    dims = proto.tensor_shape.dim
    for size in arr.shape:
        dims.add().size = int(size)
    if name == "string":
        proto.string_val.extend(_string_values(arr))
        return proto
    little = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
    if content:
        proto.tensor_content = little.tobytes()
        return proto
    if name in _FIXED_FIELD_NUMBER and little.size:
        raw = little.tobytes()
        tag = _varint((_FIXED_FIELD_NUMBER[name] << 3) | 2)
        proto.MergeFromString(tag + _varint(len(raw)) + raw)
        return proto
    flat = little.ravel()
    if name == "float16":
        flat = flat.view(np.uint16)
    getattr(proto, _VAL_FIELD[name]).extend(flat.tolist())
    return proto


def packed_tensor_parts(value: Any) -> list[bytes | memoryview]:
    """The wire bytes of a numeric ``TensorProto`` (``tensor_content``) as parts to join.

    The big part is a view of the array's own little-endian memory: joined with the parts
    around it, the tensor is copied once on its way into a request, instead of once into the
    proto and again when the proto is serialised. Strings go through :func:`pack`.
    """
    arr = np.asarray(value)
    if _dtype_name(arr) == "string" or arr.dtype.name not in DTYPE_ENUM:
        return [pack(arr).SerializeToString()]
    header: Any = tf_core_pb2.TensorProto()
    header.dtype = DTYPE_ENUM[arr.dtype.name]
    for size in arr.shape:
        header.tensor_shape.dim.add().size = int(size)
    little = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
    raw = little.reshape(-1).view(np.uint8).data
    return [header.SerializeToString(), b"\x22" + _varint(raw.nbytes), raw]


def length_delimited(field: int, parts: list[bytes | memoryview]) -> list[bytes | memoryview]:
    """``parts`` as one length-delimited field ``field`` of an enclosing message."""
    size = sum(len(p) if isinstance(p, bytes) else p.nbytes for p in parts)
    return [_varint((field << 3) | 2) + _varint(size), *parts]


def unpack(proto: Any, content: bytes | memoryview | None = None) -> np.ndarray:
    """The numpy array a TensorProto carries (``tensor_content`` or the typed fields).

    ``content`` stands for ``proto.tensor_content`` where the caller has it apart (from
    :func:`split_predict_request`): the array is then a read-only view of those bytes.
    Strings come back as an object array of ``bytes``. One typed value stands for a whole
    tensor (TensorFlow's convention), no value for zeros.
    """
    if content is None:
        content = proto.tensor_content
    shape = tuple(int(d.size) for d in proto.tensor_shape.dim)
    name = ENUM_DTYPE.get(int(proto.dtype))
    if name is None:
        raise ServingError(f"unsupported tensor dtype {dtype_enum_name(int(proto.dtype))}")
    count = int(np.prod(shape)) if shape else 1
    flat: np.ndarray
    if name == "string":
        flat = np.empty(len(proto.string_val), dtype=object)
        flat[:] = list(proto.string_val)
    elif len(content):
        dtype = np.dtype(name).newbyteorder("<")
        flat = np.frombuffer(content, dtype=dtype).astype(name, copy=False)
    elif name == "float16":
        flat = np.asarray(proto.half_val, dtype=np.int32).astype(np.uint16).view(np.float16)
    else:
        flat = np.asarray(getattr(proto, _VAL_FIELD[name]), dtype=name)
    if flat.size == count:
        return flat.reshape(shape)
    if flat.size == 1:
        return np.full(shape, flat[0], dtype=flat.dtype)
    if flat.size == 0:
        return np.zeros(shape, dtype=flat.dtype)
    raise ServingError(f"tensor of shape {list(shape)} carries {flat.size} values")


# Protobuf wire types (protobuf.dev/programming-guides/encoding).
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
# Keys (number << 3 | wire type) of the fields read apart.
_PREDICT_INPUTS = 2 << 3 | _LEN  # PredictRequest.inputs: map<string, TensorProto>
_ENTRY_KEY, _ENTRY_VALUE = 1 << 3 | _LEN, 2 << 3 | _LEN  # a map entry's key and value
_TENSOR_CONTENT = 4 << 3 | _LEN  # TensorProto.tensor_content


def _read_varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while pos < end:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            break
    raise ValueError("malformed protobuf: bad varint")


def _wire_fields(buf: memoryview, pos: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field key, field start, value start, value end) for each field in ``buf[pos:end]``;
    the key is ``number << 3 | wire type``; a length-delimited value is its payload, other
    values their encoded bytes."""
    while pos < end:
        start = pos
        key, pos = _read_varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            _, stop = _read_varint(buf, pos, end)
        elif wire == _LEN:
            size, pos = _read_varint(buf, pos, end)
            stop = pos + size
        elif wire in (_I64, _I32):
            stop = pos + (8 if wire == _I64 else 4)
        else:
            raise ValueError(f"malformed protobuf: wire type {wire} (field {number})")
        if number == 0 or stop > end:
            raise ValueError("malformed protobuf: truncated or zero field")
        yield key, start, pos, stop
        pos = stop


def _split_tensor(buf: memoryview, pos: int, end: int) -> tuple[list[memoryview], memoryview]:
    rest: list[memoryview] = []
    content = buf[0:0]
    for key, start, value, stop in _wire_fields(buf, pos, end):
        if key == _TENSOR_CONTENT:
            content = buf[value:stop]  # a bytes field: the last one wins
        else:
            rest.append(buf[start:stop])
    return rest, content


def split_predict_request(raw: bytes) -> tuple[bytes, dict[str, tuple[bytes, memoryview]]]:
    """A serialised ``PredictRequest`` apart: (the request without its ``inputs``, and per
    input name (its ``TensorProto`` without ``tensor_content``, that content as a view)).

    Both byte strings are small and parse with any ``PredictRequest`` / ``TensorProto``
    class; the contents are views of ``raw``, never copied. Protobuf's rules hold: a map
    key seen twice keeps its last entry, a message field seen twice is merged (its parts
    joined), the last ``tensor_content`` wins. Raises ``ValueError`` on malformed bytes.
    """
    buf = memoryview(raw).cast("B")
    head: list[memoryview] = []
    inputs: dict[str, tuple[bytes, memoryview]] = {}
    for key, start, value, stop in _wire_fields(buf, 0, len(buf)):
        if key != _PREDICT_INPUTS:
            head.append(buf[start:stop])
            continue
        name_bytes = b""
        parts: list[memoryview] = []
        content = buf[0:0]
        for entry, _, field, field_stop in _wire_fields(buf, value, stop):
            if entry == _ENTRY_KEY:
                name_bytes = bytes(buf[field:field_stop])
            elif entry == _ENTRY_VALUE:
                more, found = _split_tensor(buf, field, field_stop)
                parts += more
                content = found if len(found) else content
        try:
            name = name_bytes.decode()
        except UnicodeDecodeError as exc:
            raise ValueError(f"malformed protobuf: input name is not UTF-8: {exc}") from exc
        inputs[name] = (b"".join(parts), content)
    return b"".join(head), inputs


def keep_freed_memory(
    mmap_threshold: int = 64 * 1024 * 1024, trim_threshold: int = 64 * 1024 * 1024
) -> bool:
    """Make this process reuse freed memory for its next big buffers (glibc ``mallopt``
    M_MMAP_THRESHOLD, M_TRIM_THRESHOLD); False where there is no glibc.

    By default glibc gives each multi-MiB buffer (a request, its tensor) fresh pages whose
    first touch faults, and hands them back when freed. Measured in benchmarks/gate_bench.py
    (requests of 6 MiB): page faults were a fifth of the serving backend's CPU and cost the
    gRPC client 40 % more CPU. Blocks below ``mmap_threshold`` come from the heap; up to
    ``trim_threshold`` of free heap top is kept. For whole processes (the serving backend's
    and the operator's ``main``): a library must not change its host's allocator.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(-3, mmap_threshold)  # M_MMAP_THRESHOLD (fixed from now on)
        return bool(ok and libc.mallopt(-1, trim_threshold))  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        return False
