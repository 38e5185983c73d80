"""The program's layers import one way: settings and shared helpers at the bottom, components above them (never
each other), the wiring above the components, the offline tooling beside the wiring. No import cycles."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("infra", "components", "policies")
# Layer of each module, by the most specific prefix that names it.
LAYERS = {
    "infra.config": "bottom",
    "infra.lib": "bottom",
    "policies": "bottom",
    "components": "component",
    "infra.platform": "wiring",
    "infra.outputs": "wiring",
    "infra.cost": "wiring",
    "infra.contract": "wiring",
    "__main__": "wiring",
    "infra.offline": "tooling",
    "infra.synth": "tooling",
    "infra.preflight": "tooling",
    "infra.status": "tooling",
}
# What each layer may import (besides itself; components never import another component).
ALLOWED = {
    "bottom": {"bottom"},
    "component": {"bottom"},
    "wiring": {"bottom", "component", "wiring"},
    "tooling": {"bottom", "component", "wiring", "tooling"},
}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    found["__main__"] = ROOT / "__main__.py"
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules `name` imports anywhere in its body (lazy imports inside functions count too)."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import mod` imports pkg.mod when that is a module.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def layer(name: str) -> str:
    if name in ("infra", "components"):  # the packages' own __init__, which import nothing
        return "bottom"
    matches = [p for p in LAYERS if name == p or name.startswith(p + ".")]
    assert matches, f"{name} is in no layer: add it to LAYERS in tests/test_layers.py (see docs/contributors/guide.md)"
    return LAYERS[max(matches, key=len)]


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports(name, path, known) for name, path in mods.items()}


def test_every_module_has_a_layer():
    for name in modules():
        layer(name)


def test_imports_go_one_way():
    wrong = []
    for name, targets in sorted(graph().items()):
        for target in sorted(targets):
            if layer(target) not in ALLOWED[layer(name)]:
                wrong.append(f"{name} ({layer(name)}) imports {target} ({layer(target)})")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_no_component_imports_another():
    wrong = [
        f"{name} imports {target}"
        for name, targets in sorted(graph().items())
        if layer(name) == "component"
        for target in sorted(targets)
        if layer(target) == "component" and target.split(".")[:2] != name.split(".")[:2]
    ]
    assert not wrong, "components get what they need from another component through the wiring:\n" + "\n".join(wrong)


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle once, found by depth-first search."""
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(g.get(node, ())):
            # A package's __init__ re-exporting its own modules is not a cycle of the program.
            if nxt.startswith(node + "."):
                continue
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(g):
        if node not in state:
            visit(node)
    return found


def test_no_import_cycles():
    assert not cycles(graph()), "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles(graph()))


def test_the_checks_catch_what_they_claim():
    # A component importing another and a two-module loop: both must be reported.
    g = {"components.a": {"components.b"}, "components.b": set(), "infra.lib.x": {"infra.lib.y"}, "infra.lib.y": {"infra.lib.x"}}
    assert cycles(g) == [["infra.lib.x", "infra.lib.y", "infra.lib.x"]]
    assert layer("components.b") not in ALLOWED["bottom"]
    assert layer("infra.offline.mocks") not in ALLOWED["wiring"]
