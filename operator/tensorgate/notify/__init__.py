"""Webhooks: the HTTP calls of ``analysis.webhooks`` (Flagger's webhook types)."""
