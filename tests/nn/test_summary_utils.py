"""nn/summary_utils.py: model.summary()'s table."""
from toy_models import cnn, residual_model


def test_summary_table(capsys):
    m = cnn()
    m.summary()
    out = capsys.readouterr().out
    assert f'Model: "{m.name}"' in out
    assert "(None, 4, 4, 2)" in out and "(None, 2, 2, 2)" in out and "(None, 8)" in out
    total = (3 * 3 * 1 * 2 + 2) + (8 * 3 + 3)
    assert f"Total params: {total:,}" in out
    assert "Conv2D" in out and "MaxPooling2D" in out and "Flatten" in out and "Dense" in out


def test_functional_summary_names_connections(capsys):
    m = residual_model()
    m.summary()
    out = capsys.readouterr().out
    assert "Connected to" in out and "(None, 2)" in out and "InputLayer" in out
    add = next(l for l in m.layers if type(l).__name__ == "Add")
    assert f"{add.name} (Add)" in out
    inner = [l.name for l in m.layers if type(l).__name__ == "Dense"]
    assert f"{inner[0]}[0][0], {inner[1]}[0][0]" in out
