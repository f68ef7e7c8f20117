"""SimpleRNN, LSTM, GRU and Bidirectional, with Keras 3's arguments, defaults and weights.

    x = nn.Input((100, 128))
    y = LSTM(256)(x)                                   # (batch, 256): the last output
    seq, h, c = LSTM(256, return_sequences=True, return_state=True)(x, initial_state=[h0, c0])
    y = Bidirectional(GRU(64, return_sequences=True))(x)   # (batch, 100, 128)

Weights in get_weights() order and Keras's shapes (G = 1, 4, 3 gates; Keras's gate order
LSTM i, f, c, o and GRU z, r, h): kernel (features, G * units), recurrent_kernel
(units, G * units), bias (G * units,), a GRU's (2, G * units) (reset_after=True: input
and recurrent biases). Bidirectional holds the forward layer's weights, then the
backward layer's.

The whole sequence runs as one backend op, be.rnn (and be.rnn_backward): one GEMM for
the input projection of every step, then the time loop inside one kernel (see
kernels/cpu/rnn.py). Masks: an Embedding(mask_zero=True) upstream masks its padding steps
(id 0), which carry the state through unchanged, as in Keras; with return_sequences the
mask travels on to the next layer. dropout and recurrent_dropout draw one mask per
sample for the whole sequence (Keras draws the same; with recurrent_dropout Keras 3
draws one per gate, numbanet one for all gates).
"""
from numbanet.kernels import shapes as kshapes
from numbanet.nn import activations, initializers, utils
from numbanet.nn.layers.base import Layer


