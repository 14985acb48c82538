"""Layering: what each process loads, and which package may import which.

- The aggregator never holds a private key, so no aggregator module may load decryption code:
  every module of the ``aggregator`` package is imported in a fresh interpreter and
  ``sys.modules`` is checked (with a positive control: the bank's agent does load it).
- Errors, crypto, data and the trainers do not depend on gRPC (the gRPC status of an error is
  mapped at the edge, in :mod:`fedtab.transport.status`).
- Dependencies flow one way: ``bank_node`` and ``aggregator`` import ``fedtab``; ``fedtab``
  imports neither (except the CLI composition root ``fedtab/cli/main.py``, lazily); the two
  never import each other; and the packages (``fedtab.<subpackage>``, ``bank_node``,
  ``aggregator``) import each other without cycles. The import graph is read from the source
  with :mod:`ast`, so imports inside functions count as well.
"""

from __future__ import annotations

import ast
import itertools
import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("fedtab", "bank_node", "aggregator")
APPLICATIONS = ("bank_node", "aggregator")
COMPOSITION_ROOT = "fedtab.cli.main"
ROOT_MAY_LOAD = {"bank_node.cli", "aggregator.cli"}
# Modules that hold private-key arithmetic: decryption, and CRT encryption with the factors.
DECRYPTION_MODULES = {"fedtab.crypto.decryptor", "fedtab.crypto.crt"}
GENERATED = "generated"

# ---------------------------------------------------------------------------------------------
# What a fresh interpreter loads

_PROBE = """
import importlib, json, pkgutil, sys
for name in sys.argv[1:]:
    if name.endswith(".*"):
        package = importlib.import_module(name[:-2])
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(info.name)
    else:
        importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
"""


def modules_loaded_by(*names: str) -> set[str]:
    """``sys.modules`` of a fresh interpreter after importing ``names`` (``pkg.*``: every
    module of ``pkg``, found with :mod:`pkgutil`)."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *names],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout))


def test_no_aggregator_module_loads_decryption_code() -> None:
    loaded = modules_loaded_by("aggregator.*")
    aggregator_modules = {m for m in loaded if m.split(".")[0] == "aggregator"}
    assert {"aggregator.service", "aggregator.cli", "aggregator.coordinator"} <= aggregator_modules
    assert "fedtab.crypto" in loaded  # the public-key half is there...
    assert not loaded & DECRYPTION_MODULES  # ...the private-key half is not


def test_decryption_check_detects_a_key_holder() -> None:
    """Positive control: the same check sees the decryption code the bank's agent loads."""
    assert DECRYPTION_MODULES & modules_loaded_by("bank_node.agent")
    assert modules_loaded_by("fedtab.crypto.decryptor") >= DECRYPTION_MODULES


def test_public_crypto_package_loads_no_decryption_code() -> None:
    loaded = modules_loaded_by("fedtab.crypto")
    assert "fedtab.crypto.encryptor" in loaded
    assert not loaded & DECRYPTION_MODULES


def test_library_core_loads_without_grpc() -> None:
    loaded = modules_loaded_by(
        "fedtab.errors", "fedtab.crypto.*", "fedtab.data.*", "fedtab.gbdt.*", "fedtab.logreg.*",
        "fedtab.profiling",
    )
    assert "fedtab.gbdt.trainer" in loaded and "fedtab.crypto.decryptor" in loaded
    assert not {m for m in loaded if m == "grpc" or m.startswith("grpc.")}
    assert "fedtab.transport.status" not in loaded


def test_grpc_check_detects_the_transport() -> None:
    """Positive control: the transport edge does load gRPC."""
    assert "grpc" in modules_loaded_by("fedtab.transport.status")


