"""The package's layers, read from the source (every import, at module level or inside a function):

* the core (io, preprocessing, network, inference.*, postprocess, components, labels, validation,
  contract) reaches nothing of serving, export, training or evaluation;
* :mod:`s4c.repository` reaches nothing of serving, export, inference, training or evaluation (those
  stand on it);
* no import cycle, between modules or between the top-level parts of the package;
* a function-local import of an s4c module is there only to defer a heavy optional dependency;
* the Python-backend stubs (``model_repository/*/1/model.py`` and all they import) draw nothing.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"

CORE = ("s4c.io", "s4c.dicom", "s4c.grid", "s4c.preprocessing", "s4c.network", "s4c.inference", "s4c.postprocess",
        "s4c.components", "s4c.labels", "s4c.validation", "s4c.contract")
UPPER = ("s4c.serving", "s4c.export", "s4c.training", "s4c.evaluation")
#: Third-party modules heavy or optional enough to import only where used (the stubs, the client and
#: `s4c --help` run without some of them).
HEAVY = ("torch", "onnx", "onnxruntime", "onnxconverter_common", "tensorrt", "tritonclient", "pytriton",
         "triton_python_backend_utils", "PIL", "matplotlib", "monai", "pydicom", "highdicom")
#: Modules that load their subcommands lazily, so `s4c --help` and one subcommand do not import all.
LAZY_ENTRY_POINTS = ("s4c.cli", "s4c.demo")
PLOTTING = ("PIL", "matplotlib", "s4c.viz")


def _modules() -> dict[str, Path]:
    out = {}
    for f in sorted((SRC / "s4c").rglob("*.py")):
        parts = f.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


MODULES = _modules()


def _is_package(mod: str) -> bool:
    return MODULES[mod].name == "__init__.py"


def _resolve(name: str) -> str | None:
    """The s4c module an imported dotted name lives in (``s4c.contract`` for ``s4c.contract.CT``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(path: Path, mod: str | None = None) -> list[tuple[str, bool, int]]:
    """(imported module, function-local?, line) for every import in ``path``; s4c names resolved to their
    module, relative imports made absolute (``mod``: the importing module's name)."""
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body}
    for n in tree.body:  # an import under a module-level try/if is still module level
        if isinstance(n, (ast.Try, ast.If)):
            top |= {id(c) for c in ast.walk(n)}
    out = []
    for node in ast.walk(tree):
        local = id(node) not in top
        if isinstance(node, ast.Import):
            out += [(a.name, local, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = mod if mod and _is_package(mod) else (mod or "").rpartition(".")[0]
                for _ in range(node.level - 1):
                    pkg = pkg.rpartition(".")[0]
                base = f"{pkg}.{base}" if base else pkg
            if base == "s4c" or base.startswith("s4c."):
                out += [(_resolve(f"{base}.{a.name}") or base, local, node.lineno) for a in node.names]
            else:
                out.append((base, local, node.lineno))
    return out


def graph() -> dict[str, set[str]]:
    """s4c module -> the s4c modules it imports (anywhere in it)."""
    g = {}
    for mod, path in MODULES.items():
        g[mod] = {_resolve(name) for name, _, _ in imports(path, mod) if name.split(".")[0] == "s4c"} - {None, mod}
    return g


def reach(g: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in g.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def _under(mod: str, prefixes) -> bool:
    return any(mod == p or mod.startswith(p + ".") for p in prefixes)


def _part(mod: str) -> str:
    """The top-level part of the package a module belongs to (``s4c.serving`` for ``s4c.serving.server``)."""
    return ".".join(mod.split(".")[:2])


def test_the_graph_sees_the_imports_it_must():
    """The checks below mean something only if the graph has the edges: spot-check a few of each kind."""
    g = graph()
    assert "s4c.contract" in g["s4c.repository.configs"]  # from s4c import contract
    assert "s4c.network" in g["s4c.checkpoint"]  # function-local
    assert "s4c.inference.merge" in g["s4c.inference.sliding_window"]
    assert {"s4c.repository.params", "s4c.repository.segmenters"} <= g["s4c.serving.service"]


def test_core_reaches_no_upper_layer():
    g = graph()
    bad = {mod: sorted(m for m in reach(g, mod) if _under(m, UPPER)) for mod in g if _under(mod, CORE)}
    assert not {m: b for m, b in bad.items() if b}


def test_repository_stands_below_export_serving_and_inference():
    g = graph()
    above = (*UPPER, "s4c.inference", "s4c.cli", "s4c.demo", "s4c.outputs", "s4c.report")
    bad = {mod: sorted(m for m in reach(g, mod) if _under(m, above)) for mod in g if _under(mod, ("s4c.repository",))}
    assert not {m: b for m, b in bad.items() if b}
    for user in ("s4c.repository.export", "s4c.serving.service", "s4c.inference.predictor"):
        assert any(_under(m, ("s4c.repository",)) for m in g[user]), user


def test_no_import_cycle_between_modules_or_parts():
    g = graph()
    assert cycles(g) == []
    parts: dict[str, set[str]] = {}
    for mod, deps in g.items():
        if mod.endswith(".__main__"):
            # `python -m s4c.training` is an entry point like s4c.cli: it imports the CLI and nothing
            # imports it, so it closes no cycle.
            assert not any(mod in d for d in g.values()), f"{mod} is imported"
            continue
        parts.setdefault(_part(mod), set()).update(_part(d) for d in deps if _part(d) != _part(mod))
    assert cycles(parts) == []


def test_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_function_local_imports_only_defer_heavy_dependencies():
    """Inside a function, ``import X`` is for X heavy/optional (:data:`HEAVY`), or an s4c module that
    itself imports one at module level; anything else goes at the top, where a cycle would show."""
    heavy_at_top = {mod for mod, path in MODULES.items()
                    if any(not local and name.split(".")[0] in HEAVY for name, local, _ in imports(path, mod))}
    bad = []
    for mod, path in MODULES.items():
        if mod in LAZY_ENTRY_POINTS:
            continue
        fallbacks = _fallback_import_lines(path)
        for name, local, line in imports(path, mod):
            if not local or name.split(".")[0] in HEAVY or line in fallbacks:
                continue
            if name.split(".")[0] == "s4c" and _resolve(name) in heavy_at_top:
                continue
            bad.append(f"{path.relative_to(REPO)}:{line} imports {name} inside a function")
    assert not bad, "\n".join(bad)


def _fallback_import_lines(path: Path) -> set[int]:
    """Lines of imports inside a ``try`` that catches ImportError: a fallback between versions of a
    dependency (numpy 1 and 2), which has to stay where it is tried."""
    lines = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Try) and any(
                h.type is not None and "ImportError" in ast.unparse(h.type) for h in node.handlers):
            lines |= {n.lineno for b in node.body for n in ast.walk(b) if isinstance(n, (ast.Import, ast.ImportFrom))}
    return lines


def _stub_closure() -> dict[str, set[str]]:
    """model.py -> every module (s4c and third-party top-level names) it reaches through s4c modules."""
    g = graph()
    third = {mod: {name.split(".")[0] for name, _, _ in imports(path, mod) if name.split(".")[0] != "s4c"}
             for mod, path in MODULES.items()}
    out = {}
    for stub in sorted(REPO.glob("model_repository/*/1/model.py")):
        direct = imports(stub)
        s4c_mods = {_resolve(n) for n, _, _ in direct if n.split(".")[0] == "s4c"} - {None}
        closure = set(s4c_mods)
        for m in s4c_mods:
            closure |= reach(g, m)
        names = {n.split(".")[0] for n, _, _ in direct} | set().union(*(third[m] for m in closure))
        out[str(stub.relative_to(REPO))] = closure | names
    return out


def test_python_stubs_draw_nothing():
    closures = _stub_closure()
    assert len(closures) == 5
    assert all("s4c.inference.pipeline" in c for k, c in closures.items() if "/s4c/" in k)
    bad = {stub: sorted(c & set(PLOTTING)) for stub, c in closures.items() if c & set(PLOTTING)}
    assert not bad


@pytest.mark.parametrize("model", ["s4c", "s4c_dual_phase", "segmenter_venous", "locator"])
def test_python_stub_import_loads_no_plotting_module(model, tmp_path):
    """The same, as Python sees it: import the stub (a stand-in triton_python_backend_utils on the path)
    in a fresh interpreter and list what got loaded."""
    (tmp_path / "triton_python_backend_utils.py").write_text("")
    stub = REPO / "model_repository" / model / "1" / "model.py"
    code = (f"import importlib.util, json, sys\nsys.path.insert(0, {str(tmp_path)!r})\n"
            f"spec = importlib.util.spec_from_file_location('model', {str(stub)!r})\n"
            "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
            "print(json.dumps(sorted(sys.modules)))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    loaded = set(json.loads(res.stdout.splitlines()[-1]))
    assert "s4c" in loaded
    assert not {m for m in loaded if m.split(".")[0] in ("PIL", "matplotlib") or m == "s4c.viz"}