def _unit_float(owner, name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{owner}: {name} must be a number in [0, 1), got {value!r}")
    return float(value)


def _kernel_activation(owner, name, value):
    spec = activations.get(value)
    if not isinstance(spec, str) or spec not in kshapes.RNN_ACTIVATIONS:
        raise ValueError(f"{owner}: {name} must be one of {sorted(kshapes.RNN_ACTIVATIONS)} (the activations the "
                         f"recurrent kernels compute), got {value!r}")
    return spec


class _Sequence(Layer):
    """What a recurrent layer and Bidirectional share: called as layer(x, initial_state=None),
    they read a sequence and give a sequence (return_sequences) or its last step, then the
    final states (return_state)."""
    supports_masking = True

    def call_from_node(self, tensors, kwargs):
        return self(tensors[0], initial_state=list(tensors[1:]) or None, **kwargs)

    def output_masks(self, mask, inputs, n_outputs):
        """Output masks: the input's mask goes on with the sequence (return_sequences); a
        last output and the states are not masked."""
        return [mask if self.return_sequences else None] + [None] * (n_outputs - 1)


class _Recurrent(_Sequence):
    cell = None
    _state_count = 1

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal", bias_initializer="zeros",
                 kernel_regularizer=None, recurrent_regularizer=None, bias_regularizer=None, dropout=0.0,
                 recurrent_dropout=0.0, seed=None, return_sequences=False, return_state=False, go_backwards=False,
                 stateful=False, unroll=False, zero_output_for_mask=False, input_shape=None, name=None):
        super().__init__(name=name, input_shape=input_shape)
        owner = type(self).__name__
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(f"{owner}: units must be a positive int, got {units!r}")
        if stateful:
            raise ValueError(f"{owner}: stateful=True is not supported (every batch starts from initial_state or "
                             f"zeros); pass the previous final states as initial_state instead")
        self.units = units
        self.activation = _kernel_activation(owner, "activation", activation)
        self.recurrent_activation = _kernel_activation(owner, "recurrent_activation", recurrent_activation)
        self.use_bias = bool(use_bias)
        self._set_weight_args(kernel_initializer=kernel_initializer, recurrent_initializer=recurrent_initializer,
                              bias_initializer=bias_initializer, kernel_regularizer=kernel_regularizer,
                              recurrent_regularizer=recurrent_regularizer, bias_regularizer=bias_regularizer)
        self.dropout = _unit_float(owner, "dropout", dropout)
        self.recurrent_dropout = _unit_float(owner, "recurrent_dropout", recurrent_dropout)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"{owner}: seed must be an int or None, got {seed!r}")
        self.seed = seed
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        # unroll is a graph-building hint in Keras; the fused kernel always loops.
        self.unroll = bool(unroll)
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self.outputs_in_input_order = False   # set by Bidirectional on its backward half

    # ------------------------------------------------------------------ calling
    def parse_call(self, inputs=None, initial_state=None, mask=None, training=None, **kwargs):
        owner = f"layer '{self.name}' ({type(self).__name__})"
        if kwargs:
            raise TypeError(f"{owner} got unexpected arguments {sorted(kwargs)}; it is called as "
                            f"layer(x, initial_state=None)")
        if inputs is None:
            raise TypeError(f"{owner} needs an input tensor")
        if mask is not None:
            raise ValueError(f"{owner}: masks arrive from an Embedding(mask_zero=True) upstream; an explicit mask "
                             f"argument is not supported")
        if training is not None:
            raise ValueError(f"{owner}: training is set by fit/predict, not at the call")
        states = [] if initial_state is None else (list(initial_state) if isinstance(initial_state, (list, tuple))
                                                   else [initial_state])
        if states and len(states) != self._state_count:
            raise ValueError(f"{owner}: initial_state must be {self._state_count} tensor(s) "
                             f"({'[h, c]' if self._state_count == 2 else '[h]'}), got {len(states)}")
        for s in states:
            if getattr(s, "per_sample_shape", None) != (self.units,):
                raise ValueError(f"{owner}: each initial state must have shape (batch, {self.units}), got "
                                 f"{getattr(s, 'shape', s)!r}")
        return [inputs] + states, {}

    def output_shapes(self, input_shape, kwargs):
        shape = tuple(input_shape)
        if len(shape) != 2:
            raise ValueError(f"layer '{self.name}' ({type(self).__name__}) expects per-sample shape "
                             f"(timesteps, features), got {shape}")
        out = [self.compute_output_shape(shape)]
        if self.return_state:
            out += [(self.units,)] * self._state_count
        return out

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units) if self.return_sequences else (self.units,)

    # ------------------------------------------------------------------ weights
    @property
    def _gates(self):
        return kshapes.RNN_GATES[self.cell]

    def build_weights(self, input_shape):
        features = input_shape[-1]
        g, u = self._gates, self.units
        self.add_weight("kernel", (features, g * u), self.kernel_initializer, self.kernel_regularizer)
        self.add_weight("recurrent_kernel", (u, g * u), self.recurrent_initializer, self.recurrent_regularizer)
        if self.use_bias:
            bias = self._initial_bias()
            self.add_weight("bias", bias.shape, bias, self.bias_regularizer)

    def _initial_bias(self):
        return initializers.initialize(self.bias_initializer, kshapes.rnn_bias_shape(self.cell, self.units),
                                       self.dtype)

    # ------------------------------------------------------------------ running
    def _dropout_mask(self, n, width, rate):
        """(n, width): 0 or 1 / (1 - rate), drawn by the backend's counter-based dropout."""
        if self.seed is None:
            seed = int(utils.get_rng().integers(0, 2 ** 63 - 1))
        else:
            # A fixed layer seed still gives each call its own mask, as Keras's SeedGenerator does.
            self._seed_calls = getattr(self, "_seed_calls", 0) + 1
            seed = (self.seed * 1000003 + self._seed_calls) % (2 ** 63)
        base = self.be.empty((n, width), self.dtype)   # the step's workspace: no allocation per step
        self.be.zero(base)
        _, mask = self.be.dropout(base, rate, seed)
        return mask

    def _op_kwargs(self):
        return dict(cell=self.cell, activation=self.activation, recurrent_activation=self.recurrent_activation,
                    go_backwards=self.go_backwards, zero_output_for_mask=self.zero_output_for_mask,
                    outputs_in_input_order=self.outputs_in_input_order)

    def run_node(self, inputs, training, logits, kwargs):
        be = self.be
        x = inputs[0]
        states = inputs[1:]
        mask = kwargs.get("mask")
        n = x.shape[0]
        dmask = self._dropout_mask(n, x.shape[2], self.dropout) if training and self.dropout else None
        rmask = (self._dropout_mask(n, self.units, self.recurrent_dropout)
                 if training and self.recurrent_dropout else None)
        h0 = states[0] if states else None
        c0 = states[1] if len(states) > 1 else None
        y, h, c, ws = be.rnn(x, self.params["kernel"], self.params["recurrent_kernel"], self.params.get("bias"),
                             h0=h0, c0=c0, mask=mask, return_sequences=self.return_sequences,
                             dropout_mask=dmask, recurrent_dropout_mask=rmask, **self._op_kwargs())
        self._saved_call = (x, h0, c0, mask, dmask, rmask, ws, len(states))
        outs = [y]
        if self.return_state:
            outs += [h] + ([c] if self.cell == "lstm" else [])
        return outs

    def backward_node(self, douts, logits):
        be = self.be
        x, h0, c0, mask, dmask, rmask, ws, n_states = self._saved_call
        dy = douts[0]
        if dy is None:
            shape = (x.shape[0], x.shape[1], self.units) if self.return_sequences else (x.shape[0], self.units)
            dy = be.empty(shape, self.dtype)
            be.zero(dy)
        dh = douts[1] if self.return_state else None
        dc = douts[2] if self.return_state and self.cell == "lstm" else None
        dx, dk, dr, db, dh0, dc0 = be.rnn_backward(
            x, self.params["kernel"], self.params["recurrent_kernel"], self.params.get("bias"), ws, dy, h0=h0, c0=c0,
            mask=mask, dh=dh, dc=dc, dropout_mask=dmask, recurrent_dropout_mask=rmask, compute_dx=self.need_dx,
            **self._op_kwargs())
        self.grads = {"kernel": dk, "recurrent_kernel": dr}
        if self.use_bias:
            self.grads["bias"] = db
        return [dx] + [dh0, dc0][:n_states]

    def get_config(self):
        cfg = super().get_config()
        cfg.update(units=self.units, activation=self.activation, use_bias=self.use_bias,
                   **self._weight_args_config(("kernel", "recurrent", "bias")), dropout=self.dropout,
                   recurrent_dropout=self.recurrent_dropout, seed=self.seed,
                   return_sequences=self.return_sequences, return_state=self.return_state,
                   go_backwards=self.go_backwards, unroll=self.unroll,
                   zero_output_for_mask=self.zero_output_for_mask)
        if self.cell != "simple":
            cfg["recurrent_activation"] = self.recurrent_activation
        return cfg


