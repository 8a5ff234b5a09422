"""Find import cycles among lanfer's modules, counting every import statement (module level and inside functions).

    python scripts/import_cycles.py        # prints the cycles; exit status 1 if there is one
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, name: str) -> set[str]:
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                out.add(f"{base}.{alias.name}" if base else alias.name)
                out.add(base)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.startswith("lanfer")}


def main() -> int:
    files = {module_name(p): p for p in SRC.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        # an import of a package's submodule depends on that submodule (and on the package's __init__)
        deps = {d for d in imports(path, name) if d in files and d != name}
        deps.discard(name.rsplit(".", 1)[0]) if path.name != "__init__.py" else None
        graph[name] = deps
    cycles, state, stack = [], {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for d in sorted(graph[n]):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    # a package importing its own submodules (the __init__ re-exports) is not a cycle of concern
    real = [c for c in cycles if not all(x == c[0] or x.startswith(c[0] + ".") or c[0].startswith(x + ".") for x in c)]
    for c in real:
        print(" -> ".join(c))
    print(f"{len(graph)} modules, {len(real)} import cycles")
    return 1 if real else 0


if __name__ == "__main__":
    sys.exit(main())
