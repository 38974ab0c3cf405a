"""Close codes: the RFC 6455 §7.4.1 table, which codes may be sent or received, which are clean."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["CloseCode", "is_clean", "valid_on_wire"]


class CloseCode(IntEnum):
    """The status codes of RFC 6455 §7.4.1 and the IANA registry (1012-1015).

    A plain ``int`` is accepted wherever a code is (3000-4999 are for libraries and
    applications, RFC 6455 §7.4.2); members compare equal to their numbers.
    """

    #: The purpose of the connection is fulfilled.
    NORMAL_CLOSURE = 1000
    #: The endpoint goes away: a server shutting down, a browser leaving the page.
    GOING_AWAY = 1001
    #: The peer broke the protocol.
    PROTOCOL_ERROR = 1002
    #: A kind of data the endpoint cannot accept (text for a binary-only endpoint, say).
    UNSUPPORTED_DATA = 1003
    #: Never on the wire: the Close frame carried no code (RFC 6455 §7.1.5).
    NO_STATUS_RCVD = 1005
    #: Never on the wire: the TCP connection ended without a Close frame (§7.1.5).
    ABNORMAL_CLOSURE = 1006
    #: Data inconsistent with the message type, such as invalid UTF-8 in a text message.
    INVALID_PAYLOAD = 1007
    #: A message violates the endpoint's policy (generic, when no other code fits).
    POLICY_VIOLATION = 1008
    #: A message too big to process.
    MESSAGE_TOO_BIG = 1009
    #: Sent by a client: the server did not negotiate an extension it needs.
    MANDATORY_EXTENSION = 1010
    #: An unexpected condition on the endpoint (a listener that raised, for instance).
    INTERNAL_ERROR = 1011
    #: The server restarts; the client may reconnect (IANA registry).
    SERVICE_RESTART = 1012
    #: Temporary condition (overload, a slow subscriber); try again later (IANA registry).
    TRY_AGAIN_LATER = 1013
    #: A gateway or proxy received an invalid response from upstream (IANA registry).
    BAD_GATEWAY = 1014
    #: Never on the wire: the TLS handshake failed.
    TLS_HANDSHAKE = 1015

    @property
    def sendable(self) -> bool:
        """Whether this code may be sent in a Close frame (so also received in one)."""
        return valid_on_wire(self)

    @property
    def receivable(self) -> bool:
        """Whether a Close frame carrying this code is valid (the same set as ``sendable``)."""
        return valid_on_wire(self)

    @property
    def clean(self) -> bool:
        """Whether a closing handshake that ends with this code is not an error."""
        return is_clean(self)


# The codes that end a connection as intended: done, going away, or no code given.
_CLEAN = frozenset((1000, 1001, 1005))


def valid_on_wire(code: int) -> bool:
    """Whether ``code`` may appear in a Close frame, sent or received (RFC 6455 §7.4.1-§7.4.2).

    1004 is reserved, 1005, 1006 and 1015 are only reported locally, 1016-2999 are unassigned
    (a received one fails the connection with 1002), 3000-4999 belong to libraries and apps.
    """
    if 1000 <= code <= 1014:
        return code != 1004 and code != 1005 and code != 1006
    return 3000 <= code <= 4999


def is_clean(code: int) -> bool:
    """Whether a close that completed its handshake with ``code`` is a normal end.

    1000, 1001 and 1005 (no code), and 4000-4999: an application's private codes are a
    choice it made on purpose ("room full", "logged out"), not a fault. The RFC's error codes
    (1002, 1003, 1007-1011), 1012-1014, 1006 and the registered 3000-3999 codes are errors.
    """
    return code in _CLEAN or 4000 <= code <= 4999