class SimpleRNN(_Recurrent):
    """Keras's SimpleRNN: h = activation(x @ kernel + bias + h_prev @ recurrent_kernel)."""
    cell = "simple"

    def __init__(self, units, activation="tanh", use_bias=True, **kwargs):
        super().__init__(units, activation=activation, recurrent_activation="sigmoid", use_bias=use_bias, **kwargs)


class LSTM(_Recurrent):
    """Keras's LSTM (gates i, f, c, o); unit_forget_bias starts the forget gate's bias at 1."""
    cell = "lstm"
    _state_count = 2

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 unit_forget_bias=True, **kwargs):
        super().__init__(units, activation=activation, recurrent_activation=recurrent_activation, use_bias=use_bias,
                         **kwargs)
        self.unit_forget_bias = bool(unit_forget_bias)

    def _initial_bias(self):
        bias = super()._initial_bias()
        if self.unit_forget_bias:
            bias[self.units:2 * self.units] = 1
        return bias

    def get_config(self):
        cfg = super().get_config()
        cfg["unit_forget_bias"] = self.unit_forget_bias
        return cfg


class GRU(_Recurrent):
    """Keras's GRU with reset_after=True (gates z, r, h; bias (2, 3 * units): input and
    recurrent biases, the reset gate applied after the recurrent product)."""
    cell = "gru"

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid", use_bias=True, reset_after=True,
                 **kwargs):
        if reset_after is not True:
            raise ValueError("GRU: only reset_after=True (Keras's default, the variant with separate input and "
                             f"recurrent biases) is supported, got reset_after={reset_after!r}")
        super().__init__(units, activation=activation, recurrent_activation=recurrent_activation, use_bias=use_bias,
                         **kwargs)
        self.reset_after = True

    def get_config(self):
        cfg = super().get_config()
        cfg["reset_after"] = True
        return cfg


