"""The gate: smoke inference against the shape contract and the canary accuracy comparison.

Nothing here imports TensorFlow or a serving implementation: the gate is handed a
``ModelClient`` (``tensorgate.serving.base``); only the command line (``tensorgate.commands``)
picks implementations.
"""
