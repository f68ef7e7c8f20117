"""Sampling text from a trained causal language model: nn.generate.

    text = nn.generate(model, "The assert statement", length=200, vocabulary=vocab,
                       temperature=0.8, top_k=20, seed=0)

The model takes (batch, T) integer ids and gives (batch, T, vocabulary) logits (a final
Dense without activation) or probabilities (a final softmax). Its T is fixed, so a
context shorter than T is padded after its end and the next token read at its last
position; a causal model (use_causal_mask=True in every attention) never lets the
padding reach that position. A longer context keeps its last T ids.
"""
import numpy as np

from numbanet.nn import activations, utils


def _sample(logits, temperature, top_k, rng):
    if temperature == 0.0:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / temperature
    if top_k is not None and top_k < z.shape[0]:
        cut = np.partition(z, -top_k)[-top_k]
        z = np.where(z >= cut, z, -np.inf)
    p = np.exp(z - z.max())
    p /= p.sum()
    return int(rng.choice(p.shape[0], p=p))


def generate(model, prompt, length=200, *, temperature=1.0, top_k=None, vocabulary=None, seed=None, pad_id=0):
    """Continue `prompt` by `length` tokens, each drawn from the model's next-token
    distribution divided by `temperature` (0: always the most likely token) and cut to
    the `top_k` most likely (None: all). prompt is a str (with `vocabulary`, which has
    encode/decode) or a sequence of int ids. Returns the continuation: a str with a
    vocabulary, else an int32 array. seed: an int for a repeatable sample (default: the
    library RNG, nn.utils.set_random_seed)."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError("generate: the model must have one input (token ids) and one output (next-token scores)")
    inp, out = model.inputs[0], model.outputs[0]
    if inp.is_float or len(inp.per_sample_shape) != 1:
        raise ValueError(f"generate: the model's input must be integer ids of shape (T,), got {inp.shape} "
                         f"{inp.dtype}")
    steps = inp.per_sample_shape[0]
    if out.per_sample_shape[:1] != (steps,) or len(out.per_sample_shape) != 2:
        raise ValueError(f"generate: the model must output (T, vocabulary) = ({steps}, V) scores, got "
                         f"{out.per_sample_shape}")
    if not utils.is_int(length) or length < 0:
        raise ValueError(f"generate: length must be an int >= 0, got {length!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature >= 0.0 \
            or not np.isfinite(temperature):
        raise ValueError(f"generate: temperature must be a finite number >= 0, got {temperature!r}")
    if top_k is not None and (not utils.is_int(top_k) or top_k < 1):
        raise ValueError(f"generate: top_k must be None or a positive int, got {top_k!r}")
    if isinstance(prompt, str):
        if vocabulary is None:
            raise ValueError("generate: a str prompt needs a vocabulary (with encode/decode) to turn it into ids")
        ids = list(vocabulary.encode(prompt))
    else:
        ids = [int(i) for i in np.asarray(prompt).reshape(-1)]
    if not ids:
        raise ValueError("generate: the prompt is empty; give at least one token")
    rng = np.random.default_rng(seed) if seed is not None else utils.get_rng()
    probabilities = activations.name_of(getattr(out.node.layer, "activation", "linear")) == "softmax"
    new = []
    window = np.full((1, steps), pad_id, dtype=np.int64)
    for _ in range(int(length)):
        context = ids[-steps:]
        window[0, :] = pad_id
        window[0, :len(context)] = context
        scores = model.predict(window, batch_size=1)[0, len(context) - 1]
        if probabilities:
            scores = np.log(np.maximum(scores.astype(np.float64), 1e-30))
        token = _sample(scores, float(temperature), top_k, rng)
        ids.append(token)
        new.append(token)
    new = np.array(new, dtype=np.int32)
    return vocabulary.decode(new) if vocabulary is not None else new
