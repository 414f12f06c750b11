"""The folders are the dependency boundary: who may import whom, no cycles, light imports, short files.

Imports are read from the source (every ``import``, also the lazy ones inside functions), so a rule
is broken the moment someone writes the import, whether or not a test happens to execute it.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Source folder -> installed package name (setup.cfg package_dir).
ROOTS = {"edgevlm": "edgevlm", "export": "edgevlm.export", "benchmarks": "edgevlm.benchmarks"}
# Layer -> the edgevlm layers it may import (besides itself).
ALLOWED = {
    "core": set(),
    "runtime": {"core"},
    "train": {"core"},
    "export": {"core", "train", "runtime"},
    "benchmarks": {"core", "train", "runtime", "export"},
    "apps": {"core", "train", "runtime", "export", "benchmarks"},
    "root": set(),  # edgevlm/__init__.py
}
# Third-party packages a layer may import (the stdlib is always allowed).
THIRD_PARTY = {"core": {"numpy"}, "runtime": {"numpy", "onnxruntime", "tokenizers"}}
HEAVY = ("torch", "transformers", "optimum", "onnx", "safetensors", "sacrebleu")
MAX_LINES = 400


def modules() -> dict[str, Path]:
    """Installed module name -> source file, for every Python file of the package."""
    out = {}
    for folder, pkg in ROOTS.items():
        for p in sorted((REPO / folder).rglob("*.py")):
            parts = list(p.relative_to(REPO / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([pkg, *parts])] = p
    return out


def layer(mod: str) -> str:
    parts = mod.split(".")
    if len(parts) == 1:
        return "root"
    return parts[1]


def imports(mod: str, path: Path) -> set[str]:
    """Absolute names of everything ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)  # `from pkg import submodule`
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: imports(m, p) for m, p in mods.items()}


def internal(name: str, mods) -> str | None:
    """The edgevlm module ``name`` refers to (longest known prefix), or None for a third-party name."""
    while name:
        if name in mods:
            return name
        name = name.rpartition(".")[0]
    return None


def test_every_layer_imports_only_what_it_may():
    mods, bad = modules(), []
    for mod, names in graph().items():
        me = layer(mod)
        for name in names:
            target = internal(name, mods)
            if target is None:
                top = name.split(".")[0]
                if me in THIRD_PARTY and top and top not in sys.stdlib_module_names and top != "edgevlm":
                    if top not in THIRD_PARTY[me]:
                        bad.append(f"{mod} imports third-party {name!r}")
                continue
            other = layer(target)
            if other != me and other != "root" and other not in ALLOWED[me]:
                bad.append(f"{mod} ({me}) imports {target} ({other})")
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    mods = modules()
    edges = {m: {t for n in names if (t := internal(n, mods)) and t != m} for m, names in graph().items()}
    # a package's __init__ re-exporting its submodules is not a cycle through the submodule's own imports
    edges = {
        m: {t for t in ts if not (m.startswith(t + ".") and mods[t].name == "__init__.py")} for m, ts in edges.items()
    }
    cycles, index, low, stack, on, counter = [], {}, {}, [], set(), [0]

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
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
                cycles.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in edges:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_checker_sees_a_forbidden_import(tmp_path):
    """The rule checker itself: a core module importing train, and a runtime module importing torch, are found."""
    core = tmp_path / "bad_core.py"
    core.write_text("def f():\n    from edgevlm.train.model import VLM\n")
    found = imports("edgevlm.core.bad_core", core)
    assert internal("edgevlm.train.model.VLM", modules()) == "edgevlm.train.model"
    assert "edgevlm.train.model" in found and layer("edgevlm.train.model") not in ALLOWED["core"]
    rel = tmp_path / "rel.py"
    rel.write_text("from ..train import model\n")
    assert "edgevlm.train.model" in imports("edgevlm.runtime.rel", rel)


@pytest.mark.parametrize("package", ["edgevlm.runtime", "edgevlm.core", "edgevlm"])
def test_runtime_and_core_import_no_heavy_library(package):
    core = [m for m in modules() if layer(m) == "core"] if package == "edgevlm.core" else [package]
    code = (
        "import importlib, json, sys\n"
        f"for m in {core!r}: importlib.import_module(m)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(r.stdout) == []


def test_no_source_file_over_the_limit():
    long = {
        str(p.relative_to(REPO)): n for p in modules().values() if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"files over {MAX_LINES} lines: {long}"


def test_experiments_stay_out_of_the_package():
    """experiments/ (one-off investigations) is not installed: no __init__.py for package discovery to find, and
    no installed module imports it (it may import the package, never the other way round)."""
    assert not (REPO / "experiments" / "__init__.py").exists()
    assert not [p for p in (REPO / "experiments").rglob("__init__.py")], "experiments/ must hold no packages"
    bad = [f"{m} imports {n}" for m, names in graph().items() for n in names if n.split(".")[0] == "experiments"]
    assert not bad, "\n".join(bad)
