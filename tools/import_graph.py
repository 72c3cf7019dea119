"""Checks rljax's import graph: no import cycle, and no import from a lower layer into a higher one.

    python tools/import_graph.py            # exit 1 and list the offending edges on failure

Every `import` / `from ... import` in the package's sources is read with `ast` (function-level
imports included, `if TYPE_CHECKING:` blocks excluded). Modules are the files of `rljax/`,
`kernels/` (installed as `rljax.kernels`) and `experiments/` (`rljax.experiments`). The layers:

    losses < methods < train;  envs < data < rollout < train;  sampling < rollout;
    models < sampling;  kernels and parallel below train;  experiments on top;
    losses (pure functions of arrays) below kernels and envs.

A package may import the packages below it (transitively) and itself; anything else is a layer
violation. A cycle is any strongly connected set of two or more modules.
"""

from __future__ import annotations

import ast
import pathlib
import sys
from collections.abc import Iterable

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCES = {"rljax": "rljax", "kernels": "rljax.kernels", "experiments": "rljax.experiments"}

# package -> the packages directly below it (each may be imported, with what is below them).
BELOW = {
    "losses": set(),
    "kernels": {"losses"},
    "parallel": set(),
    "envs": {"losses"},
    "methods": {"losses"},
    "models": {"kernels", "parallel"},
    "data": {"envs"},
    "sampling": {"models"},
    "rollout": {"data", "sampling"},
    "train": {"methods", "rollout", "kernels", "parallel"},
    "experiments": {"train"},
}


def allowed(package: str) -> set[str]:
    """The packages `package` may import: itself and everything below it."""
    out, todo = {package}, [package]
    while todo:
        for lower in BELOW.get(todo.pop(), ()):
            if lower not in out:
                out.add(lower)
                todo.append(lower)
    return out


def modules() -> dict[str, pathlib.Path]:
    """Dotted module name -> source file, for every module of the package."""
    out = {}
    for folder, prefix in SOURCES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([prefix, *parts])] = path
    return out


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, child.end_lineno + 1))
    return lines


def imports(name: str, path: pathlib.Path, known: set[str]) -> Iterable[str]:
    """The package modules `name` imports (a `from package import submodule` names the submodule)."""
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_lines(tree)
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")[: len(name.split(".")) - node.level + is_package]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            # The longest known module the import names (a submodule, else its package).
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target
                break


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports."""
    mods = modules()
    known = set(mods)
    return {name: set(imports(name, path, known)) for name, path in mods.items()}


def layer_violations(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(importer, imported) pairs that import from a higher or unrelated layer."""
    bad = []
    for source, targets in sorted(edges.items()):
        package = package_of(source)
        if package not in BELOW:
            continue
        for target in sorted(targets):
            lower = package_of(target)
            if lower and lower not in allowed(package):
                bad.append((source, target))
    return bad


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected sets of two or more modules (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(found)


def main() -> int:
    edges = graph()
    bad, loops = layer_violations(edges), cycles(edges)
    for source, target in bad:
        print(f"layer violation: {source} imports {target}")
    for loop in loops:
        print(f"import cycle: {' <-> '.join(loop)}")
    if not bad and not loops:
        print(f"import graph ok: {len(edges)} modules, no cycle, no upward import")
    return 1 if bad or loops else 0


if __name__ == "__main__":
    raise SystemExit(main())
