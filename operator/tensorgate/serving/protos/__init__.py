"""TensorGate's own compiled subset of TF Serving's gRPC API (no TensorFlow import).

``tf_core.proto``, ``tf_error.proto`` and ``serving_apis.proto`` carry the published package
names and field numbers; ``make protos`` compiles them into the ``*_pb2`` modules beside them
(committed; a unit test fails when they are stale). The modules register in a private
descriptor pool (``_pool``) so they coexist with TensorFlow's own copies in one process.
"""
