"""The README tells the truth: every Python block runs and does what its comments say, every
command in its shell blocks is one the `numbanet` command and pyproject.toml accept, every
file it links exists, and it stays a short user guide.

Each Python block is run by the test whose marker (a string only that block holds) picks
it; test_every_python_block_is_run_by_one_test fails on a block no test runs.
"""
import ast
import contextlib
import importlib
import importlib.util
import io
import os
import re
import shlex
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
MAX_BYTES = 15 * 1024

# marker -> the test that runs the block holding it
MARKERS = {
    "be.conv2d(x, w, padding=\"same\")": "test_backend_example_computes_what_numpy_computes",
    "torch.autograd.Function": "test_pytorch_autograd_example_matches_pytorch",
    "model.add(Conv2D(32": "test_article_cnn_example_trains",
    "MultiHeadAttention(num_heads=4": "test_gpt_block_example_builds_the_model_it_describes",
    "Bidirectional(GRU(64))": "test_recurrent_example_builds_the_model_it_describes",
    "distributed.init()": "test_mpi_example_runs_as_one_process",
}


def _text():
    with open(README, encoding="utf-8") as f:
        return f.read()


def _blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", _text(), flags=re.S)


def _python_blocks():
    return _blocks("python")


def _block(marker):
    (block,) = [b for b in _python_blocks() if marker in b]
    return block


def _run(block, name, **scope):
    out = io.StringIO()
    scope["__name__"] = name
    with contextlib.redirect_stdout(out):
        exec(compile(block, "README.md", "exec"), scope)
    return out.getvalue(), scope


def test_readme_is_a_short_guide_without_a_lab_notebook():
    text = _text()
    assert len(text.encode("utf-8")) <= MAX_BYTES
    assert len(_python_blocks()) >= 5
    assert not re.search(r"\d\d:\d\d UTC|\b20\d\d-\d\d-\d\d\b|[Ii]ssue \d+|load average \d", text)


def test_docs_say_why_not_when():
    docs = os.path.join(ROOT, "docs")
    pages = sorted(f for f in os.listdir(docs) if f.endswith(".md"))
    assert {"architecture.md", "cpu_kernels.md", "gpu_kernels.md", "file_formats.md", "mpi.md",
            "benchmarks.md"} <= set(pages)
    for page in pages:
        with open(os.path.join(docs, page), encoding="utf-8") as f:
            text = f.read()
        found = re.search(r"\d\d:\d\d UTC|\b20\d\d-\d\d-\d\d\b|[Ii]ssue \d+|\(issue|load average \d", text)
        assert found is None, f"docs/{page}: {found.group(0)!r}"


def test_every_python_block_is_run_by_one_test():
    for block in _python_blocks():
        owners = [test for marker, test in MARKERS.items() if marker in block]
        assert len(owners) == 1, f"a README block is run by {owners or 'no test'}:\n{block[:200]}"
        assert owners[0] in globals()
    assert len(_python_blocks()) == len(MARKERS)


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


def _shell_commands():
    for block in _blocks("bash"):
        for line in block.splitlines():
            line = line.split(" #")[0].strip()
            if line:
                yield from (part.strip() for part in line.split("&&"))


def test_every_numbanet_command_in_the_readme_parses():
    from numbanet.cli import build_parser
    commands = [c for c in _shell_commands() if "numbanet " in c and not c.startswith("pip ")]
    assert len(commands) >= 8
    for command in commands:
        argv = shlex.split(command[command.index("numbanet "):])[1:]
        try:
            build_parser().parse_args(argv)
        except SystemExit:
            pytest.fail(f"README: `{command}` is not a valid numbanet command line")


def test_every_pip_extra_in_the_readme_exists():
    import tomllib
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        extras = set(tomllib.load(f)["project"]["optional-dependencies"])
    named = [e for c in _shell_commands() if c.startswith("pip install -e")
             for e in re.findall(r"\.\[([a-z0-9,]+)\]", c)]
    assert len(named) >= 4
    for group in named:
        assert set(group.split(",")) <= extras, group


def test_every_linked_file_exists():
    links = re.findall(r"\]\(([^)#]+)\)", _text())
    local = [ln for ln in links if not re.match(r"[a-z]+://", ln)]
    assert "bench/results/" in local and any(ln.endswith(".png") for ln in local)
    for link in local:
        assert os.path.exists(os.path.join(ROOT, link)), f"README links {link}, which does not exist"


def _conv_same(x, w):
    kh, kw = w.shape[:2]
    xp = np.pad(x, ((0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))  # (B, H, W, C, kh, kw)
    return np.einsum("bhwcij,ijco->bhwo", win.astype(np.float64), w.astype(np.float64))


def _causal_attention(q, k, v):
    q, k, v = (a.astype(np.float64).transpose(0, 2, 1, 3) for a in (q, k, v))  # (B, H, T, D)
    s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(q.shape[-1])
    s = np.where(np.tril(np.ones(s.shape[-2:], bool)), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True) @ v).transpose(0, 2, 1, 3)


