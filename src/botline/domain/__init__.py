"""Typed domain models shared by every layer (no I/O here)."""
