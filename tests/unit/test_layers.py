"""The layering holds: remediator/engine/ never imports the web side, the product path never imports the lab or the
evals, the folders stand on floors and import only downward, no import cycles, no module past ~400 lines. Read
from the source (every import, lazy ones too) and proven at run time (what importing the engine really loads)."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

from remediator.engine import PROJECT_ROOT

pytestmark = pytest.mark.unit
WEB = ("fastapi", "starlette", "uvicorn", "remediator.api")
OFF_PRODUCT_PATH = ("remediator.engine.lab", "remediator.engine.evals")
MAY_USE_THE_LAB = ("remediator.engine.cli", "remediator.engine.lab", "remediator.engine.evals")
MAX_LINES = 400
#: The floors of remediator/, lowest first: a folder (or a module at engine/'s root) imports only from its own floor
#: and the floors below it. docs/engine.md draws the same.
FLOORS = [
    {"errors", "logs", "model"},                    # the vocabulary
    {"settings", "catalog"},                        # what the operator configures: settings, catalog, inventory
    {"store", "run"},                               # the store (and the one writer of incident states); Ansible
    {"outbound", "people"},                         # telling people; who people are and what they approve
    {"decide"},                                     # plan, judge, the breaker
    {"intake"},                                     # alerts in
    {"pipeline", "parts", "housekeeper", "evals", "lab", "config_tree"},
    {"service"},                                    # the running engine
    {"cli"},
    {"api"},                                        # the web side, on top of everything
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, Path]:
    return {_module_name(p): p for top in ("engine", "api") for p in (PROJECT_ROOT / "remediator" / top).rglob("*.py")
            if "migrations" not in p.parts}


def _type_checking_only(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module `name` imports (at any depth of the file), resolved to a module of ours where it is one."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_only(tree)
    out: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", 0) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                out.add(full if full in known else node.module)
    return out


GRAPH = {name: _imports(name, path, set(_sources())) for name, path in _sources().items()}


def _is(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_engine_never_imports_the_web_side():
    bad = {m: sorted(i for i in deps if _is(i, WEB)) for m, deps in GRAPH.items() if _is(m, ("remediator.engine",))}
    assert {m: d for m, d in bad.items() if d} == {}


def test_the_product_path_never_imports_the_lab_or_the_evals():
    bad = {m: sorted(i for i in deps if _is(i, OFF_PRODUCT_PATH)) for m, deps in GRAPH.items()
           if not _is(m, MAY_USE_THE_LAB)}
    assert {m: d for m, d in bad.items() if d} == {}
    assert not any(_is(i, ("remediator.engine.lab",)) for m, deps in GRAPH.items() if _is(m, ("remediator.engine.evals",)) for i in deps)


def _folder(module: str) -> str:
    """'remediator.engine.decide.policy' -> 'decide'; 'remediator.engine.service' -> 'service'; the API -> 'api'."""
    parts = module.split(".")
    return "api" if parts[1] == "api" else parts[2] if len(parts) > 2 else "engine"


def test_folders_import_only_downward():
    floor = {folder: n for n, folders in enumerate(FLOORS) for folder in folders}
    folders = {_folder(m) for m in GRAPH} - {"engine"}
    assert folders <= set(floor), f"folders on no floor (add them to FLOORS): {sorted(folders - set(floor))}"
    upward = sorted(f"{m} -> {d}" for m, deps in GRAPH.items() for d in deps
                    if d in GRAPH and _folder(m) != "engine" and _folder(d) != "engine" and floor[_folder(d)] > floor[_folder(m)])
    assert upward == []
    edges = {(_folder(m), _folder(d)) for m, deps in GRAPH.items() for d in deps if d in GRAPH} - {("engine", "engine")}
    both_ways = sorted(f"{a} <-> {b}" for a, b in edges if a < b and (b, a) in edges and "engine" not in (a, b))
    assert both_ways == []


def test_no_import_cycles():
    ours = {m: {d for d in deps if d in GRAPH and d != m} for m, deps in GRAPH.items()}
    # a package's __init__ importing nothing of its own is not a cycle with its children
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in ours[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                cycles.append(sorted(scc))

    sys.setrecursionlimit(10_000)
    for v in ours:
        if v not in index:
            visit(v)
    assert cycles == []


def test_no_module_past_the_size_a_newcomer_reads_at_once():
    long = {m: n for m, p in _sources().items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_importing_the_engine_loads_no_web_framework_and_no_lab():
    """At run time: the engine, its pipeline and its CLI load none of FastAPI, uvicorn, api, the lab's drills or
    the evals until a command asks for them."""
    unwanted = ("remediator.api", "remediator.engine.evals", "remediator.engine.lab.drills", "remediator.engine.lab.monitoring")
    probe = ("import sys, remediator.engine.service, remediator.engine.cli.main, remediator.engine.pipeline.worker\n"
             "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'starlette', 'uvicorn')"
             f" or m.startswith({unwanted!r}))))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=PROJECT_ROOT)
    assert out.stdout.strip() == ""
