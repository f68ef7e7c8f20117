"""plot_history writes a picture atomically, from a History or its dict."""
import pytest

from numbanet.nn.callbacks import History
from numbanet.nn.plotting import plot_history

pytest.importorskip("matplotlib", reason="the plot extra (matplotlib) is not installed")


def test_writes_a_png_and_leaves_no_temporary(tmp_path):
    h = History()
    h.on_train_begin()
    for epoch, (l, vl) in enumerate([(2.0, 2.1), (1.5, 1.7), (1.2, 1.6)]):
        h.on_epoch_end(epoch, {"loss": l, "accuracy": 0.1 * epoch, "val_loss": vl, "val_accuracy": 0.05 * epoch})
    out = tmp_path / "curves.png"
    assert plot_history(h, out, title="t") == str(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]
    svg = tmp_path / "curves.svg"
    plot_history(h.history, svg)
    assert b"<svg" in svg.read_bytes()[:500]


def test_empty_history_is_refused(tmp_path):
    with pytest.raises(ValueError, match="with at least one epoch"):
        plot_history({}, tmp_path / "x.png")
