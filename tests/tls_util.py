"""TLS contexts for the end-to-end tests, from a throwaway CA made by trustme."""

from __future__ import annotations

import ssl
from functools import lru_cache

import trustme


@lru_cache(maxsize=1)
def certificate_authority() -> trustme.CA:
    return trustme.CA()


@lru_cache(maxsize=1)
def _server_cert() -> trustme.LeafCert:
    return certificate_authority().issue_cert("localhost", "127.0.0.1", "::1")


def server_context() -> ssl.SSLContext:
    """A server context with a certificate for localhost, 127.0.0.1 and ::1."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    _server_cert().configure_cert(context)
    return context


def client_context() -> ssl.SSLContext:
    """A verifying client context that trusts the test CA (and nothing else)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    certificate_authority().configure_trust(context)
    return context
