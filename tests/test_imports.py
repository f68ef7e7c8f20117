"""The package's import graph: no cycles, and `nn` never imports `bench`.

Read from the source (every import statement, function-level ones included), so a
cycle hidden behind a lazy import inside a function counts too. An import of a
submodule is not counted as an import of its parent package's __init__.
"""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARTS = {"numbanet": "numbanet", "kernels": "numbanet.kernels", "nn": "numbanet.nn", "bench": "numbanet.bench"}


def _modules():
    mods = {}
    for folder, package in PARTS.items():
        for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
            rel = os.path.relpath(dirpath, os.path.join(ROOT, folder))
            prefix = package if rel == "." else package + "." + rel.replace(os.sep, ".")
            for f in files:
                if f.endswith(".py"):
                    name = prefix if f == "__init__.py" else f"{prefix}.{f[:-3]}"
                    mods[name] = os.path.join(dirpath, f)
    return mods


def _graph():
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from pkg import sub` imports the submodule when there is one
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods else node.module
                           for a in node.names]
            else:
                continue
            deps.update(t for t in targets if t in mods and t != name)
        graph[name] = deps
    return graph


def test_the_graph_sees_the_packages():
    graph = _graph()
    assert {"numbanet.cli", "numbanet.kernels.cpu.gemm", "numbanet.nn.models", "numbanet.bench.runner"} <= set(graph)
    assert "numbanet.kernels.backend" in graph["numbanet.kernels.cpu"]


def test_no_import_cycles():
    graph = _graph()
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_nn_and_kernels_never_import_bench_or_the_command_line():
    for name, deps in _graph().items():
        if name.startswith(("numbanet.nn", "numbanet.kernels")):
            bad = [d for d in deps if d.startswith("numbanet.bench") or d == "numbanet.cli"]
            assert not bad, f"{name} imports {bad}"
