"""The one registry of job kinds: kind name -> the :class:`~fedtab.jobs.kind.JobKind` declaring it.

Adding a kind is one module declaring ``KIND = JobKind(...)`` and one line below. Kinds are
imported lazily by name, so a command that handles one kind imports no other kind's code.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from fedtab.errors import ConfigError
from fedtab.jobs.constraints import suggestion
from fedtab.jobs.kind import JobKind

# kind -> "module:ATTRIBUTE" of its JobKind declaration.
KINDS: Mapping[str, str] = MappingProxyType({
    "profile": "fedtab.profile_kind:KIND",
    "gbdt": "fedtab.gbdt.kind:KIND",
    "logreg": "fedtab.logreg.kind:KIND",
    "evaluate": "fedtab.consortium_eval.kind:KIND",
})


@dataclass(frozen=True)
class Registry:
    """Job kinds by name: ``"module:ATTRIBUTE"`` references (loaded on first use) or kinds.

    The default is :data:`KINDS`; tests pass their own (a kind that declares no releases).
    """

    entries: Mapping[str, str | JobKind] = field(default_factory=lambda: dict(KINDS))

    def names(self) -> list[str]:
        return sorted(self.entries)

    def get(self, name: str) -> JobKind:
        """The kind called ``name``; raises :class:`ConfigError` (with a suggestion) if none."""
        entry = self.entries.get(name)
        if entry is None:
            raise ConfigError(unknown_kind_message(name, self.names()))
        if isinstance(entry, JobKind):
            return entry
        module_name, _, attribute = entry.partition(":")
        kind = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(kind, JobKind) or kind.name != name:
            raise ConfigError(f"{entry} does not declare job kind {name!r}")
        return kind


def unknown_kind_message(name: object, names: list[str]) -> str:
    hint = suggestion(name, names) if isinstance(name, str) else ""
    return f"unknown job kind {name!r}; expected one of {names}{hint}"


def simulated_kinds() -> list[str]:
    """The kinds ``fedtab simulate`` can run: those that name a baseline to compare with."""
    registry = Registry()
    return [name for name in registry.names() if registry.get(name).baseline is not None]


def job_kind(name: str) -> JobKind:
    """The registered kind called ``name`` (see :class:`Registry`)."""
    return Registry().get(name)
