"""Clients for TF Serving (REST and gRPC) and the local serving backend.

``serving.base``, ``serving.rest``, ``serving.grpc``, ``serving.tensors`` and
``serving.protos`` are safe on the operator's reconcile path (no TensorFlow: the gRPC client
uses the project's own compiled protos); ``serving.local`` imports TensorFlow.
"""
