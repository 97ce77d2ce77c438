"""The package's import structure, read from the source (ast, so imports inside functions count too):
no module reaches for another module's private names, and the module graph has no cycle (a cycle held
apart only by imports inside functions is still a cycle: the two modules cannot be read or changed alone).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "creepscan"


def module_files() -> dict[str, Path]:
    """{dotted module name: file} for every module of the package (a package is its __init__.py)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = module_files()


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _package_of(module: str) -> str:
    return module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]


def _absolute(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = _package_of(module).split(".")
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(module: str) -> list[tuple[str, str | None, int]]:
    """(imported module, name taken from it or None, line) for every import statement in ``module``,
    at any depth (inside functions and classes too); only the package's own modules."""
    found = []
    for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, None, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, node)
            for a in node.names:
                if f"{source}.{a.name}" in MODULES:  # `from package import submodule`
                    found.append((f"{source}.{a.name}", None, node.lineno))
                else:
                    found.append((source, a.name, node.lineno))
    return [f for f in found if f[0] in MODULES]


def graph() -> dict[str, set[str]]:
    return {m: {target for target, _, _ in imports(m) if target != m} for m in MODULES}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph as [a, b, ..., a], or None (depth-first search, three colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_checker_sees_a_cycle_and_its_absence():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_imports_inside_functions_are_read():
    names = {(target, name) for target, name, _ in imports("creepscan.pipeline")}
    assert ("creepscan.adaptation", "adjust_across_probes") in names  # imported inside a function there


def test_no_import_cycle_between_modules():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_imports_another_modules_private_name():
    bad = []
    for module in MODULES:
        for target, name, line in imports(module):
            if name is not None and _is_private(name):
                bad.append(f"{MODULES[module].name}:{line}: {target}.{name}")
            elif _is_private(target.rpartition(".")[2]) and _package_of(target) != _package_of(module):
                # a package's private helper module is for that package's own modules, whether it is
                # imported itself or a public name is taken from it (`from .report._fmt import x`)
                bad.append(f"{MODULES[module].name}:{line}: {target}" + (f".{name}" if name else ""))
    assert not bad, "private names reached from another module:\n" + "\n".join(bad)


def module_aliases(module: str, tree: ast.Module) -> dict[str, str]:
    """{local name: package module} for names in ``module`` bound to one of the package's modules."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases.update({a.asname: a.name for a in node.names if a.asname and a.name in MODULES})
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, node)
            aliases.update({a.asname or a.name: f"{source}.{a.name}" for a in node.names
                            if f"{source}.{a.name}" in MODULES})
    return aliases


def test_no_module_reads_a_private_attribute_of_another_module():
    bad = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases = module_aliases(module, tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and _is_private(node.attr):
                owner = aliases.get(node.value.id)
                if owner and owner != module:
                    bad.append(f"{path.name}:{node.lineno}: {owner}.{node.attr}")
    assert not bad, "private attributes read from another module:\n" + "\n".join(bad)


@pytest.mark.parametrize("module", ["creepscan.probes", "creepscan.levels", "creepscan.constants", "creepscan.cache",
                                    "creepscan.errors"])
def test_light_modules_do_not_import_torch(module):
    """Modules the CLI needs before any model is loaded stay free of torch, even indirectly."""
    seen, todo = set(), [module]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        tree = ast.parse(MODULES[m].read_text(encoding="utf-8"))
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        assert not any(isinstance(n, ast.Import) and any(a.name.split(".")[0] == "torch" for a in n.names)
                       or isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] == "torch" and not n.level
                       for n in top), f"{m} imports torch (reached from {module})"
        todo += [t for t, _, line in imports(m) if any(n.lineno == line for n in top)]
