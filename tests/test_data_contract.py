"""DataContract: save/load round trip, atomic writes, sanity checks, and its JSON Schema.

`jsonschema` is not a dependency, so a small validator for exactly the keywords
`schemas/data_contract.schema.json` uses lives here; a test fails if the schema starts using a
keyword this validator does not implement (so nothing is silently ignored).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from fedtab.atomic import atomic_write_text
from fedtab.data.contract import DataContract, FeatureSpec
from fedtab.data.infer import infer_contract
from fedtab.errors import DataContractError

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "data_contract.schema.json"
SUPPORTED = {
    "$schema", "$id", "$ref", "$defs", "title", "description", "type", "const", "enum",
    "required", "properties", "additionalProperties", "items", "minItems", "uniqueItems",
    "minLength", "oneOf",
}  # fmt: skip
_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, Mapping),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
}


def schema_errors(
    value: Any, schema: Mapping[str, Any], root: Mapping[str, Any], at: str = "$"
) -> list[str]:
    """Violations of ``schema`` by ``value`` (empty list: valid), for the keywords in SUPPORTED."""
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        return schema_errors(value, target, root, at)
    errors: list[str] = []
    if "type" in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[k](value) for k in kinds):
            return [f"{at}: {value!r} is not of type {kinds}"]
    if "const" in schema and value != schema["const"]:
        errors.append(f"{at}: {value!r} != {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{at}: {value!r} not in {schema['enum']!r}")
    if isinstance(value, str) and len(value) < schema.get("minLength", 0):
        errors.append(f"{at}: string too short")
    if isinstance(value, Mapping):
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{at}: missing {key!r}")
        properties = schema.get("properties", {})
        for key, item in value.items():
            if key in properties:
                errors += schema_errors(item, properties[key], root, f"{at}.{key}")
            elif schema.get("additionalProperties", True) is False:
                errors.append(f"{at}: unexpected property {key!r}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{at}: fewer than {schema['minItems']} items")
        if schema.get("uniqueItems") and len({json.dumps(v) for v in value}) != len(value):
            errors.append(f"{at}: items repeat")
        if "items" in schema:
            for i, item in enumerate(value):
                errors += schema_errors(item, schema["items"], root, f"{at}[{i}]")
    if "oneOf" in schema:
        passing = [s for s in schema["oneOf"] if not schema_errors(value, s, root, at)]
        if len(passing) != 1:
            errors.append(f"{at}: matches {len(passing)} of the oneOf schemas, not exactly one")
    return errors


def keywords(node: Any, inside_properties: bool = False) -> set[str]:
    """Every keyword used anywhere in a schema (property names and $defs names excluded)."""
    found: set[str] = set()
    if isinstance(node, Mapping):
        for key, item in node.items():
            if not inside_properties:
                found.add(key)
            found |= keywords(
                item, inside_properties=key in ("properties", "$defs") and not inside_properties
            )
    elif isinstance(node, list):
        for item in node:
            found |= keywords(item)
    return found


@pytest.fixture(scope="module")
def json_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


def sample_contract() -> DataContract:
    return DataContract(
        features=(
            FeatureSpec("amount", "numeric", lower=-1.5, upper=2.5e4, nullable=False),
            FeatureSpec("channel", "categorical", categories=("atm", "pos", "web")),
            FeatureSpec("open", "numeric"),
        ),
        label="fraud",
        id_column="txn",
    )


def test_schema_uses_only_implemented_keywords(json_schema: dict[str, Any]) -> None:
    assert json_schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert keywords(json_schema) <= SUPPORTED, keywords(json_schema) - SUPPORTED


def test_save_load_round_trip(tmp_path: Path, json_schema: dict[str, Any]) -> None:
    contract = sample_contract()
    path = tmp_path / "c.json"
    contract.save(path)
    assert DataContract.load(path) == contract
    assert schema_errors(json.loads(path.read_text()), json_schema, json_schema) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json"]


def test_inferred_contract_validates_against_schema(json_schema: dict[str, Any]) -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "id": np.arange(200),
            "x": rng.normal(size=200),
            "flag": rng.choice([True, False], 200),
            "city": rng.choice(np.array(["a", "b", None], dtype=object), 200),
            "y": rng.integers(0, 2, 200),
        }
    )
    document = infer_contract(frame, "y", "id").to_dict()
    assert schema_errors(document, json_schema, json_schema) == []
    assert DataContract.from_dict(document).to_dict() == document


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda d: d.pop("label"), "missing 'label'"),
        (lambda d: d.update(fedtab_contract_version=2), "!= 1"),
        (lambda d: d.update(extra=1), "unexpected property 'extra'"),
        (lambda d: d.update(features=[]), "fewer than 1 items"),
        (lambda d: d["features"][0].update(kind="text"), "oneOf"),
        (lambda d: d["features"][0].update(lower="0"), "oneOf"),
        (lambda d: d["features"][1].update(categories=["a", "a"]), "oneOf"),
        (lambda d: d["features"][1].pop("categories"), "oneOf"),
        (lambda d: d.update(id_column=3), "not of type"),
    ],
)
def test_schema_rejects_broken_documents(
    json_schema: dict[str, Any], mutate: Any, fragment: str
) -> None:
    document = sample_contract().to_dict()
    mutate(document)
    errors = schema_errors(document, json_schema, json_schema)
    assert errors and any(fragment in e for e in errors), errors


@pytest.mark.parametrize(
    "build, fragment",
    [
        (lambda: FeatureSpec("a", "numeric", lower=2.0, upper=1.0), "above upper"),
        (lambda: FeatureSpec("a", "numeric", lower=-math.inf, upper=1.0), "not finite"),
        (lambda: FeatureSpec("a", "categorical"), "without categories"),
        (lambda: FeatureSpec("a", "categorical", categories=("x", "x")), "repeat"),
        (lambda: FeatureSpec("", "numeric"), "empty name"),
        (lambda: FeatureSpec("a", "ordinal"), "unknown kind"),  # type: ignore[arg-type]
        (lambda: DataContract(features=(), label="y"), "no features"),
        (lambda: DataContract((FeatureSpec("a", "numeric"),) * 2, label="y"), "appears twice"),
        (lambda: DataContract((FeatureSpec("y", "numeric"),), label="y"), "label column 'y'"),
        (lambda: DataContract((FeatureSpec("a", "numeric"),), "y", id_column="a"), "id column"),
        (lambda: DataContract((FeatureSpec("a", "numeric"),), "y", id_column="y"), "both"),
    ],
)
def test_impossible_contracts_are_rejected(build: Any, fragment: str) -> None:
    with pytest.raises(DataContractError, match=fragment):
        build()


def test_categories_are_normalised_to_text() -> None:
    spec = FeatureSpec("a", "categorical", categories=[1, 2])  # type: ignore[arg-type]
    assert spec.categories == ("1", "2")


def test_required_columns_order() -> None:
    assert sample_contract().required_columns == ["amount", "channel", "open", "fraud", "txn"]


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text("old")
    atomic_write_text(path, "new\n")
    assert path.read_text() == "new\n"
    assert [p.name for p in tmp_path.iterdir()] == ["c.json"]


def test_save_where_folder_cannot_exist_is_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("not a folder")
    with pytest.raises(DataContractError, match="cannot write"):
        sample_contract().save(tmp_path / "a_file" / "c.json")


def test_load_rejects_non_object_document(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text("[1, 2]")
    with pytest.raises(DataContractError, match="malformed data contract"):
        DataContract.load(path)