def test_the_grpc_edge_maps_every_error_there_and_back() -> None:
    """Each error class has its status at the edge, and a client rebuilds the same class."""
    import grpc

    from bank_node.policy import PolicyRefusal
    from fedtab import errors
    from fedtab.transport.status import (
        STATUS_OF_ERROR,
        UNREACHABLE,
        error_from_status,
        status_of,
    )

    classes = {c for c in vars(errors).values()
               if isinstance(c, type) and issubclass(c, errors.FedtabError)}
    assert classes == set(STATUS_OF_ERROR)
    for cls in classes:
        error = cls("went  wrong")
        rebuilt = error_from_status(status_of(error), error.one_line(), "127.0.0.1:9")
        if status_of(error) in UNREACHABLE:
            assert isinstance(rebuilt, errors.PeerUnavailableError)
        else:
            assert type(rebuilt) is cls and str(rebuilt) == "went wrong"
    assert status_of(errors.ReplayError()) == grpc.StatusCode.ALREADY_EXISTS
    # A subclass defined elsewhere answers with its base class's status, and comes back as
    # the class its status stands for.
    refusal = PolicyRefusal("floor not met")
    assert status_of(refusal) == grpc.StatusCode.FAILED_PRECONDITION
    rebuilt = error_from_status(status_of(refusal), refusal.one_line(), "127.0.0.1:9")
    assert type(rebuilt) is errors.ProtocolError and str(rebuilt) == "floor not met"


# ---------------------------------------------------------------------------------------------
# The import graph, from the source


@dataclass(frozen=True)
class Import:
    """One import of ``target`` by ``source`` at ``line``.

    ``lazy``: made inside a function or by name; ``by_name``: a string naming the module
    (``importlib.import_module("pkg.mod")``, a ``"pkg.mod:attr"`` registry entry).
    """

    source: str
    target: str
    lazy: bool
    line: int
    by_name: bool = False


def _module_name(path: Path, root: Path) -> str:
    name = ".".join(path.relative_to(root).with_suffix("").parts)
    return name.removesuffix(".__init__")


def layer_of(module: str) -> str:
    """The package a module belongs to: ``fedtab.<subpackage or module>``, ``bank_node``,
    ``aggregator``, or the CLI composition root on its own."""
    if module == COMPOSITION_ROOT:
        return module
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "fedtab" and len(parts) > 1 else parts[0]


def _named_module(value: str, known: set[str]) -> str | None:
    """The module a string names for a lazy import ("pkg.mod" or "pkg.mod:attr"), if any."""
    match = re.fullmatch(r"(\w+(?:\.\w+)+)(?::\w+)?", value)
    if match is None or match.group(1) not in known:
        return None
    return match.group(1)


