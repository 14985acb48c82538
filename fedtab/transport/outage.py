"""Few, short lines about an unreachable aggregator, however often a call is retried.

:func:`call_with_retry <fedtab.transport.client.call_with_retry>` retries an unreachable
aggregator with backoff; an :class:`OutageReporter` watches those attempts and says so once when
the outage starts (at once, with a short reason such as "connection refused"), then at most
every ``every`` seconds while it lasts, once when the aggregator answers again, and turns the
final give-up into one line. No key material passes through here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import grpc

from fedtab.errors import PeerUnavailableError

T = TypeVar("T")

_UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
# (substring of gRPC's details, lower case) -> the short reason shown to people; first match wins
_REASONS = (
    ("connection refused", "connection refused"),
    ("dns resolution failed", "host name not resolved"),
    ("name resolution", "host name not resolved"),
    ("no route to host", "no route to host"),
    ("network is unreachable", "network unreachable"),
    ("handshake", "TLS handshake failed"),
    ("ssl", "TLS handshake failed"),
    ("certificate", "TLS certificate refused"),
    ("connection reset", "connection reset"),
    ("socket closed", "connection closed"),
    ("broken pipe", "connection closed"),
    ("deadline exceeded", "no answer in time"),
    ("timed out", "connection timed out"),
    ("timeout", "connection timed out"),
)
_MAX_REASON = 80


def short_reason(details: str, code: grpc.StatusCode | None = None) -> str:
    """A few words for why a call failed, from gRPC's (often very long) status details."""
    text = (details or "").strip()
    lower = text.lower()
    for needle, reason in _REASONS:
        if needle in lower:
            return reason
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return "no answer in time"
    first = text.splitlines()[0] if text else "unavailable"
    first = first.split("last error: ")[-1]
    return first if len(first) <= _MAX_REASON else first[: _MAX_REASON - 3] + "..."


def _seconds(value: float) -> str:
    return f"{value:.0f} s"


@dataclass
class OutageReporter:
    """Watches calls to the aggregator at ``address`` and reports outages through ``notify``.

    ``give_up_after`` is how long one call retries (None: until stopped), used in the first
    line; ``every`` the interval of "still unreachable" lines; ``clock`` is monotonic seconds.
    """

    address: str
    notify: Callable[[str], None]
    give_up_after: float | None = None
    every: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _since: float | None = field(default=None, init=False)
    _last_note: float = field(default=0.0, init=False)
    _reason: str = field(default="", init=False)

    @property
    def unreachable(self) -> bool:
        """Whether the last watched attempt found the aggregator unreachable."""
        return self._since is not None

    def failed(self, reason: str) -> None:
        """An attempt found the aggregator unreachable for ``reason`` (a short reason)."""
        now = self.clock()
        self._reason = reason
        if self._since is None:
            self._since = self._last_note = now
            budget = ("until it is back" if self.give_up_after is None
                      else f"for up to {_seconds(self.give_up_after)}")
            self.notify(f"aggregator {self.address} unreachable ({reason}); retrying {budget}")
        elif now - self._last_note >= self.every:
            self._last_note = now
            self.notify(f"aggregator {self.address} still unreachable after "
                        f"{_seconds(now - self._since)} ({reason})")

    def answered(self) -> None:
        """An attempt reached the aggregator (whatever its answer)."""
        if self._since is not None:
            down = self.clock() - self._since
            self._since = None
            self.notify(f"aggregator {self.address} reachable again after {_seconds(down)}")

    def watch(self, fn: Callable[[], T]) -> Callable[[], T]:
        """``fn`` reporting each attempt's outcome here; exceptions pass through unchanged."""

        def attempt() -> T:
            try:
                result = fn()
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else None
                if code in _UNREACHABLE:
                    details = exc.details() if hasattr(exc, "details") else ""
                    self.failed(short_reason(details or "", code))
                else:
                    self.answered()
                raise
            self.answered()
            return result

        return attempt

    def gave_up(self, error: PeerUnavailableError) -> PeerUnavailableError:
        """The one-line error for a call that stopped retrying (``error`` if nothing was seen)."""
        if self._since is None:
            return error
        waited = self.clock() - self._since
        return PeerUnavailableError(
            f"aggregator {self.address} unreachable ({self._reason}); gave up after "
            f"{_seconds(waited)}"
        )
