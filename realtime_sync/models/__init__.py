"""Typed, frozen models of the vendors' payloads (one module per vendor)."""
