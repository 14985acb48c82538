"""The model an ``evaluate`` job scores, carried inside the job's parameters.

The operator's job file names a model file (``[params] model = "out/model.json"``, relative to
the job file). ``fedtab run`` reads it (:func:`embed_model`) and submits its JSON text as
``model_json`` together with its file name and SHA-256, so every bank scores byte-identical
models without any file exchange. The whole job spec travels in one gRPC message (8 MiB limit,
:mod:`fedtab.transport.options`), so a spec above :data:`MAX_SPEC_BYTES` as submitted (JSON
escaping included) is refused; a 100-tree XGBoost JSON is 0.5-3 MB.

Threat model: a job file may come from someone other than the operator who runs it. Whatever
it names is sent to every bank and kept in the aggregator's state, so only a *model* may ride
along: the file must lie in the job file's folder or below (symlinks resolved; absolute paths
and ``..`` refused), and it must load as a fedtab model (logreg JSON, or XGBoost JSON with
fedtab's ``fedtab_contract``) trained under the consortium's data contract. Nothing is read
before the path is checked, and no error quotes the file's content.

Banks load the text with :func:`load_model_text` (logreg or XGBoost JSON, through
:mod:`fedtab.scoring`, so the same checks as ``fedtab evaluate`` apply) and check its contract
before scoring; the aggregator checks its size and shape
(:meth:`fedtab.jobs.JobKind.check_scored_model`).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

from fedtab import scoring
from fedtab.data.contract import DataContract
from fedtab.errors import ConfigError, DataContractError
from fedtab.jobs import JobSpec
from fedtab.protocol.steps import canonical_json
from fedtab.scoring import ScoringModel

MAX_SPEC_BYTES = 7 << 20  # the submitted spec's JSON; gRPC messages are limited to 8 MiB
MODEL_KEYS = ("model_json", "model_name", "model_sha256")


def embed_model(spec: JobSpec, job_file: Path, contract: DataContract | None = None) -> JobSpec:
    """``spec`` with ``[params] model`` (a path, relative to ``job_file``) replaced by the
    model's JSON text (``model_json``), file name and SHA-256.

    The file must be in the job file's folder or below and load as a model; with the
    consortium's ``contract``, the model must have been trained under it. A spec that already
    carries ``model_json`` is returned unchanged (its model checked against ``contract``).

    Raises:
        ConfigError: no ``model`` parameter, a path outside the job file's folder, a file that
            cannot be read, is not UTF-8 text or not a model fedtab can score, a model under
            another contract, or a spec with the model above :data:`MAX_SPEC_BYTES`.
    """
    params = dict(spec.params)
    if "model_json" in params and "model" not in params:
        text, name = params["model_json"], params.get("model_name") or "model.json"
        if contract is not None and isinstance(text, str) and isinstance(name, str):
            check_model(text, name, contract)
        return spec
    path = model_path(params.pop("model", None), job_file)
    data = _read_limited(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"model file {path} is not UTF-8 JSON text") from exc
    params.update(
        model_json=text,
        model_name=path.name,
        model_sha256=hashlib.sha256(data).hexdigest(),
    )
    embedded = replace(spec, params=params)
    size = len(canonical_json(embedded.to_dict()))
    if size > MAX_SPEC_BYTES:
        raise _too_large(path, size)
    check_model(text, path.name, contract)
    return embedded


def model_path(raw: object, job_file: Path) -> Path:
    """The model file ``raw`` names, resolved, inside the job file's folder or below.

    Raises ConfigError for a missing name, an absolute path, a ``..`` component, a path whose
    symlinks lead out of the folder, or a file that does not exist or is not a regular file.
    """
    if not isinstance(raw, str) or not raw:
        raise ConfigError('an evaluate job needs [params] model = "path/to/model.json"')
    given = Path(raw)
    if given.is_absolute() or raw.startswith("~") or ".." in given.parts:
        raise ConfigError(f"model file {raw!r} refused: name a file in the job file's folder "
                          "or below (no absolute path, no '..')")
    folder = Path(job_file).resolve().parent
    try:
        path = (folder / given).resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        reason = getattr(exc, "strerror", None) or "symlink loop"
        raise ConfigError(f"cannot read model file {folder / given}: {reason}") from exc
    if not path.is_relative_to(folder):
        raise ConfigError(f"model file {raw!r} refused: it leads out of the job file's folder "
                          f"{folder} (through a symlink)")
    if not path.is_file():
        raise ConfigError(f"model file {path} is not a regular file")
    return path


def check_model(text: str, name: str, contract: DataContract | None = None) -> ScoringModel:
    """Load ``text`` as a model fedtab can score and, given ``contract``, check the model was
    trained under it. Raises ConfigError (one line, naming ``name``, quoting no content)."""
    try:
        model = load_model_text(text, name)
    except DataContractError as exc:
        raise ConfigError(str(exc)) from exc
    if contract is not None and model.contract.to_dict() != contract.to_dict():
        raise ConfigError(f"the model {name} was trained under another data contract than "
                          "this consortium's")
    return model


def _read_limited(path: Path) -> bytes:
    """At most ``MAX_SPEC_BYTES`` bytes of ``path``; raises ConfigError when there are more."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read model file {path}: {exc.strerror}") from exc
    if len(data) > MAX_SPEC_BYTES:
        raise _too_large(path, path.stat().st_size)
    return data


def _too_large(path: Path, size: int) -> ConfigError:
    return ConfigError(
        f"model file {path} makes a {size}-byte job spec; an evaluate job carries the model in "
        f"its spec, limited to {MAX_SPEC_BYTES} bytes"
    )


def load_model_text(text: str, name: str = "model.json") -> ScoringModel:
    """Load the job's model from its text (see :func:`fedtab.scoring.load_model_text`); errors
    call it "the job's model NAME"."""
    safe = Path(name).name or "model.json"
    return scoring.load_model_text(text, safe, shown_as=f"the job's model {safe}")
