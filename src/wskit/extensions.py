"""Turns the user's ``compression=`` argument into the extension factories to negotiate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

from .core.extensions import ExtensionFactory

__all__ = ["Compression", "extension_factories"]

#: ``"deflate"`` (the default), None for no compression, or factories configured by hand.
Compression = Union[str, None, ExtensionFactory, Sequence[ExtensionFactory]]  # noqa: UP007


def extension_factories(compression: Compression, *, is_client: bool) -> list[ExtensionFactory]:
    """The factories to offer (client) or accept (server), in order of preference."""
    if compression is None:
        return []
    if compression == "deflate":
        from .core.deflate import PerMessageDeflateFactory

        return [PerMessageDeflateFactory(is_client=is_client)]
    if isinstance(compression, ExtensionFactory):
        return [compression]
    if isinstance(compression, str):
        raise ValueError(f"unknown compression {compression!r}; use 'deflate' or None")
    return list(compression)