def test_backend_example_computes_what_numpy_computes(monkeypatch):
    monkeypatch.setenv("NUMBANET_BACKEND", "cpu")
    from numbanet import kernels
    monkeypatch.setattr(kernels, "_default", None)
    block = _block("be.conv2d(x, w, padding=\"same\")")
    out, s = _run(block, "readme_backend")
    assert out.strip() == "(128, 28, 28, 32) (32, 128, 4, 32)"
    assert f"# {out.strip()}" in block
    be = s["be"]
    x, w, q, k, v = (be.to_numpy(s[n]) for n in ("x", "w", "q", "k", "v"))
    np.testing.assert_allclose(be.to_numpy(s["y"]), _conv_same(x, w), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(be.to_numpy(s["out"]), _causal_attention(q, k, v), rtol=1e-4, atol=1e-5)
    assert s["dw"].shape == (3, 3, 1, 32) and s["dx"].shape == (128, 28, 28, 1)


@pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                    reason="PyTorch is not installed (a reference for hand runs, never a dependency; CI has none)")
def test_pytorch_autograd_example_matches_pytorch():
    out, _ = _run(_block("torch.autograd.Function"), "readme_torch")
    assert out.strip() == "True"


@pytest.fixture
def small_mnist(monkeypatch):
    """small_mnist(rows): mnist.load_data as the README calls it, on the first `rows`
    training digits of the offline sample: the blocks run as written, on fewer rows."""
    from numbanet.nn.datasets import mnist
    (x, y), (xt, yt) = mnist.load_sample()
    monkeypatch.setenv("NUMBANET_BACKEND", "cpu")
    from numbanet import kernels
    monkeypatch.setattr(kernels, "_default", None)

    def use(rows):
        monkeypatch.setattr(mnist, "load_data", lambda *a, **k: ((x[:rows], y[:rows]), (xt[:400], yt[:400])))
    return use


def test_article_cnn_example_trains(small_mnist):
    small_mnist(640)
    out, s = _run(_block("model.add(Conv2D(32"), "readme_cnn")
    # Keras's count for its MNIST example: conv 3*3*1*32+32, conv 3*3*32*64+64, dense
    # 1600*128+128 (5x5x64 after two valid convs and pools), dense 128*10+10
    assert s["model"].count_params() == 320 + 18496 + 204928 + 1290
    (acc,) = re.findall(r"^Test accuracy: ([0-9.]+)$", out, flags=re.M)
    assert float(acc) > 0.75  # 10 epochs on 640 digits; chance is 0.1


def test_mpi_example_runs_as_one_process(small_mnist, monkeypatch):
    small_mnist(1280)
    from numbanet.nn import distributed
    monkeypatch.setattr(distributed, "_initialized", False)
    monkeypatch.delitem(sys.modules, "mpi4py", raising=False)
    out, s = _run(_block("distributed.init()"), "readme_mpi")
    assert distributed.size() == 1 and distributed.rank() == 0
    assert "mpi4py" not in sys.modules  # alone, the MPI path is not even imported
    (acc,) = re.findall(r"^test accuracy ([0-9.]+)$", out, flags=re.M)
    assert float(acc) == pytest.approx(s["acc"], abs=5e-4) and float(acc) > 0.3  # one epoch of 10 steps


def test_gpt_block_example_builds_the_model_it_describes():
    out, _ = _run(_block("MultiHeadAttention(num_heads=4"), "readme_gpt")
    d, v, t = 128, 97, 128
    block_params = 2 * 2 * d + 4 * (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d)
    want = v * d + t * d + block_params + 2 * d + (d * v + v)
    assert out.split()[-1] == str(want)
    assert f"# {want}" in _block("MultiHeadAttention(num_heads=4")


def test_recurrent_example_builds_the_model_it_describes():
    """The recurrent layers' example: its parameter count from Keras's weight shapes."""
    block = _block("Bidirectional(GRU(64))")
    out, _ = _run(block, "readme_recurrent")
    lstm = 64 * 512 + 128 * 512 + 512                   # kernel, recurrent kernel, bias (4 gates)
    gru = 128 * 192 + 64 * 192 + 2 * 192                 # (3 gates, reset_after: two biases), per direction
    want = 1000 * 64 + lstm + 2 * gru + (128 * 2 + 2)
    assert out.split()[-1] == str(want)
    assert f"# {want}" in block


def test_the_layers_optimizers_and_callbacks_it_lists_exist():
    from numbanet.nn import callbacks, layers, optimizers, schedules
    text = _text()
    listed = text.split("`get_weights()` order:\n\n", 1)[1].split("\n\n", 1)[0]
    names = [n.strip() for line in listed.splitlines() for n in line.lstrip("- ").split(",")]
    assert len(names) >= 25
    assert [n for n in names if not isinstance(getattr(layers, n, None), type)] == []
    prose = text.split("Optimizers ", 1)[1].split("`Model` has", 1)[0]
    for name in ("SGD", "Adam", "AdamW", "RMSprop", "Adagrad"):
        assert name in prose and isinstance(getattr(optimizers, name, None), type), name
    assert "CosineDecay" in prose and hasattr(schedules, "CosineDecay")
    for name in re.findall(r"callbacks ([A-Za-z, ]+)\.", prose.replace("\n", " "))[0].split(", "):
        assert isinstance(getattr(callbacks, name.strip(), None), type), name
