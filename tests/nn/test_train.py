"""`numbanet train` end to end on a slice of the offline sample, into tmp_path."""
import re
import socket

import numpy as np
import pytest

from numbanet import kernels
from numbanet import cli
from numbanet.nn.datasets import mnist


def closed_port_url():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/"


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("NUMBANET_MNIST_URL", closed_port_url())
    monkeypatch.setenv("NUMBANET_DATA", str(tmp_path / "empty-cache"))
    # main() sets the process default backend; give the other tests theirs back.
    monkeypatch.setattr(kernels, "_default", kernels._default)


def test_train_saves_a_model_and_reports_accuracy(tmp_path, capsys):
    from numbanet.nn.models import load_model

    out = tmp_path / "models" / "cnn.npz"
    rc = cli.main(["train", "--limit", "512", "--epochs", "1", "--batch-size", "32",
                  "--backend", "cpu", "--output", str(out), "--seed", "1", "--verbose", "0"])
    assert rc == 0
    captured = capsys.readouterr()
    printed = captured.out
    # Offline: exactly one warning line, saying the sample is used and how to get the full set.
    warning_lines = [l for l in captured.err.splitlines() if "warning:" in l]
    assert len(warning_lines) == 1 and "5,000-digit sample" in warning_lines[0]
    assert "NUMBANET_DATA" in warning_lines[0]
    assert "the offline MNIST sample: 512 training and 1000 test digits, 1 epoch(s)" in printed
    m = re.search(r"^Test accuracy: ([0-9.]+)$", printed, re.M)
    assert m, printed
    acc = float(m.group(1))
    assert 0.0 <= acc <= 1.0
    assert out.is_file()

    # The saved model is the trained one: its accuracy on the same 1,000 test digits,
    # computed here from predict, matches the printed figure.
    model = load_model(str(out))
    _, (x_test, y_test) = mnist.load_sample()
    probs = np.asarray(model.predict(x_test.reshape(-1, 28, 28, 1).astype("float32") / 255, verbose=0))
    assert probs.shape == (1000, 10)
    mine = float(np.mean(np.argmax(probs, axis=1) == y_test))
    assert abs(mine - acc) <= 1e-4
    # 16 Adam steps on 512 digits already beat chance (10%) by far.
    assert acc > 0.3, acc


@pytest.mark.parametrize("flag,value", [("--epochs", "0"), ("--batch-size", "-1"), ("--limit", "x"),
                                        ("--backend", "tpu"), ("--seed", "-3")])
def test_bad_flags_are_refused(flag, value, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", flag, value])
    assert e.value.code == 2
    assert flag in capsys.readouterr().err


def test_no_data_at_all_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(mnist.importlib.util, "find_spec", lambda name: None)
    rc = cli.main(["train", "--output", str(tmp_path / "m.npz"), "--backend", "cpu"])
    assert rc == 1
    assert "pip install numbanet[data]" in capsys.readouterr().err
    assert not (tmp_path / "m.npz").exists()


def test_unavailable_gpu_backend_is_reported(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(kernels, "gpu_status", lambda: (False, "no NVIDIA driver found (test)"))
    monkeypatch.setattr(kernels, "_instances", {k: v for k, v in kernels._instances.items() if k != "gpu"})
    rc = cli.main(["train", "--output", str(tmp_path / "m.npz"), "--backend", "gpu"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "gpu backend is unavailable" in err and "no NVIDIA driver found (test)" in err
