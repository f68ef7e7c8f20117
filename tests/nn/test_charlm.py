"""The charlm model: its architecture and parameter count written out, its compile recipe,
and that a few steps on a tiny repeating text lower the loss."""
import numpy as np

from numbanet import nn
from numbanet.nn import charlm, layers


def test_architecture_and_parameter_count(nnbe):
    v, t, d, h, n = 13, 8, 16, 4, 2
    m = charlm.build_model(v, t, d, h, n)
    kinds = [type(l).__name__ for l in m.layers]
    assert kinds.count("MultiHeadAttention") == n and kinds.count("LayerNormalization") == 2 * n + 1
    blocks = n * (4 * (d * d + d)            # q, k, v, output projections with biases
                  + 2 * 2 * d                # two LayerNorms
                  + (d * 4 * d + 4 * d) + (4 * d * d + d))   # the MLP
    assert m.count_params() == v * d + t * d + blocks + 2 * d + (d * v + v)
    assert m.inputs[0].dtype == "int32" and m.output_shape == (t, v)
    att = next(l for l in m.layers if isinstance(l, layers.MultiHeadAttention))
    assert att.get_weights()[0].shape == (d, h, d // h)
    assert next(n for n in m._graph.nodes if n.layer is att).kwargs["use_causal_mask"] is True


def test_compile_recipe(nnbe):
    m = charlm.compile_model(charlm.build_model(7, 4, 8, 2, 1), total_steps=1000)
    opt = m.optimizer
    assert isinstance(opt, nn.optimizers.AdamW) and opt.global_clipnorm == 1.0
    assert opt.current_learning_rate() == 0.0                          # warm-up starts at 0
    opt.iterations = charlm.WARMUP_STEPS
    assert np.isclose(opt.current_learning_rate(), charlm.PEAK_LEARNING_RATE)
    assert opt._decay_for("token_embedding/embeddings") == 0.0 and opt._decay_for("logits/kernel") == 0.01
    assert m.loss.from_logits and m.metrics == ["accuracy"]
    assert np.isclose(charlm.perplexity(np.log(5.0)), 5.0)


def test_a_few_steps_learn_a_repeating_text(nnbe):
    nn.utils.set_random_seed(0)
    m = charlm.compile_model(charlm.build_model(5, 8, 16, 2, 1), total_steps=60, peak_learning_rate=1e-2,
                             warmup_steps=5)
    seq = np.arange(200) % 5
    x = np.stack([seq[i:i + 8] for i in range(0, 160, 3)])
    y = np.stack([seq[i + 1:i + 9] for i in range(0, 160, 3)])
    h = m.fit(x, y, batch_size=9, epochs=10, verbose=0)
    assert h.history["loss"][-1] < 0.3 * h.history["loss"][0]
    assert h.history["accuracy"][-1] > 0.9
