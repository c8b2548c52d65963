"""Timed work: the outbox worker and the periodic sweeps."""
