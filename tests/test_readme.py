"""The README tells the truth: its Python blocks import what exists, and the PyTorch
example runs and prints True (when PyTorch is installed)."""
import ast
import contextlib
import importlib
import importlib.util
import io
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python_blocks():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_has_python_examples():
    assert len(_python_blocks()) >= 3


@pytest.mark.parametrize("index", range(len(_python_blocks())))
def test_every_import_in_a_readme_block_exists(index):
    tree = ast.parse(_python_blocks()[index])
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = node.module
            if module.split(".")[0] in ("torch", "cupy"):
                continue
            assert module.split(".")[0] in ("numbanet", "numpy"), f"README imports {module}"
            mod = importlib.import_module(module)
            for alias in node.names:
                assert hasattr(mod, alias.name) or importlib.util.find_spec(f"{module}.{alias.name}"), \
                    f"README: from {module} import {alias.name} fails"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] not in ("torch", "cupy"):
                    importlib.import_module(alias.name)


@pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                    reason="PyTorch is not installed (a reference for hand runs, never a dependency; CI has none)")
def test_pytorch_autograd_example_matches_pytorch():
    (block,) = [b for b in _python_blocks() if "torch.autograd.Function" in b]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "README.md", "exec"), {"__name__": "readme_example"})
    assert out.getvalue().strip() == "True"


def test_gpt_block_example_builds_the_model_it_describes():
    (block,) = [b for b in _python_blocks() if "MultiHeadAttention(num_heads=4" in b]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "README.md", "exec"), {"__name__": "readme_example"})
    d, v, t = 128, 97, 128
    block_params = 2 * 2 * d + 4 * (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d)
    want = v * d + t * d + block_params + 2 * d + (d * v + v)
    assert out.getvalue().split()[-1] == str(want)
    assert f"# {want}" in block


def test_attention_example_runs_on_the_cpu(monkeypatch):
    """The transformer ops' example: the shapes it promises, on the cpu backend."""
    (block,) = [b for b in _python_blocks() if "be.attention(" in b]
    monkeypatch.setenv("NUMBANET_BACKEND", "cpu")
    from numbanet import kernels
    monkeypatch.setattr(kernels, "_default", None)
    scope = {"__name__": "readme_attention"}
    exec(compile(block, "README.md", "exec"), scope)
    assert scope["out"].shape == (32, 128, 4, 32) and scope["lse"].shape == (32, 4, 128)
    assert scope["dq"].shape == scope["dk"].shape == scope["dv"].shape == (32, 128, 4, 32)


def test_recurrent_example_builds_the_model_it_describes():
    """The recurrent layers' example: its parameter count from Keras's weight shapes."""
    (block,) = [b for b in _python_blocks() if "Bidirectional(GRU(64))" in b]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "README.md", "exec"), {"__name__": "readme_recurrent"})
    lstm = 64 * 512 + 128 * 512 + 512                   # kernel, recurrent kernel, bias (4 gates)
    gru = 128 * 192 + 64 * 192 + 2 * 192                 # (3 gates, reset_after: two biases), per direction
    want = 1000 * 64 + lstm + 2 * gru + (128 * 2 + 2)
    assert out.getvalue().split()[-1] == str(want)
    assert f"# {want}" in block
