"""The model an ``evaluate`` job scores, carried inside the job's parameters.

The operator's job file names a model file (``[params] model = "out/model.json"``, relative to
the job file). ``fedtab run`` reads it (:func:`embed_model`) and submits its JSON text as
``model_json`` together with its file name and SHA-256, so every bank scores byte-identical
models without any file exchange. The whole job spec travels in one gRPC message (8 MiB limit,
:mod:`fedtab.transport.options`), so a spec above :data:`MAX_SPEC_BYTES` as submitted (JSON
escaping included) is refused; a 100-tree XGBoost JSON is 0.5-3 MB.

Banks load the text with :func:`load_model_text` (logreg or XGBoost JSON, through
:mod:`fedtab.scoring`, so the same checks as ``fedtab evaluate`` apply).
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import replace
from pathlib import Path

from fedtab.errors import ConfigError, FedtabError
from fedtab.jobs import JobSpec
from fedtab.protocol.steps import canonical_json
from fedtab.scoring import ScoringModel, load_model

MAX_SPEC_BYTES = 7 << 20  # the submitted spec's JSON; gRPC messages are limited to 8 MiB
MODEL_KEYS = ("model_json", "model_name", "model_sha256")


def embed_model(spec: JobSpec, job_file: Path) -> JobSpec:
    """``spec`` with ``[params] model`` (a path, relative to ``job_file``) replaced by the
    model's JSON text (``model_json``), file name and SHA-256.

    A spec that already carries ``model_json`` is returned unchanged.

    Raises:
        ConfigError: no ``model`` parameter, the file cannot be read or is not UTF-8 text, or
            the spec with the model would exceed :data:`MAX_SPEC_BYTES`.
    """
    params = dict(spec.params)
    if "model_json" in params and "model" not in params:
        return spec
    raw = params.pop("model", None)
    if not isinstance(raw, str) or not raw:
        raise ConfigError('an evaluate job needs [params] model = "path/to/model.json"')
    path = Path(raw)
    if not path.is_absolute():
        path = Path(job_file).resolve().parent / path
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read model file {path}: {exc.strerror}") from exc
    if len(data) > MAX_SPEC_BYTES:
        raise _too_large(path, len(data))
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
    return embedded


def _too_large(path: Path, size: int) -> ConfigError:
    return ConfigError(
        f"model file {path} makes a {size}-byte job spec; an evaluate job carries the model in "
        f"its spec, limited to {MAX_SPEC_BYTES} bytes"
    )


def load_model_text(text: str, name: str = "model.json") -> ScoringModel:
    """Load a logreg or XGBoost JSON model from its text (see :func:`fedtab.scoring.load_model`).

    Raises:
        ConfigError: not a model fedtab can score (message names ``name``, not a temp file).
        DataContractError: its embedded contract is malformed.
    """
    safe = Path(name).name or "model.json"
    with tempfile.TemporaryDirectory(prefix="fedtab-eval-") as folder:
        path = Path(folder) / safe
        path.write_text(text, encoding="utf-8")
        try:
            model = load_model(path)
        except FedtabError as exc:
            message = str(exc).replace(str(path), f"the job's model {safe}")
            raise type(exc)(message) from exc
    return replace(model, path=Path(safe))
