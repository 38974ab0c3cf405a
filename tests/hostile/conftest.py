"""Fixtures of the hostile-peer tests (helpers in hostile_peer.py)."""

from hostile_peer import raise_nofile

__all__ = ["raise_nofile"]
