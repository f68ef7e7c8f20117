"""MultiHeadAttention, with Keras's arguments, call signature and weights.

    mha = MultiHeadAttention(num_heads=4, key_dim=32)
    y = mha(query, value, key=None, use_causal_mask=False, return_attention_scores=False)

Weights, in get_weights() order and Keras's shapes (d_q, d_k, d_v: the inputs' feature
sizes; d_out: d_q unless output_shape is given):
    query/kernel (d_q, heads, key_dim),   query/bias (heads, key_dim)
    key/kernel (d_k, heads, key_dim),     key/bias (heads, key_dim)
    value/kernel (d_v, heads, value_dim), value/bias (heads, value_dim)
    attention_output/kernel (heads, value_dim, d_out), attention_output/bias (d_out,)

Each projection is one GEMM over (batch * steps) rows: a (d, heads, key_dim) kernel is a
(d, heads * key_dim) matrix, and its (batch, steps, heads * key_dim) output is already
the (batch, steps, heads, key_dim) layout the attention op takes, without a transpose.
Attention itself runs as the fused be.attention (scores never stored) unless dropout is
active or the scores are asked for; then as batched_matmul + softmax + dropout over
(batch, heads, steps, key_dim), with transposes in and out.
"""
import math

from numbanet.nn import utils
from numbanet.nn.layers.base import Layer


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"MultiHeadAttention: {name} must be a positive int, got {value!r}")
    return value


