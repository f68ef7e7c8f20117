"""fit's output for verbose 0, 1 and 2, on a terminal and not."""
import io
import re

import numpy as np

from numbanet.nn.layers import Dense
from numbanet.nn.models import Sequential
from numbanet.nn.progress import Progress


def _fit(**kw):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 2)).astype("float32")
    y = rng.integers(0, 2, 50)
    m = Sequential([Dense(2, activation="softmax", input_shape=(2,))])
    m.compile("sgd", "categorical_crossentropy", metrics=["accuracy"])
    return m.fit(x, y, batch_size=10, epochs=3, **kw)


def test_verbose_0_is_silent(capsys):
    _fit(verbose=0)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_verbose_1_without_tty_is_one_line_per_epoch(capsys):
    h = _fit(verbose=1, validation_split=0.2)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    for e, line in enumerate(lines):
        assert line.startswith(f"Epoch {e + 1}/3 - 4 steps - ")
        assert re.search(r"\d+(ms|us)/step", line)
        assert f"loss: {h.history['loss'][e]:.4f}" in line
        assert f"val_accuracy: {h.history['val_accuracy'][e]:.4f}" in line


def test_verbose_2_is_one_line_per_epoch(capsys):
    _fit(verbose=2)
    lines = capsys.readouterr().out.splitlines()
    assert [l.split(" - ")[0] for l in lines] == ["Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_bar_on_a_terminal_shows_steps_time_per_step_and_running_loss():
    stream = FakeTerminal()
    p = Progress(1, epochs=2, steps=4, stream=stream)
    assert p.bar_on
    p.epoch_begin(0)
    for s in range(4):
        p.batch_end(s, {"loss": 1.0 / (s + 1), "accuracy": 0.5})
    p.epoch_end(0, {"loss": 0.25, "accuracy": 0.5, "val_loss": 0.3})
    out = stream.getvalue()
    assert out.startswith("Epoch 1/2\n")
    assert "4/4" in out and "loss: 0.2500" in out and "accuracy: 0.5000" in out
    assert re.search(r"s/step|step/s", out)
    assert out.rstrip().splitlines()[-1].startswith("4/4 - ") and "val_loss: 0.3000" in out


def test_bar_is_not_used_with_verbose_2_on_a_terminal():
    stream = FakeTerminal()
    p = Progress(2, epochs=1, steps=3, stream=stream)
    p.epoch_begin(0)
    for s in range(3):
        p.batch_end(s, {"loss": 1.0})
    p.epoch_end(0, {"loss": 1.0})
    assert len(stream.getvalue().splitlines()) == 1
