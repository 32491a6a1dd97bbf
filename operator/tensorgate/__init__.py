"""TensorGate: gate and progressively roll out TensorFlow models on Kubernetes."""

__version__ = "0.1.0"
