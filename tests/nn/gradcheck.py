"""Gradient checks of a model over its weights (float64): central finite differences of its
loss on the cpu; on the gpu under the CUDA simulator, the same model's gradients on the
cpu backend (which the cpu process checks by finite differences)."""
import os
import tempfile

import numpy as np


def model_loss(model, x, y):
    # One batch, no Dropout in these models: evaluate's loss is the training loss
    # (weighted data losses plus regularization penalties). x may be a list (several inputs).
    n = (x[0] if isinstance(x, (list, tuple)) else x).shape[0]
    return model.evaluate(x, y, batch_size=n, verbose=0, return_dict=True)["loss"]


def on_simulator(model):
    from conftest import simulated
    return model.be.name == "gpu" and simulated()


def sampled(model, count):
    """Positions to probe per array: fewer on the CUDA simulator, where every kernel runs
    its threads in Python and each probe is two passes through the whole model."""
    return min(count, 3) if on_simulator(model) else count


def cpu_twin(model):
    """The same model (architecture, weights, compile record) on the cpu backend, through
    save and load_model: the public way a model changes hands."""
    from numbanet.nn.models import load_model
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "twin.npz")
        model.save(path)
        return load_model(path, backend="cpu")


def check_model_gradients(model, x, y, h=1e-6, max_per_array=40, seed=0):
    """Compare model.compute_gradients with central differences at sampled positions; on
    the simulator (Python per GPU thread: two passes per probe would take minutes) with the
    cpu backend's gradients of the same model instead. -> the number of values compared."""
    loss, grads = model.compute_gradients(x, y)
    assert np.isclose(loss, model_loss(model, x, y), rtol=1e-12, atol=1e-12)
    if on_simulator(model):
        want_loss, want = cpu_twin(model).compute_gradients(x, y)
        assert np.isclose(loss, want_loss, rtol=1e-10, atol=1e-12)
        for i, (g, w) in enumerate(zip(grads, want)):
            assert g.shape == w.shape and g.dtype == np.float64
            np.testing.assert_allclose(g, w, rtol=1e-8, atol=1e-11, err_msg=f"weight array {i}: gpu vs cpu")
        return sum(g.size for g in grads)
    weights = model.get_weights()
    rng = np.random.default_rng(seed)
    checked = 0
    for i, (w, g) in enumerate(zip(weights, grads)):
        assert g.shape == w.shape and g.dtype == np.float64
        flat = np.arange(w.size)
        picks = flat if w.size <= max_per_array else rng.choice(flat, max_per_array, replace=False)
        for p in picks:
            ws = [a.copy() for a in weights]
            ws[i].reshape(-1)[p] += h
            model.set_weights(ws)
            up = model_loss(model, x, y)
            ws[i].reshape(-1)[p] -= 2 * h
            model.set_weights(ws)
            down = model_loss(model, x, y)
            num = (up - down) / (2 * h)
            got = g.reshape(-1)[p]
            assert abs(got - num) <= 1e-6 * max(1.0, abs(num)), \
                f"weight array {i} position {p}: analytic {got} vs numerical {num}"
            checked += 1
        model.set_weights(weights)
    return checked