_CLASSES = {"SimpleRNN": SimpleRNN, "LSTM": LSTM, "GRU": GRU}


class Bidirectional(_Sequence):
    """Keras's Bidirectional(layer, merge_mode="concat", backward_layer=None): the layer runs
    forward and a copy with go_backwards=True runs from the end; their outputs are merged
    ("concat", "sum", "ave"), the backward one in input order. Weights: the forward
    layer's, then the backward layer's."""
    _MODES = ("concat", "sum", "ave")

    def __init__(self, layer, merge_mode="concat", backward_layer=None, input_shape=None, name=None):
        if isinstance(layer, dict):
            layer = _CLASSES[layer["class_name"]](**layer["config"])
        if isinstance(backward_layer, dict):
            backward_layer = _CLASSES[backward_layer["class_name"]](**backward_layer["config"])
        if not isinstance(layer, _Recurrent):
            raise ValueError(f"Bidirectional: layer must be a SimpleRNN, LSTM or GRU, got {type(layer).__name__}")
        if merge_mode not in self._MODES:
            raise ValueError(f"Bidirectional: merge_mode must be one of {self._MODES}, got {merge_mode!r}")
        super().__init__(name=name, input_shape=input_shape or layer.input_shape)
        config = layer.get_config()
        config.pop("input_shape", None)
        config["name"] = "forward_" + layer.name.removeprefix("forward_")
        self.forward_layer = type(layer)(**config)
        if backward_layer is None:
            config = dict(config, go_backwards=not layer.go_backwards,
                          name="backward_" + layer.name.removeprefix("backward_"))
            backward_layer = type(layer)(**config)
        elif not isinstance(backward_layer, _Recurrent):
            raise ValueError(f"Bidirectional: backward_layer must be a SimpleRNN, LSTM or GRU, got "
                             f"{type(backward_layer).__name__}")
        self.backward_layer = backward_layer
        f, b = self.forward_layer, self.backward_layer
        if f.go_backwards == b.go_backwards:
            raise ValueError("Bidirectional: the forward and backward layers must differ in go_backwards")
        for attr in ("return_sequences", "return_state", "units"):
            if getattr(f, attr) != getattr(b, attr):
                raise ValueError(f"Bidirectional: the forward and backward layers must have the same {attr}")
        # Keras's rule: padded steps give zeros in a bidirectional sequence output.
        for sub in (f, b):
            sub.zero_output_for_mask = sub.return_sequences
        b.outputs_in_input_order = True
        self.merge_mode = merge_mode
        self.return_sequences, self.return_state = f.return_sequences, f.return_state

    def parse_call(self, inputs=None, initial_state=None, mask=None, training=None, **kwargs):
        owner = f"layer '{self.name}' (Bidirectional)"
        if kwargs or mask is not None or training is not None:
            raise TypeError(f"{owner} is called as layer(x, initial_state=None)")
        states = [] if initial_state is None else list(initial_state)
        n = self.forward_layer._state_count
        if states and len(states) != 2 * n:
            raise ValueError(f"{owner}: initial_state must be {2 * n} tensors (the forward layer's states, then "
                             f"the backward layer's), got {len(states)}")
        return [inputs] + states, {}

    def output_shapes(self, input_shape, kwargs):
        shapes = self.forward_layer.output_shapes(input_shape, kwargs)
        width = 2 * self.forward_layer.units if self.merge_mode == "concat" else self.forward_layer.units
        first = tuple(shapes[0][:-1]) + (width,)
        return [first] + shapes[1:] * 2

    def compute_output_shape(self, input_shape):
        return self.output_shapes(input_shape, {})[0]

    def build(self, input_shape, be, dtype):
        out = super().build(input_shape, be, dtype)
        for sub in (self.forward_layer, self.backward_layer):
            sub.build(input_shape, be, dtype)
        sides = (("forward", self.forward_layer), ("backward", self.backward_layer))
        self.params = {f"{side}/{k}": v for side, sub in sides for k, v in sub.params.items()}
        self.regularizers = {f"{side}/{k}": r for side, sub in sides for k, r in sub.regularizers.items()}
        return out

    def _sync(self):
        """The sublayers read the weights held here (set_weights and load replace them)."""
        for side, sub in (("forward", self.forward_layer), ("backward", self.backward_layer)):
            sub.params = {k: self.params[f"{side}/{k}"] for k in sub.params}
            sub.be, sub.need_dx = self.be, self.need_dx

    def run_node(self, inputs, training, logits, kwargs):
        be = self.be
        self._sync()
        n = self.forward_layer._state_count
        states = inputs[1:]
        outs_f = self.forward_layer.run_node([inputs[0]] + states[:n], training, False, kwargs)
        outs_b = self.backward_layer.run_node([inputs[0]] + states[n:], training, False, kwargs)
        yf, yb = outs_f[0], outs_b[0]
        if self.merge_mode == "concat":
            y = be.concatenate([yf, yb], axis=-1)
        else:
            y = be.add(yf, yb)
            if self.merge_mode == "ave":
                y = be.scale(y, 0.5)
        return [y] + outs_f[1:] + outs_b[1:]

    def backward_node(self, douts, logits):
        be = self.be
        dy = douts[0]
        u = self.forward_layer.units
        n_state_outs = len(douts[1:]) // 2
        if dy is None:
            dyf = dyb = None
        elif self.merge_mode == "concat":
            dyf, dyb = be.split(dy, [u, u], axis=-1)
        else:
            dyf = dyb = dy if self.merge_mode == "sum" else be.scale(dy, 0.5)
        dxf = self.forward_layer.backward_node([dyf] + list(douts[1:1 + n_state_outs]), False)
        dxb = self.backward_layer.backward_node([dyb] + list(douts[1 + n_state_outs:]), False)
        self.grads = {f"{side}/{k}": v for side, sub in (("forward", self.forward_layer),
                                                          ("backward", self.backward_layer))
                      for k, v in sub.grads.items()}
        dx = None
        if self.need_dx:
            dx = be.add(dxf[0], dxb[0], out=dxf[0])
        return [dx] + dxf[1:] + dxb[1:]

    def clear(self):
        super().clear()
        self.forward_layer.clear()
        self.backward_layer.clear()

    def saved_state(self):
        return {"fwd": self.forward_layer.saved_state(), "bwd": self.backward_layer.saved_state()}

    def restore_state(self, state):
        self.forward_layer.restore_state(state["fwd"])
        self.backward_layer.restore_state(state["bwd"])

    def move_to(self, be):
        super().move_to(be)
        self._sync()

    def get_config(self):
        cfg = super().get_config()
        cfg.pop("input_shape", None)
        layer_cfg = lambda sub: {"class_name": type(sub).__name__, "config": sub.get_config()}  # noqa: E731
        cfg.update(layer=layer_cfg(self.forward_layer), backward_layer=layer_cfg(self.backward_layer),
                   merge_mode=self.merge_mode)
        if self.input_shape is not None:
            cfg["input_shape"] = list(self.input_shape)
        return cfg
