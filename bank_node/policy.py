"""What this bank agrees to compute: its own privacy floor and the models it will score.

Threat model: job specs come from the operator through the aggregator, both honest-but-curious
parties. A bank therefore does not take a job's privacy parameters on trust:

* **Deny by default.** Every job kind declares what it releases and to whom
  (:class:`fedtab.jobs.Release`, in its :class:`~fedtab.jobs.JobKind`). A kind this bank does
  not know, or one that declares no release, is refused.
* **Privacy floor.** Every statistic a job releases about a part of the data must cover at
  least ``privacy_floor`` rows. A release bounded by a parameter (``min_child_samples`` of
  ``gbdt``: nodes and bins; ``min_rows`` of ``evaluate``: holdouts) is checked here, before
  the bank computes anything, on the parameter as the trainer will read it (the kind's one
  validator: ``60.0`` is 60). A release covering the whole consortium (``profile`` and
  ``logreg`` moments, standardisation, coefficients) has as many rows as the consortium, a
  number known only once summed: this bank's floor goes to its trainer
  (``JobContext.privacy_floor``), and the kind refuses to *propose* (release) the figures when
  the rows behind them, or behind any released mean, are fewer (:class:`PrivacyError` naming
  no figure; the job fails and the operator gets nothing). Limits: the other banks decrypt
  the sum before that, and banks with lower floors still propose the figures to the
  aggregator; a count-only first step would close that (issue 11). Per-category and non-null
  counts of ``profile`` and ``logreg`` are bounded by their ``min_group_rows`` (checked here).
* **Evaluated models.** Scoring an arbitrary model on the holdout and releasing metrics is a
  query interface: a crafted one-split model reveals single customers' labels through the Brier
  score. This bank scores only models it helped train (their digests are recorded in its
  folder when a job finishes) or that its own operator approved (``bank join --approve-model``);
  the kind names the parameter carrying the model (``scored_model``).

* **The job's banks.** The aggregator names the banks of a job; this bank does not take that
  list on trust. It must list this bank, each bank once, and only members of the consortium
  (from this bank's own bundle), and at least three banks: with two, each could subtract its
  own contribution from an aggregate and read the other's. Two are accepted only when the job
  says ``allow_two_banks`` *and* this bank agreed (``bank join --allow-two-banks``).

Refusals are one line and name the kind, the parameter, a bank or the model digest, never this
bank's data.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedtab.atomic import atomic_write_text
from fedtab.errors import ConfigError, PrivacyError
from fedtab.jobs import MIN_BANKS, JobKind, JobSpec, Registry
from fedtab.jobs.constraints import Interval, Param, Schema

DEFAULT_PRIVACY_FLOOR = 50
TRAINED_MODELS_FILE = "trained_models.json"
SETTINGS = Schema("bank policy", {"privacy_floor": Param((Interval(int, 1, None),))})


class PolicyRefusal(PrivacyError):
    """This bank refuses a job under its own policy (the message names no data)."""


def model_digest(model_text: str | bytes) -> str:
    """SHA-256 hex digest of a model file's exact bytes."""
    data = model_text.encode("utf-8") if isinstance(model_text, str) else model_text
    return hashlib.sha256(data).hexdigest()


