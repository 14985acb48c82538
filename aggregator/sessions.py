"""Which process speaks for each bank: one session per registration.

A bank's certificate says *which* bank calls, not *which process*. Without sessions, a second
``bank join`` started from the same folder (with other data) is accepted too, and which table
trains the next job depends on a race. So every registration gets a random session id that the
bank sends with every later call (gRPC metadata ``fedtab-session``), and each bank has at most
one current session:

* a registration for a bank whose session is *attached* is refused with :class:`SessionError`
  (the newcomer prints it and exits): the session has a call open (a bank nearly always holds
  a long poll) whose client is still connected, or it calls again while the newcomer waits
  (at most the attach window);
* a session whose process detached (``bank join`` stopping), whose client went away (its last
  call was cancelled: the process died, stopped or lost its link), or that stayed silent
  beyond the attach window, is replaced: the newcomer takes over;
* a call carrying a session other than the bank's current one is refused (the process that was
  replaced stops); a call carrying a session while the bank has none (the aggregator restarted
  and lost its sessions) makes that session current.

A call without a session (an in-process caller, a hand-made client) is checked by certificate
alone; the fedtab bank always sends its session.

Threat model: a guard against two processes of one bank (an operator's mistake), not against
whoever holds the bank's TLS key (that party *is* the bank). Session ids are random (128 bits)
and travel inside mTLS only; they authorise nothing beyond the certificate.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from enum import Enum

from fedtab.errors import SessionError

log = logging.getLogger("fedtab.aggregator")
ATTACH_WINDOW_SECONDS = 30.0  # a bank polling within this window counts as attached
RECHECK_SECONDS = 0.25  # how often a waiting registration looks at the old session again


class Verdict(Enum):
    """What a registration for a bank finds."""

    FREE = "free"  # no session, or one whose process is gone: take over
    ATTACHED = "attached"  # another process speaks for the bank: refuse
    UNSURE = "unsure"  # silent for less than the attach window: wait and look again


@dataclass
class _Session:
    sid: str
    last_seen: float
    calls: dict[int, Callable[[], bool]] = field(default_factory=dict)  # open: connected?
    gone: bool = False  # its last call ended with the client gone, nothing since


class Sessions:
    """The current session of each bank (see the module docstring); not thread-safe: the
    coordinator calls it under its lock, and ``wait`` releases that lock while waiting."""

    def __init__(self, window: float, clock: Callable[[], float]) -> None:
        self.window = window
        self._clock = clock
        self._current: dict[str, _Session] = {}
        self._next_call = 0

    def admit(self, bank: str, wait: Callable[[float], object]) -> str:
        """A new current session for ``bank``; raises :class:`SessionError` while another
        process's session is attached. ``wait(seconds)`` blocks (releasing the caller's lock)
        while the old session's fate is unsure, for at most the attach window."""
        started = self._clock()
        give_up = time.monotonic() + self.window + 1.0  # also bounded in real time
        while True:
            verdict = self.verdict(bank, started)
            if verdict is Verdict.ATTACHED:
                raise SessionError(f"bank {bank!r} is already attached from another process; "
                                   "stop it first")
            if verdict is Verdict.FREE or time.monotonic() > give_up:
                break
            wait(RECHECK_SECONDS)
        old = self._current.get(bank)
        if old is not None:
            log.warning("bank %s: a new process takes over from a silent one", bank)
        sid = secrets.token_hex(16)
        self._current[bank] = _Session(sid, self._clock())
        return sid

    def verdict(self, bank: str, since: float) -> Verdict:
        """Is ``bank``'s current session attached, for a registration waiting since ``since``?"""
        session = self._current.get(bank)
        if session is None:
            return Verdict.FREE
        calls = list(session.calls.values())
        if any(connected() for connected in calls):
            return Verdict.ATTACHED
        if calls or session.gone:
            return Verdict.FREE  # its calls lost their client: the process is gone
        if session.last_seen > since:
            return Verdict.ATTACHED  # it called again while the newcomer waited
        if self._clock() - session.last_seen > self.window:
            return Verdict.FREE
        return Verdict.UNSURE

    def check(self, bank: str, sid: str | None) -> None:
        """Refuse a call carrying a session other than ``bank``'s current one (SessionError);
        ``None``: a call without a session (certificate only)."""
        if sid is None:
            return
        session = self._current.get(bank)
        if session is None:
            log.info("bank %s continues its session (this aggregator did not know it)", bank)
            self._current[bank] = _Session(sid, self._clock())
            return
        if session.sid != sid:
            raise SessionError(f"bank {bank!r} is attached from another process now; this "
                               "process's session is no longer current: stop it")
        session.last_seen = self._clock()
        session.gone = False

    def end(self, bank: str, sid: str | None) -> bool:
        """End ``bank``'s session ``sid`` if it is the current one (its process stops)."""
        session = self._current.get(bank)
        if sid is None or session is None or session.sid != sid:
            return False
        del self._current[bank]
        return True

    @contextmanager
    def call(self, bank: str, sid: str | None, connected: Callable[[], bool],
             lock: AbstractContextManager[object]) -> Iterator[None]:
        """Mark a call of session ``sid`` open while the block runs (taking ``lock`` to
        update the table); ``connected()`` says whether its client is still there: a call
        ending without its client means the process died, stopped or lost its link."""
        with lock:
            session = self._current.get(bank)
            if sid is None or session is None or session.sid != sid:
                session = None
            else:
                self._next_call += 1
                key = self._next_call
                session.calls[key] = connected
        try:
            yield
        finally:
            if session is not None:
                with lock:
                    session.calls.pop(key, None)
                    session.gone = not connected()
                    session.last_seen = self._clock()


__all__ = ["ATTACH_WINDOW_SECONDS", "Sessions", "Verdict"]