def _imports_in(tree: ast.AST, source: str, known: set[str]) -> Iterator[Import]:
    def walk(node: ast.AST, lazy: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            line = getattr(child, "lineno", 0)
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(source, alias.name, inner, line)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                yield Import(source, child.module, inner, line)
                for alias in child.names:  # `from pkg import module`
                    if f"{child.module}.{alias.name}" in known:
                        yield Import(source, f"{child.module}.{alias.name}", inner, line)
            elif isinstance(child, ast.Constant) and isinstance(child.value, str):
                named = _named_module(child.value, known)
                if named is not None:  # importlib.import_module("pkg.mod"), "pkg.mod:attr"
                    yield Import(source, named, True, line, by_name=True)
            yield from walk(child, inner)

    yield from walk(tree, False)


def collect_imports(root: Path, packages: tuple[str, ...]) -> list[Import]:
    """Every import between ``packages`` under ``root`` (generated code left out)."""
    paths = {
        _module_name(path, root): path
        for package in packages
        for path in sorted((root / package).rglob("*.py"))
        if GENERATED not in path.parts
    }
    known = set(paths)
    found: list[Import] = []
    for module, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for imp in _imports_in(tree, module, known):
            if imp.target.split(".")[0] in packages:
                found.append(imp)
    return found


def package_graph(imports: list[Import]) -> dict[str, dict[str, list[Import]]]:
    """Package -> imported package -> the imports responsible (the composition root left
    out: it sits above every package)."""
    graph: dict[str, dict[str, list[Import]]] = {}
    for imp in imports:
        source, target = layer_of(imp.source), layer_of(imp.target)
        if source != target and source != COMPOSITION_ROOT:
            graph.setdefault(source, {}).setdefault(target, []).append(imp)
    return graph


def find_cycle(graph: dict[str, dict[str, list[Import]]]) -> list[str]:
    """One cycle of packages (first package repeated at the end), or [] if there is none."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        path.pop()
        return []

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return []


def statement_imports(imports: list[Import]) -> list[Import]:
    """The imports made by import statements (module level or in functions), not by name: a
    registry naming a module is resolved at run time and is no layering edge."""
    return [imp for imp in imports if not imp.by_name]


def layering_violations(imports: list[Import]) -> list[str]:
    """Imports that break the one-way rule, as "source:line -> target" lines."""
    bad: list[str] = []
    for imp in imports:
        source, target = imp.source.split(".")[0], imp.target.split(".")[0]
        where = f"{imp.source}:{imp.line} -> {imp.target}"
        if source == "fedtab" and target in APPLICATIONS:
            allowed = imp.source == COMPOSITION_ROOT and imp.lazy and imp.target in ROOT_MAY_LOAD
            if not allowed:
                bad.append(where)
        elif source in APPLICATIONS and target in APPLICATIONS and source != target:
            bad.append(where)
    return bad


def describe(cycle: list[str], graph: dict[str, dict[str, list[Import]]]) -> str:
    steps = []
    for source, target in itertools.pairwise(cycle):
        culprits = sorted({f"{i.source}:{i.line}" for i in graph[source][target]})
        steps.append(f"{source} -> {target} ({', '.join(culprits)})")
    return "; ".join(steps)


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return collect_imports(ROOT, PACKAGES)


def test_packages_import_each_other_without_cycles(imports: list[Import]) -> None:
    graph = package_graph(statement_imports(imports))
    assert {"fedtab.crypto", "fedtab.transport", "bank_node", "aggregator"} <= set(graph)
    cycle = find_cycle(graph)
    assert not cycle, describe(cycle, graph)


def test_dependencies_flow_one_way(imports: list[Import]) -> None:
    assert layering_violations(imports) == []
    # The composition root does load both applications (so the rule above is not vacuous).
    root_loads = {i.target for i in imports if i.source == COMPOSITION_ROOT}
    assert root_loads >= ROOT_MAY_LOAD


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_the_graph_checks_detect_cycles_and_wrong_way_imports(tmp_path: Path) -> None:
    """Positive control on a made-up tree: a cycle through a function-level import, fedtab
    importing an application, the applications importing each other."""
    _write(tmp_path, {
        "fedtab/__init__.py": "",
        "fedtab/cli/__init__.py": "",
        "fedtab/cli/main.py": 'COMMANDS = {"bank": "bank_node.cli:bank"}\n',
        "fedtab/a/__init__.py": "from fedtab.b import thing\n",
        "fedtab/b/__init__.py": "def thing():\n    from fedtab.a import other\n",
        "fedtab/c.py": "import aggregator.service\n",
        "bank_node/__init__.py": "",
        "bank_node/cli.py": "from fedtab.cli import main\n",
        "aggregator/__init__.py": "",
        "aggregator/service.py": "def f():\n    from bank_node import cli\n",
    })
    found = collect_imports(tmp_path, PACKAGES)
    graph = package_graph(statement_imports(found))
    assert find_cycle(graph) in (
        ["fedtab.a", "fedtab.b", "fedtab.a"], ["fedtab.b", "fedtab.a", "fedtab.b"]
    )
    assert sorted(layering_violations(found)) == [
        "aggregator.service:2 -> bank_node",
        "aggregator.service:2 -> bank_node.cli",
        "fedtab.c:1 -> aggregator.service",
    ]
