"""What this bank agrees to compute: its own privacy floor and the models it will score.

Threat model: job specs come from the operator through the aggregator, both honest-but-curious
parties. A bank therefore does not take a job's privacy parameters on trust:

* **Privacy floor.** Every statistic a job releases about a part of the data (a tree node, a
  holdout) must cover at least ``privacy_floor`` rows. A job asking for less
  (``min_child_samples`` of ``gbdt``, ``min_rows`` of ``evaluate``) is refused by this bank
  before it computes anything; without such a floor an operator could train one-row leaves.
* **Evaluated models.** Scoring an arbitrary model on the holdout and releasing metrics is a
  query interface: a crafted one-split model reveals single customers' labels through the Brier
  score. This bank scores only models it helped train (their digests are recorded in its
  folder when a job finishes) or that its own operator approved (``bank join --approve-model``).

Refusals name the parameter or the model digest, never this bank's data.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedtab.atomic import atomic_write_text
from fedtab.errors import ConfigError, PrivacyError
from fedtab.jobs import JobSpec

DEFAULT_PRIVACY_FLOOR = 50
TRAINED_MODELS_FILE = "trained_models.json"
# Job kind -> (parameter holding its per-node / per-holdout row floor, the trainer's default).
FLOOR_PARAMETERS: dict[str, tuple[str, int]] = {
    "gbdt": ("min_child_samples", 50),
    "evaluate": ("min_rows", 50),
}


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

    def __post_init__(self) -> None:
        if self.privacy_floor < 1:
            raise ConfigError(f"privacy floor must be at least 1 row, got {self.privacy_floor}")
        self.approved_models |= self._recorded()

    @classmethod
    def for_bundle(
        cls, bundle_dir: Path, privacy_floor: int, approve: Iterable[Path] = ()
    ) -> BankPolicy:
        """The policy of the bank whose folder is ``bundle_dir``; ``approve``: model files."""
        approved = set()
        for path in approve:
            try:
                approved.add(model_digest(Path(path).read_bytes()))
            except OSError as exc:
                raise ConfigError(f"cannot read approved model {path}: {exc.strerror}") from exc
        return cls(privacy_floor, approved, Path(bundle_dir) / TRAINED_MODELS_FILE)

    def check(self, spec: JobSpec) -> None:
        """Raise :class:`PolicyRefusal` if this bank must not take part in ``spec``."""
        floor_param = FLOOR_PARAMETERS.get(spec.kind)
        if floor_param is not None:
            name, default = floor_param
            asked = spec.params.get(name, default)
            if not isinstance(asked, int) or isinstance(asked, bool):
                raise ConfigError(f"{spec.kind} parameter {name} must be an integer, got {asked!r}")
            if asked < self.privacy_floor:
                raise PolicyRefusal(
                    f"{spec.kind} job asks for {name} = {asked}, below this bank's privacy "
                    f"floor of {self.privacy_floor} rows"
                )
        if spec.kind == "evaluate":
            digest = model_digest(str(spec.params.get("model_json", "")))
            if digest not in self.approved_models:
                raise PolicyRefusal(
                    f"model {digest[:16]} was not trained by this consortium with this bank "
                    "nor approved by it (bank join --approve-model FILE)"
                )

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
