"""The package layout is the architecture (issue 26, ARCHITECTURE.md): each room imports only
rooms of its own tier or below, no module imports another module's underscore name, and the
package root holds only the entry points and the runtime settings.

Every import is read with `ast`, wherever it is written: module level, inside a function
(lazy imports), under `if TYPE_CHECKING:`. A relative import is resolved against the file's
own package; `from pkg import name` counts as an import of `pkg.name` when that is a module.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import cds_service

PACKAGE = Path(cds_service.__file__).resolve().parent

# Tier of each room (top-level module or package of cds_service). An import may go to the same
# tier or lower, never higher. The spine: logic <- fhir <- evaluation <- cards <- hooks <- sites
# <- smart <- web/cli; runtime (errors, metrics), logging_setup, version and the data files
# sit under everything; config, security and storage under the evaluation.
TIERS = {
    "runtime": 0, "logging_setup": 0, "version": 0, "data": 0,
    "logic": 1,
    "fhir": 2,
    "config": 3, "security": 3, "storage": 3,
    "evaluation": 4,
    "cards": 5,
    "hooks": 6,
    "sites": 7,
    "smart": 8,
    "web": 9, "cli": 9,
}
# Entry points: what servers and the command line name (cds_service.wsgi:app,
# cds_service.asgi:app, python -m cds_service). They may import anything; nothing imports them
# except each other.
ENTRY = {"__init__", "__main__", "wsgi", "asgi"}
# Pairs of rooms that must not import each other although the tiers would allow it.
FORBIDDEN = {
    ("smart", "hooks"),   # the view reads the evaluation (evaluation/), not the hooks
}
# logic/ is pure: it imports nothing of the package but itself.
PURE = {"logic"}
ROOT_MODULES = {"__init__.py", "__main__.py", "config.py", "logging_setup.py", "version.py", "wsgi.py",
                "asgi.py", "granian_logging.json"}


def module_name(path: Path, root: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def room(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def imports(source: str, module: str, is_package: bool, is_module) -> list[tuple[int, str, str | None]]:
    """(line, imported module, imported name or None) for every import of the package in `source`."""
    package = module if is_package else module.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, None) for a in node.names if a.name.split(".")[0] == "cds_service"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "cds_service":
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                out.append((node.lineno, sub, None) if is_module(sub) else (node.lineno, target, a.name))
    return out


def private_attributes(source: str, module: str, is_package: bool, is_module) -> list[tuple[int, str]]:
    """`mod._name` where `mod` is bound by an import of another module of the package."""
    bound = {}
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                if a.asname or isinstance(node, ast.ImportFrom):
                    bound[a.asname or a.name] = a.name
    modules = {name for _, name, attr in imports(source, module, is_package, is_module) if attr is None}
    short = {n for n, full in bound.items() if any(m == full or m.endswith("." + full) for m in modules)}
    return [(n.lineno, f"{n.value.id}.{n.attr}") for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in short
            and n.attr.startswith("_") and not n.attr.startswith("__")]


def violations(sources: dict[str, tuple[str, bool]]) -> list[str]:
    """Every broken rule in `sources` ({module name: (source, is package)})."""
    def is_module(name: str) -> bool:
        return name in sources

    problems = []
    for module, (source, is_package) in sorted(sources.items()):
        mine = room(module)
        if mine not in TIERS and mine not in ENTRY:
            problems.append(f"{module}: room {mine!r} has no tier (add it to TIERS, or put the module in a room)")
            continue
        for line, target, name in imports(source, module, is_package, is_module):
            where = f"{module}:{line}"
            if name and name.startswith("_") and not name.startswith("__") and target != module:
                problems.append(f"{where} imports the private name {name} of {target}")
            theirs = room(target)
            if target == "cds_service" and name and not is_module(f"cds_service.{name}"):
                theirs = "version"  # a package attribute (__version__)
            if mine in ENTRY or theirs == mine:
                continue
            if theirs in ENTRY:
                problems.append(f"{where} imports the entry point {target}")
            elif mine in PURE:
                problems.append(f"{where}: {mine}/ is pure and imports {target}")
            elif theirs not in TIERS:
                problems.append(f"{where} imports {target}, which is in no room")
            elif TIERS[theirs] > TIERS[mine]:
                problems.append(f"{where}: {mine} (tier {TIERS[mine]}) imports {target} ({theirs}, tier {TIERS[theirs]})")
            elif (mine, theirs) in FORBIDDEN:
                problems.append(f"{where}: {mine} must not import {theirs} ({target})")
        for line, text in private_attributes(source, module, is_package, is_module):
            problems.append(f"{module}:{line} reads the private name {text} of another module")
    return problems


def package_sources() -> dict[str, tuple[str, bool]]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name, is_package = module_name(path, PACKAGE)
        out[name] = (path.read_text(encoding="utf-8"), is_package)
    return out


def test_no_module_imports_a_higher_layer_or_a_private_name():
    assert violations(package_sources()) == []


def test_the_package_root_holds_only_entry_points_and_runtime_settings():
    loose = sorted(p.name for p in PACKAGE.iterdir() if p.is_file() and p.name not in ROOT_MODULES
                   and p.suffix in (".py", ".json", ".toml"))
    assert loose == []


# A circle inside one room that is not broken yet (each side imports the other inside a function):
# fhir/orders.py reads a draft's heparin flush with exposure.heparin_flush_kind, which reads the
# medication with orders' helpers. Breaking it means moving the §19.4 flush rule and the medication
# readers into a module below both. Add nothing here.
KNOWN_CIRCLES = {frozenset({"cds_service.fhir.exposure", "cds_service.fhir.orders"})}


def import_circles(sources: dict[str, tuple[str, bool]]) -> list[list[str]]:
    """Every set of modules that import one another, directly or through others (strongly
    connected components of the import graph, lazy and TYPE_CHECKING imports included). Importing
    a package's submodule (`from .. import sites`) counts as importing the submodule only."""
    def is_module(name: str) -> bool:
        return name in sources

    def owner(name: str) -> str | None:
        while name and name not in sources:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in sources}
    for module, (source, is_package) in sources.items():
        for _, target, _name in imports(source, module, is_package, is_module):
            found = owner(target)
            if found and found != module and found != "cds_service":
                graph[module].add(found)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:   # Tarjan; the package has a few hundred modules, recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return circles


