"""The command-line commands: the gate, the demo, the ledger's history and revert."""
