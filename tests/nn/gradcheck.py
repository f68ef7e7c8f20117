"""Finite differences of a model's loss over its weights (float64), for the gradient tests."""
import numpy as np


def model_loss(model, x, y):
    # One batch, no Dropout in these models: evaluate's loss is the training loss
    # (weighted data losses plus regularization penalties). x may be a list (several inputs).
    n = (x[0] if isinstance(x, (list, tuple)) else x).shape[0]
    return model.evaluate(x, y, batch_size=n, verbose=0, return_dict=True)["loss"]


def sampled(model, count):
    """Positions to probe per array: fewer on the CUDA simulator, where every kernel runs
    its threads in Python and each probe is two passes through the whole model."""
    from conftest import simulated
    return min(count, 3) if model.be.name == "gpu" and simulated() else count


def check_model_gradients(model, x, y, h=1e-6, max_per_array=40, seed=0):
    """Compare model.compute_gradients with central differences at sampled positions."""
    max_per_array = sampled(model, max_per_array)
    loss, grads = model.compute_gradients(x, y)
    assert np.isclose(loss, model_loss(model, x, y), rtol=1e-12, atol=1e-12)
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
