"""Declared parameter constraints and the one validator of job parameters.

In the spirit of scikit-learn's ``_parameter_constraints``: each job kind declares, once, the
parameters it takes (:class:`Param`: allowed values, default, aliases) as a :class:`Schema`.
:meth:`Schema.validate` is the only code that turns job-file values into typed values, so the
trainer, the bank's policy and ``fedtab run`` read ``min_child_samples = 60.0`` as the same
integer 60. Messages name the kind, the parameter and what is allowed, and unknown names get a
did-you-mean suggestion::

    unknown gbdt parameter 'n_estimator'; did you mean 'n_estimators'?
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from fedtab.errors import ConfigError

Closed = Literal["left", "right", "both", "neither"]


class Constraint(Protocol):
    """One kind of allowed value; a parameter accepts a value that any of its constraints does."""

    def convert(self, value: Any) -> tuple[bool, Any]:
        """``(True, typed value)`` when ``value`` is allowed, else ``(False, None)``."""
        ...

    def describe(self) -> str:
        """What is allowed, for messages (``an integer in [1, 16]``)."""
        ...


def _bound(value: float) -> str:
    """``2**40`` for large powers of two (as the job-file docs write them), else the number."""
    if isinstance(value, int) and value >= 2**20 and value & (value - 1) == 0:
        return f"2**{value.bit_length() - 1}"
    return repr(value) if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Interval:
    """A finite integer or real number within bounds (``None``: unbounded on that side).

    ``type=int`` accepts integers and integral floats (``60.0`` is 60) and yields ``int``;
    ``type=float`` accepts any finite int or float and yields ``float``. Booleans never pass.
    """

    type: type[int] | type[float]
    left: float | None
    right: float | None
    closed: Closed = "both"

    def convert(self, value: Any) -> tuple[bool, Any]:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False, None
        if isinstance(value, float) and not math.isfinite(value):
            return False, None
        if self.type is int:
            if isinstance(value, float) and not value.is_integer():
                return False, None
            number: int | float = int(value)
        else:
            number = float(value)
        return self._inside(number), number

    def _inside(self, number: float) -> bool:
        left, right = self.left, self.right
        if left is not None and (number < left or (number == left and self.closed in (
                "right", "neither"))):
            return False
        return right is None or not (number > right or (number == right and self.closed in (
            "left", "neither")))

    def describe(self) -> str:
        noun = "an integer" if self.type is int else "a number"
        left_in = self.closed in ("left", "both")
        right_in = self.closed in ("right", "both")
        if self.left is not None and self.right is not None:
            return (f"{noun} in {'[' if left_in else '('}{_bound(self.left)}, "
                    f"{_bound(self.right)}{']' if right_in else ')'}")
        if self.left is not None:
            return f"{noun} {'>=' if left_in else '>'} {_bound(self.left)}"
        if self.right is not None:
            return f"{noun} {'<=' if right_in else '<'} {_bound(self.right)}"
        return noun if self.type is int else "a finite number"


@dataclass(frozen=True)
class Options:
    """One of a fixed set of strings (or other hashable literals)."""

    values: frozenset[Any]

    def convert(self, value: Any) -> tuple[bool, Any]:
        ok = not isinstance(value, bool) and isinstance(value, str | int) and value in self.values
        return ok, value if ok else None

    def describe(self) -> str:
        return " or ".join(repr(v) for v in sorted(self.values, key=str))


@dataclass(frozen=True)
class Boolean:
    """``true`` or ``false``."""

    def convert(self, value: Any) -> tuple[bool, Any]:
        return isinstance(value, bool), value if isinstance(value, bool) else None

    def describe(self) -> str:
        return "true or false"


@dataclass(frozen=True)
class String:
    """A string (non-empty unless ``empty``)."""

    empty: bool = False

    def convert(self, value: Any) -> tuple[bool, Any]:
        ok = isinstance(value, str) and (self.empty or bool(value))
        return ok, value if ok else None

    def describe(self) -> str:
        return "a string" if self.empty else "a non-empty string"


@dataclass(frozen=True)
class NoneValue:
    """The parameter may be left out (its value is ``None``; TOML has no null)."""

    def convert(self, value: Any) -> tuple[bool, Any]:
        return value is None, None

    def describe(self) -> str:
        return "omitted"


@dataclass(frozen=True)
class Table:
    """A table keyed by ``keys`` (given as strings or integers), each value meeting ``value``.

    Yields a tuple in ``keys`` order, ``missing`` for keys left out (``class_weight = {"1" =
    4.5}`` is ``(1.0, 4.5)``).
    """

    keys: tuple[str, ...]
    value: Interval
    missing: float = 1.0

    def convert(self, value: Any) -> tuple[bool, Any]:
        if not isinstance(value, Mapping):
            return False, None
        found: dict[str, Any] = {}
        for key, item in value.items():
            ok, number = self.value.convert(item)
            if str(key) not in self.keys or not ok:
                return False, None
            found[str(key)] = number
        return True, tuple(found.get(key, self.missing) for key in self.keys)

    def describe(self) -> str:
        keys = ", ".join(f'"{k}" = w{k}' for k in self.keys)
        return f"a table {{{keys}}} of {self.value.describe().replace('a number', 'numbers')}"


@dataclass(frozen=True)
class Param:
    """One declared parameter: its allowed values (any of ``allowed``), default and aliases."""

    allowed: tuple[Constraint, ...]
    default: Any = None
    aliases: tuple[str, ...] = ()

    def describe(self) -> str:
        return " or ".join(c.describe() for c in self.allowed)


@dataclass(frozen=True)
class Schema:
    """A job kind's declared parameters and cross-parameter rules (see module docstring).

    ``rules`` take the validated values and return a message when they break a rule that
    involves several parameters (``reg_lambda and min_child_weight cannot both be 0``).
    """

    kind: str
    params: Mapping[str, Param]
    rules: tuple[Callable[[Mapping[str, Any]], str | None], ...] = ()
    aliases: Mapping[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "aliases", {
            alias: name for name, param in self.params.items() for alias in param.aliases
        })

    def validate(self, raw: Mapping[str, Any],
                 defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Every declared parameter, typed: the given value or its default.

        ``defaults`` overrides declared defaults (GBDT's ``seed`` defaults to the job's seed).
        Raises :class:`ConfigError` for an unknown name (with a suggestion), a name given twice
        (directly and as an alias), a disallowed value or a broken rule.
        """
        values = {name: param.default for name, param in self.params.items()}
        values.update(defaults or {})
        given: dict[str, str] = {}
        for key, value in raw.items():
            name = self.canonical(str(key))
            if name in given:
                raise ConfigError(f"{self.kind} parameter {name} is given twice "
                                  f"(as {given[name]!r} and {key!r})")
            given[name] = str(key)
            values[name] = self.convert(name, value)
        self._check_rules(values)
        return values

    def check(self, values: Mapping[str, Any]) -> None:
        """Check already typed values (a Params object built directly) against the schema."""
        for name, value in values.items():
            if name in self.params:
                self.convert(name, value)
        self._check_rules(values)

    def canonical(self, key: str) -> str:
        """The declared name of ``key`` (itself or the parameter it is an alias of)."""
        if key in self.params:
            return key
        if key in self.aliases:
            return self.aliases[key]
        raise ConfigError(f"unknown {self.kind} parameter {key!r}"
                          f"{suggestion(key, [*self.params, *self.aliases])}")

    def convert(self, name: str, value: Any) -> Any:
        """``value`` of parameter ``name`` typed; raises :class:`ConfigError` naming both."""
        param = self.params[name]
        for constraint in param.allowed:
            ok, typed = constraint.convert(value)
            if ok:
                return typed
        raise ConfigError(f"{self.kind} parameter {name} must be {param.describe()}, "
                          f"got {value!r}")

    def _check_rules(self, values: Mapping[str, Any]) -> None:
        for rule in self.rules:
            message = rule(values)
            if message:
                raise ConfigError(f"{self.kind} parameters: {message}")


def suggestion(word: str, known: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``known``, or ``""``."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