def test_no_import_circle_even_inside_a_room():
    circles = [c for c in import_circles(package_sources()) if frozenset(c) not in KNOWN_CIRCLES]
    assert circles == []


def test_the_circle_finder_finds_a_circle_through_a_lazy_import():
    sources = {"cds_service.web.a": ("from .b import x\n", False),
               "cds_service.web.b": ("def f():\n    from .a import y\n", False),
               "cds_service.web.c": ("from .a import x\n", False)}
    assert import_circles(sources) == [["cds_service.web.a", "cds_service.web.b"]]


# -- the checker can fail ---------------------------------------------------------------------------
def _check(**modules: str) -> list[str]:
    sources = {name.replace("__", "."): (src, name.endswith("__init")) for name, src in modules.items()}
    return violations({k.removesuffix(".init"): v for k, v in sources.items()})


@pytest.mark.parametrize("modules, expected", [
    # a lower room importing a higher one, at module level
    ({"cds_service__fhir__x": "from ..hooks import common\n", "cds_service__hooks__common": ""},
     "fhir (tier 2) imports cds_service.hooks.common"),
    # under TYPE_CHECKING: still an import
    ({"cds_service__evaluation__state": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                         "    from ..web.app import AppState\n",
      "cds_service__web__app": ""}, "evaluation (tier 4) imports cds_service.web.app"),
    # inside a function (a lazy import)
    ({"cds_service__cards__build": "def f():\n    from ..smart import views\n", "cds_service__smart__views": ""},
     "cards (tier 5) imports cds_service.smart.views"),
    # an absolute import
    ({"cds_service__logic__x": "import cds_service.fhir.read\n", "cds_service__fhir__read": ""},
     "logic/ is pure and imports cds_service.fhir.read"),
    # another module's underscore name
    ({"cds_service__smart__data": "from ..fhir.observations import _reference_high\n",
      "cds_service__fhir__observations": ""}, "imports the private name _reference_high"),
    ({"cds_service__cli__report": "from ..storage import postgres\npostgres._redact('x')\n",
      "cds_service__storage__postgres": ""}, "reads the private name postgres._redact"),
    # smart/ may not import hooks/ though its tier is higher
    ({"cds_service__smart__data": "from ..hooks.common import evaluate\n", "cds_service__hooks__common": ""},
     "smart must not import hooks"),
    # a loose module at the package root
    ({"cds_service__helpers": "x = 1\n"}, "room 'helpers' has no tier"),
])
def test_the_checker_reports_each_kind_of_bad_import(modules, expected):
    found = _check(**modules)
    assert any(expected in p for p in found), found


def test_the_checker_accepts_imports_down_the_layers():
    assert _check(cds_service__web__app="from ..hooks import build_registry\nfrom ..logic import policy\n",
                  cds_service__hooks__init="from ..cards.build import card\n",
                  cds_service__cards__build="from ..evaluation.pipeline import Evaluation\n",
                  cds_service__evaluation__pipeline="from ..fhir.extract import extract_inputs\n",
                  cds_service__fhir__extract="from ..logic.inputs import PatientInputs\nfrom . import read\n",
                  cds_service__fhir__read="", cds_service__logic__inputs="", cds_service__logic__policy="",
                  cds_service__cards__init="", cds_service__logic__init="") == []
