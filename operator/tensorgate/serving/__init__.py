"""Clients for TF Serving (REST and gRPC) and the local serving backend.

Only ``serving.base`` and ``serving.rest`` are safe on the operator's reconcile path;
``serving.grpc`` and ``serving.local`` import TensorFlow.
"""