@dataclass
class BankPolicy:
    """This bank's limits on what jobs may release (see the module docstring)."""

    privacy_floor: int = DEFAULT_PRIVACY_FLOOR
    approved_models: set[str] = field(default_factory=set)
    registry: Path | None = None
    kinds: Registry = field(default_factory=Registry)
    allow_two_banks: bool = False

    def __post_init__(self) -> None:
        self.privacy_floor = SETTINGS.convert("privacy_floor", self.privacy_floor)
        self.approved_models |= self._recorded()

    @classmethod
    def for_bundle(
        cls, bundle_dir: Path, privacy_floor: int, approve: Iterable[Path] = (),
        *, allow_two_banks: bool = False,
    ) -> BankPolicy:
        """The policy of the bank whose folder is ``bundle_dir``; ``approve``: model files."""
        approved = set()
        for path in approve:
            try:
                approved.add(model_digest(Path(path).read_bytes()))
            except OSError as exc:
                raise ConfigError(f"cannot read approved model {path}: {exc.strerror}") from exc
        return cls(privacy_floor, approved, Path(bundle_dir) / TRAINED_MODELS_FILE,
                   allow_two_banks=allow_two_banks)

    def check_banks(self, spec: JobSpec, banks: Sequence[str], members: Iterable[str],
                    me: str) -> None:
        """Raise :class:`PolicyRefusal` unless this bank takes part in a job over ``banks``.

        ``members``: the consortium's banks from this bank's own bundle; ``me``: this bank.
        """
        listed = list(banks)
        if len(set(listed)) != len(listed):
            raise PolicyRefusal("the job lists a bank more than once; this bank refuses it")
        strangers = sorted(set(listed) - set(members))
        if strangers:
            named = ", ".join(repr(name[:40]) for name in strangers[:3])
            raise PolicyRefusal(f"the job lists {named}, not a member of this consortium; "
                                "this bank refuses it")
        if me not in listed:
            raise PolicyRefusal(f"the job does not list this bank ({me!r}); it refuses it")
        if len(listed) < 2:
            raise PolicyRefusal("a job needs at least two banks; this bank refuses it")
        if len(listed) < MIN_BANKS and not (spec.allow_two_banks and self.allow_two_banks):
            who = ("this bank does not allow two-bank jobs (bank join --allow-two-banks)"
                   if spec.allow_two_banks else "the job does not set allow_two_banks")
            raise PolicyRefusal(f"the job has only two banks and {who}: each could deduce the "
                                "other's contribution")

    def check(self, spec: JobSpec) -> None:
        """Raise :class:`PolicyRefusal` if this bank must not take part in ``spec``.

        Raises :class:`ConfigError` for parameters the kind's schema refuses.
        """
        try:
            kind = self.kinds.get(spec.kind)
        except ConfigError as exc:
            raise PolicyRefusal(f"this bank refuses {exc}") from exc
        if not kind.releases:
            raise PolicyRefusal(f"job kind {spec.kind!r} declares nothing it releases; this bank "
                                "refuses kinds that do not say what they release and to whom")
        params = kind.validate(spec.params)
        for release in kind.releases:
            self._check_release_floor(kind, release.floor, release.consortium_rows, params)
        if kind.scored_model is not None:
            digest = model_digest(str(params.get(kind.scored_model) or ""))
            if digest not in self.approved_models:
                raise PolicyRefusal(
                    f"model {digest[:16]} was not trained by this consortium with this bank "
                    "nor approved by it (bank join --approve-model FILE)"
                )

    def _check_release_floor(self, kind: JobKind, floor: str | None, consortium_rows: bool,
                             params: Mapping[str, Any]) -> None:
        if floor is not None:
            asked = params[floor]
            if asked < self.privacy_floor:
                raise PolicyRefusal(
                    f"{kind.name} job asks for {floor} = {asked}, below this bank's privacy "
                    f"floor of {self.privacy_floor} rows"
                )
        if consortium_rows and kind.check_proposal is None:
            raise PolicyRefusal(f"job kind {kind.name!r} releases consortium-wide figures but "
                                "declares no check of their rows against this bank's floor")

    def record_result(self, artifacts: Mapping[str, bytes]) -> None:
        """Remember a finished job's model as one this bank may evaluate later."""
        model = artifacts.get("model.json")
        if model is None:
            return
        digest = model_digest(model)
        if digest in self.approved_models:
            return
        self.approved_models.add(digest)
        if self.registry is None:
            return
        recorded = sorted(self._recorded() | {digest})
        atomic_write_text(self.registry, json.dumps({"sha256": recorded}, indent=2) + "\n")

    def _recorded(self) -> set[str]:
        if self.registry is None or not self.registry.exists():
            return set()
        try:
            data: Any = json.loads(self.registry.read_text())
            return {str(d) for d in data["sha256"]}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{self.registry} is unreadable: {exc}") from exc
