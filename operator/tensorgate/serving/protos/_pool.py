"""The descriptor pool of TensorGate's own TF Serving protos (not the default pool).

TensorFlow registers ``tensorflow.TensorProto`` and friends in protobuf's default pool when it
is imported; the project's protos use the same published full names (they must, for the wire
and for ``Any`` type URLs), so they live in a pool of their own and both can be imported in
one process (the tests, the local serving backend). The generated ``*_pb2`` modules add
themselves here (``make protos`` rewrites protoc's ``Default()`` to this pool).
"""

from __future__ import annotations

from google.protobuf import any_pb2, descriptor_pool, wrappers_pb2  # type: ignore[import-untyped]

__all__ = ["POOL"]

POOL = descriptor_pool.DescriptorPool()
for _dependency in (any_pb2, wrappers_pb2):
    POOL.AddSerializedFile(_dependency.DESCRIPTOR.serialized_pb)
