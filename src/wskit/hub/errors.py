"""The hub's error, in a module of its own so that the backends import it without a cycle."""

from __future__ import annotations

from ..core.errors import WSKitError

__all__ = ["HubError"]


class HubError(WSKitError):
    """A publish could not be handed to the other workers (the local subscribers did get it).

    Redis refused or was unreachable: the others did not get it. Redis did not answer in
    time (``command_timeout``): they may still get it once Redis runs again."""
