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


def test_charlm_trains_saves_samples_and_plots(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="the plot extra (matplotlib) is not installed")
    from numbanet.nn.models import load_model
    from numbanet.nn.datasets import pydoc_topics

    out, pic = tmp_path / "lm.npz", tmp_path / "curves.png"
    rc = cli.main(["train", "--model", "charlm", "--limit", "64", "--epochs", "1", "--backend", "cpu",
                   "--output", str(out), "--plot", str(pic), "--sample-length", "12", "--prompt", "The ",
                   "--temperature", "0", "--verbose", "0"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "64 training and 363 validation windows of 128 characters, vocabulary 97" in printed
    loss = float(re.search(r"^Validation loss: ([0-9.]+)$", printed, re.M).group(1))
    ppl = float(re.search(r"^Validation perplexity: ([0-9.]+)$", printed, re.M).group(1))
    assert abs(ppl - np.exp(loss)) <= 0.01 * ppl
    # The saved model is the trained one: its loss on the validation windows is the printed one.
    model = load_model(out)
    _, (xv, yv), vocab = pydoc_topics.load_data(128)
    assert abs(model.evaluate(xv, yv, batch_size=32, verbose=0)[0] - loss) < 1e-4
    # Greedy decoding is deterministic: the printed sample is the one nn.generate makes.
    sample = nn_generate(model, "The ", 12, temperature=0, vocabulary=vocab)
    assert "The " + sample in printed
    assert pic.read_bytes()[:4] == b"\x89PNG"


def nn_generate(*args, **kwargs):
    from numbanet.nn import generate
    return generate(*args, **kwargs)


def test_plot_into_a_missing_folder_fails_before_training(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="the plot extra (matplotlib) is not installed")
    rc = cli.main(["train", "--plot", str(tmp_path / "nope" / "c.png"), "--backend", "cpu"])
    assert rc == 2
    assert "--plot: the folder" in capsys.readouterr().err


def test_lstm_trains_on_digit_rows_and_saves(tmp_path, capsys):
    """--model lstm: the LSTM learns the digits read row by row (far above the 10% of
    chance after a few epochs on 400 of them), and the saved model is the trained one."""
    from numbanet.nn.datasets import digits
    from numbanet.nn.models import load_model

    out = tmp_path / "digits.npz"
    rc = cli.main(["train", "--model", "lstm", "--limit", "400", "--epochs", "6", "--backend", "cpu",
                   "--output", str(out), "--verbose", "0"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "400 training and 359 test digits" in printed and "8 steps of 8 pixels" in printed
    acc = float(re.search(r"^Test accuracy: ([0-9.]+)$", printed, re.M).group(1))
    assert acc > 0.6, printed
    model = load_model(out)
    assert [type(layer).__name__ for layer in model.layers][-2:] == ["LSTM", "Dense"]
    _, (xv, yv) = digits.load_data()
    assert abs(model.evaluate(xv, yv, verbose=0)[1] - acc) < 1e-4


def test_lstm_without_scikit_learn_fails_with_the_install_hint(monkeypatch, capsys):
    import sys
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    assert cli.main(["train", "--model", "lstm", "--backend", "cpu"]) == 1
    assert "pip install 'numbanet[data]'" in capsys.readouterr().err
