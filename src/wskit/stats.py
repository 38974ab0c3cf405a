"""A server's counters (``App.stats()``) and their Prometheus text exposition."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from typing import Any

__all__ = ["RTT_SAMPLES", "ServerStats", "prometheus_text"]

#: Ping round-trip times kept for the percentiles (the most recent ones).
RTT_SAMPLES = 1024


class ServerStats:
    """What a server counts: totals of closed connections, refusals, closes, slow consumers
    and recent ping round trips. Open connections are added when a snapshot is taken, so the
    receive and send paths only bump their own connection's counters."""

    __slots__ = (
        "bytes_in",
        "bytes_out",
        "close_codes",
        "handshakes",
        "messages_in",
        "messages_out",
        "per_ip",
        "refused",
        "rtts",
        "slow",
    )

    def __init__(self) -> None:
        #: Connections whose opening handshake is under way (TCP accepted, no WebSocket yet).
        self.handshakes = 0
        #: Connections (handshakes included) per peer address.
        self.per_ip: Counter[str] = Counter()
        self.messages_in = 0
        self.messages_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.close_codes: Counter[int] = Counter()
        #: Handshakes refused, by HTTP status.
        self.refused: Counter[int] = Counter()
        #: Slow consumers: messages "dropped" for them, connections "closed" (1013).
        self.slow: Counter[str] = Counter()
        self.rtts: deque[float] = deque(maxlen=RTT_SAMPLES)

    def snapshot(self, open_counts: Iterable[tuple[int, int, int, int]],
                 connections_open: int) -> dict[str, Any]:
        """The counters as a plain dict; ``open_counts`` gives (messages in, messages out,
        bytes in, bytes out) of each open connection."""
        messages_in, messages_out = self.messages_in, self.messages_out
        bytes_in, bytes_out = self.bytes_in, self.bytes_out
        for m_in, m_out, b_in, b_out in open_counts:
            messages_in += m_in
            messages_out += m_out
            bytes_in += b_in
            bytes_out += b_out
        return {
            "connections_open": connections_open,
            "handshakes_in_progress": self.handshakes,
            "messages_in": messages_in,
            "messages_out": messages_out,
            "bytes_in": bytes_in,
            "bytes_out": bytes_out,
            "close_codes": dict(sorted(self.close_codes.items())),
            "refused_handshakes": dict(sorted(self.refused.items())),
            "slow_consumers": dict(sorted(self.slow.items())),
            "ping_rtt": percentiles(self.rtts),
        }


def percentiles(samples: Iterable[float]) -> dict[str, float]:
    """p50, p90 and p99 of ``samples`` (nearest rank), in seconds; empty without samples."""
    ordered = sorted(samples)
    if not ordered:
        return {}
    n = len(ordered)
    return {f"p{q}": ordered[min(n - 1, max(0, -(-q * n // 100) - 1))] for q in (50, 90, 99)}


_COUNTERS = (
    ("messages_in", "wskit_messages_received_total", "Messages received."),
    ("messages_out", "wskit_messages_sent_total", "Messages sent."),
    ("bytes_in", "wskit_bytes_received_total", "Bytes received (frames and handshakes)."),
    ("bytes_out", "wskit_bytes_sent_total", "Bytes sent (frames and handshakes)."),
)
_LABELLED = (
    ("close_codes", "wskit_closes_total", "code", "Connections closed, by close code."),
    ("refused_handshakes", "wskit_handshakes_refused_total", "status",
     "Opening handshakes refused, by HTTP status."),
    ("slow_consumers", "wskit_slow_consumer_actions_total", "action",
     "Slow consumers: messages dropped for them, connections closed with 1013."),
)


def prometheus_text(stats: dict[str, Any]) -> str:
    """``stats`` (from ``App.stats()``) in the Prometheus text exposition format 0.0.4."""
    lines = [
        "# HELP wskit_connections_open Open WebSocket connections.",
        "# TYPE wskit_connections_open gauge",
        f"wskit_connections_open {stats['connections_open']}",
        "# HELP wskit_handshakes_in_progress Opening handshakes under way.",
        "# TYPE wskit_handshakes_in_progress gauge",
        f"wskit_handshakes_in_progress {stats['handshakes_in_progress']}",
    ]
    for key, name, help_text in _COUNTERS:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter",
                  f"{name} {stats[key]}"]
    for key, name, label, help_text in _LABELLED:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        lines += [f'{name}{{{label}="{value}"}} {count}' for value, count in stats[key].items()]
    lines += ["# HELP wskit_ping_rtt_seconds Round-trip time of recent keepalive pings.",
              "# TYPE wskit_ping_rtt_seconds summary"]
    for key, value in stats["ping_rtt"].items():
        lines.append(f'wskit_ping_rtt_seconds{{quantile="0.{key[1:]}"}} {value:.6f}')
    return "\n".join(lines) + "\n"
