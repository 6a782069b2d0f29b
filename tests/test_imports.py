"""The package's import graph: no cycles between packages, no private names across
them, and the library never imports the command line.

The graph is read from the source (``ast``), function-level imports included: a lazy
import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import asr_kd

ROOT = Path(asr_kd.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package(module: str) -> str:
    """``asr_kd.teachers.load`` -> ``asr_kd.teachers``; a top-level module is its own."""
    return ".".join(module.split(".")[:2])


def _imports(path: Path, module: str, modules: set[str]) -> list[tuple[str, str | None]]:
    """``(target module, imported name or None)`` for every ``asr_kd`` import in a file."""
    out: list[tuple[str, str | None]] = []
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, None) for a in node.names if a.name.split(".")[0] == "asr_kd"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                parent = module.split(".")[: len(module.split(".")) - node.level + is_pkg]
                base = ".".join(parent + ([base] if base else []))
            if base.split(".")[0] != "asr_kd":
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.append((sub, None) if sub in modules else (base, a.name))
    return out


def _graph() -> dict[str, list[tuple[str, str | None]]]:
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    return {m: _imports(p, m, set(files)) for m, p in sorted(files.items())}


def _private(name: str | None) -> bool:
    return name is not None and name.startswith("_") and not name.startswith("__")


def test_no_import_cycles_between_packages():
    edges: dict[str, set[str]] = {}
    for module, imports in _graph().items():
        for target, _ in imports:
            src, dst = _package(module), _package(target)
            if src != dst:
                edges.setdefault(src, set()).add(dst)
    cycles = []
    state: dict[str, int] = {}  # 1: on the DFS stack, 2: done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt) :] + [node, nxt]))
            elif nxt not in state:
                visit(nxt, stack + [node])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [])
    assert not cycles, "import cycles between packages:\n" + "\n".join(cycles)


def test_no_private_names_imported_across_packages():
    bad = [
        f"{module} imports {name} from {target}"
        for module, imports in _graph().items()
        for target, name in imports
        if _private(name) and _package(module) != _package(target)
    ]
    assert not bad, "\n".join(bad)


def test_the_library_never_imports_the_cli():
    bad = [
        f"{module} imports {target}"
        for module, imports in _graph().items()
        if _package(module) != "asr_kd.cli"
        for target, _ in imports
        if _package(target) == "asr_kd.cli"
    ]
    assert not bad, "\n".join(bad)


def test_the_graph_sees_lazy_and_relative_imports(tmp_path):
    """The checks above would pass vacuously if the reader missed imports."""
    graph = _graph()
    # a function-level import (asr_kd/specialists/train.py loads its generalist lazily)
    assert ("asr_kd.teachers", "load") in graph["asr_kd.specialists.train"]
    pkg = tmp_path / "asr_kd" / "x"
    pkg.mkdir(parents=True)
    (pkg / "a.py").write_text(
        "from . import b\nfrom ..y import _z\ndef f():\n    import asr_kd.w\n"
    )
    module = "asr_kd.x.a"
    found = _imports(pkg / "a.py", module, {"asr_kd.x.b"})
    assert found == [("asr_kd.x.b", None), ("asr_kd.y", "_z"), ("asr_kd.w", None)]
