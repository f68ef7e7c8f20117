"""kernels/numba_internals.py: the one door to Numba's private names, its version check, and
the library without them."""
import json
import os
import subprocess
import sys
import textwrap
import warnings

import numba
import pytest

from numbanet.kernels import numba_internals

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_installed_numba_is_a_tested_version():
    """Fails on a Numba release numbanet was not tested with: check what numba_internals.py
    uses of it, then raise TESTED_NUMBA and pyproject.toml's caps together."""
    problem = numba_internals.problem()
    assert problem is None, (f"{problem}. numbanet reaches into Numba's internals (kernels/numba_internals.py); on "
                             "this version it runs without them (no background compile, no SLP vectorizer)")
    low, high = numba_internals.TESTED_NUMBA
    with open(os.path.join(REPO, "pyproject.toml"), encoding="utf-8") as f:
        text = f.read()
    assert f'"numba>={low[0]}.{low[1]},<{high[0]}.{high[1] + 1}"' in text, "pyproject.toml's numba cap differs"


@pytest.mark.parametrize("text,want", [("0.68.1", (0, 68)), ("0.69.0rc1", (0, 69)), ("0.70.0dev0+12.gabc", (0, 70)),
                                       ("1.0", (1, 0))])
def test_version_parsing(text, want):
    assert numba_internals._parse(text) == want


def test_an_untested_version_turns_the_internals_off_with_one_warning(monkeypatch):
    monkeypatch.setattr(numba_internals, "TESTED_NUMBA", ((0, 1), (0, 2)))
    monkeypatch.setattr(numba_internals, "_state", {})
    monkeypatch.setattr(numba_internals, "_warned", [])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert numba_internals.available() is False
        assert numba_internals.available() is False
        assert numba_internals.wrap_compile(object(), lambda compile_: compile_) is False
        assert numba_internals.locked_cache_file_class(lambda path: None) is None
    assert [type(w.message) for w in caught] == [numba_internals.NumbaInternalsWarning]
    assert f"Numba {numba.__version__} is outside the versions numbanet was tested with (0.1 to 0.2)" \
        in str(caught[0].message)


_TRAIN = """
import json, sys, warnings
warnings.simplefilter("always")
from numbanet.kernels import numba_internals
numba_internals.TESTED_NUMBA = ((0, 0), (0, 1))   # what the installed Numba is not
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import numpy as np
    from numbanet.kernels.cpu import precompile
    from numbanet.nn.layers import Dense
    from numbanet.nn.models import Sequential
    from numbanet.nn.optimizers import Adam
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    model = Sequential([Dense(8, activation="relu", input_shape=(6,)), Dense(2, activation="softmax")])
    model.compile(optimizer=Adam(0.05), loss="categorical_crossentropy")
    losses = [float(np.ravel(model.train_on_batch(x, y))[0]) for _ in range(6)]
mine = [str(w.message) for w in caught if isinstance(w.message, numba_internals.NumbaInternalsWarning)]
print(json.dumps({"losses": losses, "warnings": mine, "helper": precompile._helper.proc is not None}))
"""


def test_training_runs_without_the_internals(tmp_path):
    """The library told its Numba is untested trains a small model all the same (its own
    kernel cache, so that kernels compiled without the SLP vectorizer stay out of the
    shared one), warns once, and starts no background compile though asked to."""
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBANET_BACKEND", "NUMBA_ENABLE_CUDASIM")}
    env.update(NUMBA_CACHE_DIR=str(tmp_path / "cache"), NUMBANET_BACKGROUND_COMPILE="1")
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(_TRAIN)], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(report["warnings"]) == 1 and "outside the versions numbanet was tested with" in report["warnings"][0]
    assert not report["helper"]
    losses = report["losses"]
    assert all(l == l and abs(l) < 1e3 for l in losses) and losses[-1] < losses[0], losses
