"""The SQL ledger: every rollout, gate result and phase change, kept after the CR is gone."""