class MultiHeadAttention(Layer):
    multi_input = True
    _PROJECTIONS = ("query", "key", "value")

    def __init__(self, num_heads, key_dim, value_dim=None, dropout=0.0, use_bias=True, output_shape=None,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, name=None):
        super().__init__(name=name)
        self.num_heads = _positive_int("num_heads", num_heads)
        self.key_dim = _positive_int("key_dim", key_dim)
        self.value_dim = self.key_dim if value_dim is None else _positive_int("value_dim", value_dim)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"MultiHeadAttention: dropout must be a number in [0, 1), got {dropout!r}")
        self.dropout = float(dropout)
        self.use_bias = bool(use_bias)
        if isinstance(output_shape, (list, tuple)):
            if len(output_shape) != 1:
                raise ValueError(f"MultiHeadAttention: output_shape must be an int or a 1-tuple (the output's "
                                 f"feature size), got {output_shape!r}")
            output_shape = output_shape[0]
        self.output_dim = None if output_shape is None else _positive_int("output_shape", output_shape)
        self._set_weight_args(kernel_initializer=kernel_initializer, bias_initializer=bias_initializer,
                              kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer)

    # ------------------------------------------------------------------ calling
    def parse_call(self, query=None, value=None, key=None, use_causal_mask=False, return_attention_scores=False,
                   attention_mask=None, training=None, **kwargs):
        if kwargs:
            raise TypeError(f"layer '{self.name}' (MultiHeadAttention) got unexpected arguments {sorted(kwargs)}; "
                            f"it is called as mha(query, value, key=None, use_causal_mask=False, "
                            f"return_attention_scores=False)")
        if query is None or value is None:
            raise TypeError(f"layer '{self.name}' (MultiHeadAttention) needs query and value tensors")
        if attention_mask is not None:
            raise ValueError(f"layer '{self.name}' (MultiHeadAttention): attention_mask is not supported; "
                             f"use_causal_mask=True gives the causal mask")
        if training is not None:
            raise ValueError(f"layer '{self.name}' (MultiHeadAttention): training is set by fit/predict, "
                             f"not at the call")
        tensors = [query, value] + ([] if key is None else [key])
        return tensors, {"use_causal_mask": bool(use_causal_mask),
                         "return_attention_scores": bool(return_attention_scores)}

    def call_from_node(self, tensors, kwargs):
        key = tensors[2] if len(tensors) == 3 else None
        return self(tensors[0], tensors[1], key=key, **kwargs)

    def output_shapes(self, input_shape, kwargs):
        shapes = [tuple(s) for s in input_shape]
        for what, s in zip(("query", "value", "key"), shapes):
            if len(s) != 2:
                raise ValueError(f"layer '{self.name}' (MultiHeadAttention): {what} must have per-sample shape "
                                 f"(steps, features), got {s}")
        if len(shapes) == 3 and shapes[2][0] != shapes[1][0]:
            raise ValueError(f"layer '{self.name}' (MultiHeadAttention): key has {shapes[2][0]} steps but value "
                             f"has {shapes[1][0]}; they must match")
        tq, tk = shapes[0][0], shapes[1][0]
        out = [self.compute_output_shape(shapes)]
        if kwargs.get("return_attention_scores"):
            out.append((self.num_heads, tq, tk))
        return out

    def compute_output_shape(self, input_shape):
        q = tuple(input_shape[0])
        return (q[0], self.output_dim or q[1])

    # ------------------------------------------------------------------ weights
    def build_weights(self, input_shape):
        dq, dv = input_shape[0][1], input_shape[1][1]
        dk = input_shape[2][1] if len(input_shape) == 3 else dv
        h = self.num_heads
        shapes = {"query": ((dq, h, self.key_dim), (h, self.key_dim)),
                  "key": ((dk, h, self.key_dim), (h, self.key_dim)),
                  "value": ((dv, h, self.value_dim), (h, self.value_dim)),
                  "attention_output": ((h, self.value_dim, self.output_dim or dq), (self.output_dim or dq,))}
        for name, (kshape, bshape) in shapes.items():
            # Keras's fans for these kernels: the feature axes in, the projected axes out.
            fan = (kshape[0] * kshape[1], kshape[2]) if name == "attention_output" else (kshape[0], h * kshape[2])
            self.add_weight(f"{name}/kernel", kshape, self.kernel_initializer, self.kernel_regularizer, fans=fan)
            if self.use_bias:
                self.add_weight(f"{name}/bias", bshape, self.bias_initializer, self.bias_regularizer)

    def _kernel2d(self, name):
        """A projection kernel as the matrix its GEMM multiplies by."""
        w = self.params[f"{name}/kernel"]
        rows = w.shape[0] * w.shape[1] if name == "attention_output" else w.shape[0]
        return self.be.reshape(w, (rows, w.size // rows))

    def _stacked(self, what):
        """The query, key and value kernels (or biases) side by side: (d, 3 heads key_dim)."""
        if what == "bias" and not self.use_bias:
            return None
        parts = [self._kernel2d(n) if what == "kernel" else self._bias1d(n) for n in self._PROJECTIONS]
        return self.be.concatenate(parts, axis=parts[0].ndim - 1)

    def _bias1d(self, name):
        b = self.params.get(f"{name}/bias")
        return None if b is None else self.be.reshape(b, (b.size,))

    # ------------------------------------------------------------------ forward
    def run_node(self, inputs, training, logits, kwargs):
        be = self.be
        causal = kwargs.get("use_causal_mask", False)
        scores_out = kwargs.get("return_attention_scores", False)
        query, value = inputs[0], inputs[1]
        key = inputs[2] if len(inputs) == 3 else value
        n, tq, tk = query.shape[0], query.shape[1], value.shape[1]
        h, kd, vd = self.num_heads, self.key_dim, self.value_dim
        # Self-attention (one tensor as query, key and value): the three projections are one
        # GEMM against the kernels side by side, (d, 3 * heads * key_dim) wide: a wide product
        # keeps the micro-kernel's tiles full where three narrow ones run at a lower rate, and
        # the backward's dx is one product instead of three products and two sums.
        self._saved_self = key is query and value is query
        x2 = {}
        if self._saved_self:
            x2["query"] = x2["key"] = x2["value"] = be.reshape(query, (n * tq, query.shape[2]))
            qkv = be.matmul(x2["query"], self._stacked("kernel"), bias=self._stacked("bias"))
            q, k, v = (be.reshape(a, (n, tq, h, a.shape[1] // h))
                       for a in be.split(qkv, [h * kd, h * kd, h * vd], axis=1))
        else:
            proj = {}
            for name, x, t, width in (("query", query, tq, kd), ("key", key, tk, kd), ("value", value, tk, vd)):
                x2[name] = be.reshape(x, (n * t, x.shape[2]))
                y = be.matmul(x2[name], self._kernel2d(name), bias=self._bias1d(name))
                proj[name] = be.reshape(y, (n, t, h, width))
            q, k, v = proj["query"], proj["key"], proj["value"]
        drop = training and self.dropout > 0.0
        self._saved_fused = not (drop or scores_out)
        scores = None
        if self._saved_fused:
            out, lse = be.attention(q, k, v, causal=causal)
            self._saved_lse = lse
        else:
            out, scores = self._attention_unfused(q, k, v, causal, drop)
        o2 = be.reshape(out, (n * tq, h * vd))
        y = be.matmul(o2, self._kernel2d("attention_output"), bias=self._bias1d("attention_output"))
        y = be.reshape(y, (n, tq, y.shape[1]))
        self._saved_x2, self._saved_q, self._saved_k, self._saved_v = x2, q, k, v
        self._saved_out, self._saved_o2 = out, o2
        self._saved_shapes = (n, tq, tk, len(inputs), causal)
        return [y, scores] if scores_out else [y]

    def _attention_unfused(self, q, k, v, causal, drop):
        """-> (out (n, tq, h, vd), the softmax scores (n, h, tq, tk))."""
        be = self.be
        qh, kh, vh = (be.transpose(a, (0, 2, 1, 3)) for a in (q, k, v))
        s = be.scale(be.batched_matmul(qh, kh, trans_b=True), 1.0 / math.sqrt(self.key_dim))
        p = be.softmax(s, causal=causal)
        if drop:
            seed = utils.draw_seed()
            pd, mask = be.dropout(p, self.dropout, seed)
        else:
            pd, mask = p, None
        oh = be.batched_matmul(pd, vh)
        self._saved_heads = (qh, kh, vh, p, pd, mask)
        return be.transpose(oh, (0, 2, 1, 3)), p

    # ------------------------------------------------------------------ backward
    def backward_node(self, douts, logits):
        be = self.be
        n, tq, tk, n_inputs, causal = self._saved_shapes
        h, vd = self.num_heads, self.value_dim
        dy = douts[0]
        dscores = douts[1] if len(douts) > 1 else None
        grads = {}
        if dy is None:
            dout = be.zeros(self._saved_out.shape, self._saved_out.dtype)
            wo = self.params["attention_output/kernel"]
            grads["attention_output/kernel"] = be.zeros(wo.shape, wo.dtype)
            if self.use_bias:
                grads["attention_output/bias"] = be.zeros((wo.shape[2],), wo.dtype)
        else:
            do2 = be.reshape(dy, (n * tq, dy.shape[2]))
            dwo = be.matmul(self._saved_o2, do2, trans_a=True)
            grads["attention_output/kernel"] = be.reshape(dwo, (h, vd, dwo.shape[1]))
            if self.use_bias:
                grads["attention_output/bias"] = be.column_sum(do2)
            dout = be.reshape(be.matmul(do2, self._kernel2d("attention_output"), trans_b=True), (n, tq, h, vd))
        if self._saved_fused:
            dq, dk, dv = be.attention_backward(self._saved_q, self._saved_k, self._saved_v, self._saved_out, dout,
                                               self._saved_lse, causal=causal)
        else:
            dq, dk, dv = self._attention_unfused_backward(dout, dscores)
        if self._saved_self:
            return self._self_projections_backward(dq, dk, dv, grads, n_inputs)
        dx = {}
        for name, d, t in (("query", dq, tq), ("key", dk, tk), ("value", dv, tk)):
            x2 = self._saved_x2[name]
            d2 = be.reshape(d, (n * t, d.size // (n * t)))
            dw = be.matmul(x2, d2, trans_a=True)
            w = self.params[f"{name}/kernel"]
            grads[f"{name}/kernel"] = be.reshape(dw, tuple(w.shape))
            if self.use_bias:
                grads[f"{name}/bias"] = be.reshape(be.column_sum(d2), (h, d2.shape[1] // h))
            if self.need_dx:
                dx[name] = be.reshape(be.matmul(d2, self._kernel2d(name), trans_b=True), (n, t, x2.shape[1]))
        self._set_grads(grads)
        if not self.need_dx:
            return [None] * n_inputs
        if n_inputs == 3:
            return [dx["query"], dx["value"], dx["key"]]
        # key defaulted to value: both projections read the value tensor.
        return [dx["query"], be.add(dx["value"], dx["key"], out=dx["value"])]

    def _set_grads(self, grads):
        self.grads = {k: grads[k] for k in self.params}   # in get_weights order

    def _self_projections_backward(self, dq, dk, dv, grads, n_inputs):
        """The fused projections' backward: one GEMM each for the stacked kernel's and the
        input's gradients, whose three parts (query, key, value) the stacked dW splits into."""
        be = self.be
        x2 = self._saved_x2["query"]
        rows = x2.shape[0]
        widths = [dq.size // rows, dk.size // rows, dv.size // rows]
        dqkv = be.concatenate([be.reshape(d, (rows, w)) for d, w in zip((dq, dk, dv), widths)], axis=1)
        dw = be.matmul(x2, dqkv, trans_a=True)
        for name, part in zip(self._PROJECTIONS, be.split(dw, widths, axis=1)):
            grads[f"{name}/kernel"] = be.reshape(part, tuple(self.params[f"{name}/kernel"].shape))
        if self.use_bias:
            for name, part in zip(self._PROJECTIONS, be.split(be.reshape(be.column_sum(dqkv), (1, sum(widths))),
                                                              widths, axis=1)):
                grads[f"{name}/bias"] = be.reshape(part, tuple(self.params[f"{name}/bias"].shape))
        self._set_grads(grads)
        if not self.need_dx:
            return [None] * n_inputs
        dx = be.reshape(be.matmul(dqkv, self._stacked("kernel"), trans_b=True), tuple(self._saved_q.shape[:2]) +
                        (x2.shape[1],))
        # The whole input gradient goes to the query slot; the value slot (the same tensor)
        # adds nothing more.
        return [dx] + [None] * (n_inputs - 1)

    def _attention_unfused_backward(self, dout, dscores):
        be = self.be
        # The causal mask needs no care here: masked scores are exact zeros in p, so
        # softmax_backward gives them zero gradient.
        qh, kh, vh, p, pd, mask = self._saved_heads
        doh = be.transpose(dout, (0, 2, 1, 3))
        dpd = be.batched_matmul(doh, vh, trans_b=True)
        dvh = be.batched_matmul(pd, doh, trans_a=True)
        dp = dpd if mask is None else be.dropout_backward(dpd, mask)
        if dscores is not None:
            dp = be.add(dp, dscores)
        ds = be.scale(be.softmax_backward(p, dp), 1.0 / math.sqrt(self.key_dim))
        dqh = be.batched_matmul(ds, kh)
        dkh = be.batched_matmul(ds, qh, trans_a=True)
        return tuple(be.transpose(a, (0, 2, 1, 3)) for a in (dqh, dkh, dvh))

    def get_config(self):
        cfg = super().get_config()
        cfg.update(num_heads=self.num_heads, key_dim=self.key_dim, value_dim=self.value_dim, dropout=self.dropout,
                   use_bias=self.use_bias, output_shape=self.output_dim, **self._weight_args_config(("kernel", "bias")))
        return cfg
