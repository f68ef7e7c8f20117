"""The table between numbanet's layers and Keras 3's, for .keras files (nn/keras_file.py).

One Entry per Keras class name, in LAYERS: the numbanet class, how a Keras config becomes
numbanet arguments (`read`) and back (`write`), and where Keras keeps the layer's
variables in model.weights.h5 with their shapes (`variables`), which the loader checks
against the file before the model is built; for a layer called on several tensors or
with keyword arguments, how a call is written (`call`), and what Keras's build_config
says (`build_config`). Adding a layer is one entry, with its reader and writer (a Conv3D, say):

    def _read_conv3d(c):          # c: a keras_config.KerasConfig over Keras's config
        c.only("groups", 1)       # an argument numbanet supports at one value only
        return dict(filters=c.take("filters"), kernel_size=c.take("kernel_size"), ...,
                    activation=c.activation(), kernel_initializer=c.initializer("kernel_initializer"))

    _entry("Conv3D", Conv3D, read=_read_conv3d,
           write=lambda l: _write_weighted(l, f"layer '{l.name}' (Conv3D)", filters=l.filters, ...),
           variables=lambda l, s: [("", _kernel_bias()(l, l.kernel_size + (s[-1], l.filters), (l.filters,)))])

A layer with non-trainable variables (BatchNormalization's moving statistics) lists them
after the trainable ones in `variables`, in Keras's creation order. Its round trip and
its shapes are then checked by tests/nn/test_keras_layers.py and test_keras_file.py once
a model in tests/nn/keras_cases.py ROUND_TRIP holds it (test_keras_layers fails until one
does).

A Keras argument numbanet has no counterpart for is refused unless it holds the value
numbanet behaves as (Conv2D's groups=1, trainable=True, constraints None,
...), with an error naming the layer, the argument and its value; an argument Keras adds
in a later version is accepted while it is null or false. Random seeds (of initializers,
Dropout) are not carried over: they only choose draws that the file's weights replace.
"""
from numbanet.kernels import shapes as kshapes
from numbanet.nn.keras_config import (KerasConfig, Unsupported, obj, policy, policy_name, read_activation,
                                      snake_case, write_activation, write_initializer, write_regularizer)
from numbanet.nn.layers import (GRU, LSTM, Activation, Add, AveragePooling1D, AveragePooling2D, Bidirectional,
                                Concatenate, Conv1D, Conv2D, Conv2DTranspose, Dense, Dropout, Embedding, Flatten,
                                GlobalAveragePooling1D, GlobalAveragePooling2D, GlobalMaxPooling1D, GlobalMaxPooling2D,
                                InputLayer, LayerNormalization, MaxPooling1D, MaxPooling2D, MultiHeadAttention, Permute,
                                PositionEmbedding, Reshape, SimpleRNN, UpSampling2D)
from numbanet.nn.layers import BatchNormalization


def _channels_last(c):
    c.only("data_format", "channels_last", None)


# ---------------------------------------------------------------------- the entries
class Entry:
    """One Keras layer class. read(KerasConfig) -> numbanet kwargs (the name aside);
    write(layer) -> the Keras config (name, trainable, dtype added by the caller);
    variables(layer, input shape) -> [(path under the layer's group, [(param, shape)])];
    call(inputs, kwargs) -> Keras's (args, kwargs) for a node (tensors as they are)."""

    def __init__(self, keras_name, cls, read, write, variables=None, call=None, build_config=None,
                 module="keras.layers", registered_name=None):
        self.keras_name, self.cls = keras_name, cls
        self.read, self.write = read, write
        self.variables = variables or (lambda layer, shape: [])
        self.call = call or _call_one
        self.build_config = build_config or _build_input_shape
        self.module, self.registered_name = module, registered_name


def _call_one(inputs, kwargs):
    return ([inputs[0]] if len(inputs) == 1 else [list(inputs)]), dict(kwargs)


def _batch(shape):
    return [None] + list(shape)


def _build_input_shape(layer):
    shape = layer.input_shape
    if shape is None:
        return None
    if layer.multi_input:
        return {"input_shape": [_batch(s) for s in shape]}
    return {"input_shape": _batch(shape)}


def _kernel_bias(prefix=""):
    def variables(layer, kernel, bias):
        out = [(prefix + "kernel", kernel)]
        if layer.use_bias:
            out.append((prefix + "bias", bias))
        return out
    return variables


def _read_weight_args(c, names, stats=()):
    """Keras's arguments of the weights `names` (kernel, bias, ...): `<name>_initializer` and
    `<name>_regularizer`, no constraint and no activity regularizer; the non-trainable
    `stats` (BatchNormalization's moving statistics) have an initializer only."""
    c.no_constraints(*names)
    out = {f"{n}_initializer": c.initializer(f"{n}_initializer") for n in names + stats}
    out.update({f"{n}_regularizer": c.regularizer(f"{n}_regularizer") for n in names})
    return out


def _write_weight_args(layer, names, stats=(), activity=True):
    """_read_weight_args's arguments from the layer, in Keras's key order; `activity`: the
    layer's Keras config has an activity_regularizer (null)."""
    cfg = {f"{n}_initializer": write_initializer(getattr(layer, f"{n}_initializer")) for n in names + stats}
    cfg.update({f"{n}_regularizer": write_regularizer(getattr(layer, f"{n}_regularizer")) for n in names})
    if activity:
        cfg["activity_regularizer"] = None
    cfg.update({f"{n}_constraint": None for n in names})
    return cfg


def _read_dense(c):
    c.only("lora_rank", None)
    c.only("quantization_config", None)
    return dict(units=c.take("units"), activation=c.activation(), use_bias=c.take("use_bias", True),
                **_read_weight_args(c, ("kernel", "bias")))


def _write_weighted(layer, owner, **extra):
    cfg = dict(extra)
    cfg.update(activation=write_activation(owner, layer.activation), use_bias=layer.use_bias,
               **_write_weight_args(layer, ("kernel", "bias")))
    return cfg


def _listed(value):
    """A layer's window argument -> Keras's list: a 2-D layer holds a tuple, a 1-D one an int."""
    return list(value) if isinstance(value, tuple) else [value]


def _read_conv(rank, groups=True):
    """The reader of a convolution of `rank` spatial axes (Conv1D, Conv2D, Conv2DTranspose
    with groups=False: Keras's transpose has no groups argument)."""
    ones = (1,) * rank

    def read(c):
        _channels_last(c)
        if groups:
            c.only("groups", 1)
        return dict(filters=c.take("filters"), kernel_size=tuple(c.take("kernel_size")),
                    strides=tuple(c.take("strides", ones)), padding=c.take("padding", "valid"),
                    dilation_rate=tuple(c.take("dilation_rate", ones)), **_read_conv_weights(c))
    return read


def _read_conv_weights(c):
    """The kernel and bias arguments every convolution shares."""
    return dict(activation=c.activation(), use_bias=c.take("use_bias", True),
                **_read_weight_args(c, ("kernel", "bias")))


def _read_conv2d_transpose(c):
    output_padding = c.take("output_padding", None)
    return dict(_read_conv(2, groups=False)(c),
                output_padding=None if output_padding is None else tuple(output_padding))


def _write_conv(layer):
    """Conv1D, Conv2D and Conv2DTranspose, keys in Keras's order."""
    cfg = dict(filters=layer.filters, kernel_size=_listed(layer.kernel_size), strides=_listed(layer.strides),
               padding=layer.padding)
    transpose = isinstance(layer, Conv2DTranspose)
    if transpose:
        cfg["output_padding"] = None if layer.output_padding is None else list(layer.output_padding)
    cfg.update(data_format="channels_last", dilation_rate=_listed(layer.dilation_rate))
    if not transpose:
        cfg["groups"] = 1
    return _write_weighted(layer, f"layer '{layer.name}' ({type(layer).__name__})", **cfg)


def _read_upsampling2d(c):
    _channels_last(c)
    return dict(size=tuple(c.take("size", (2, 2))), interpolation=c.take("interpolation", "nearest"))


def _read_pool(c):
    """MaxPooling and AveragePooling, 1-D and 2-D."""
    _channels_last(c)
    strides = c.take("strides", None)
    return dict(pool_size=tuple(c.take("pool_size")), strides=None if strides is None else tuple(strides),
                padding=c.take("padding", "valid"))


def _write_pool(layer):
    return dict(pool_size=_listed(layer.pool_size), strides=_listed(layer.strides), padding=layer.padding,
                data_format="channels_last")


def _read_global(c):
    _channels_last(c)
    return dict(keepdims=c.take("keepdims", False))


def _write_global(layer):
    return dict(data_format="channels_last", keepdims=layer.keepdims)


def _read_dropout(c):
    c.only("noise_shape", None)
    return dict(rate=c.take("rate"))


def _read_embedding(c):
    c.only("lora_rank", None)
    c.only("quantization_config", None)
    c.only("input_length", None)
    return dict(input_dim=c.take("input_dim"), output_dim=c.take("output_dim"), mask_zero=c.take("mask_zero", False),
                **_read_weight_args(c, ("embeddings",)))


def _write_embedding(layer):
    return dict(input_dim=layer.input_dim, output_dim=layer.output_dim, **_write_weight_args(layer, ("embeddings",)),
                mask_zero=layer.mask_zero)


_NORM_WEIGHTS = ("beta", "gamma")
_BATCH_STATS = ("moving_mean", "moving_variance")


def _read_layer_norm(c):
    c.only("rms_scaling", False)
    return dict(axis=c.take("axis", -1), epsilon=c.take("epsilon", 1e-3), center=c.take("center", True),
                scale=c.take("scale", True), **_read_weight_args(c, _NORM_WEIGHTS))


def _write_layer_norm(layer):
    return dict(axis=[-1], epsilon=layer.epsilon, center=layer.center, scale=layer.scale, rms_scaling=False,
                **_write_weight_args(layer, _NORM_WEIGHTS, activity=False))


def _layer_norm_variables(layer, shape):
    d = shape[-1]
    return [("", [(k, (d,)) for k, on in (("gamma", layer.scale), ("beta", layer.center)) if on])]


def _read_batch_norm(c):
    c.only("synchronized", False)
    c.only("renorm", False)
    c.only("renorm_clipping", None)
    c.take("renorm_momentum", None)   # used by renorm only, refused above
    return dict(axis=c.take("axis", -1), momentum=c.take("momentum", 0.99), epsilon=c.take("epsilon", 1e-3),
                center=c.take("center", True), scale=c.take("scale", True),
                **_read_weight_args(c, _NORM_WEIGHTS, _BATCH_STATS))


def _write_batch_norm(layer):
    return dict(axis=-1, momentum=layer.momentum, epsilon=layer.epsilon, center=layer.center, scale=layer.scale,
                **_write_weight_args(layer, _NORM_WEIGHTS, _BATCH_STATS, activity=False), synchronized=False)


def _batch_norm_variables(layer, shape):
    """Keras's creation order: gamma, beta (trainable), then the moving statistics."""
    d = (shape[-1],)
    return [("", [(k, d) for k, on in (("gamma", layer.scale), ("beta", layer.center), ("moving_mean", True),
                                        ("moving_variance", True)) if on])]


def _read_mha(c):
    c.only("attention_axes", None, (1,), (-2,))
    c.only("use_gate", False)
    c.only("sliding_window", None)
    c.only("flash_attention", None)
    return dict(num_heads=c.take("num_heads"), key_dim=c.take("key_dim"), value_dim=c.take("value_dim", None),
                dropout=c.take("dropout", 0.0), use_bias=c.take("use_bias", True),
                output_shape=c.take("output_shape", None), **_read_weight_args(c, ("kernel", "bias")))


def _write_mha(layer):
    return dict(num_heads=layer.num_heads, key_dim=layer.key_dim, value_dim=layer.value_dim, dropout=layer.dropout,
                use_bias=layer.use_bias, output_shape=layer.output_dim, attention_axes=[1],
                **_write_weight_args(layer, ("kernel", "bias")))


def _mha_variables(layer, shapes):
    dq, dv = shapes[0][1], shapes[1][1]
    dk = shapes[2][1] if len(shapes) == 3 else dv
    h, kd, vd = layer.num_heads, layer.key_dim, layer.value_dim
    dout = layer.output_dim or dq
    out = []
    for keras_name, name, kshape, bshape in (("query_dense", "query", (dq, h, kd), (h, kd)),
                                              ("key_dense", "key", (dk, h, kd), (h, kd)),
                                              ("value_dense", "value", (dv, h, vd), (h, vd)),
                                              ("output_dense", "attention_output", (h, vd, dout), (dout,))):
        out.append((keras_name, _kernel_bias(f"{name}/")(layer, kshape, bshape)))
    return out


def _mha_call(inputs, kwargs):
    kw = {k: v for k, v in kwargs.items() if v}
    if len(inputs) == 3:
        kw["key"] = inputs[2]
    return [inputs[0], inputs[1]], kw


def _mha_build_config(layer):
    names = ("query_shape", "value_shape", "key_shape")
    return {"shapes_dict": {n: _batch(s) for n, s in zip(names, layer.input_shape)}}


_RECURRENT_WEIGHTS = ("kernel", "recurrent", "bias")


def _read_recurrent(cell):
    def read(c):
        c.only("stateful", False)
        c.only("use_cudnn", "auto", None, False)
        kw = dict(units=c.take("units"), activation=read_activation(c.owner, c.take("activation", "tanh")),
                  use_bias=c.take("use_bias", True), **_read_weight_args(c, _RECURRENT_WEIGHTS),
                  dropout=c.take("dropout", 0.0),
                  recurrent_dropout=c.take("recurrent_dropout", 0.0),
                  return_sequences=c.take("return_sequences", False), return_state=c.take("return_state", False),
                  go_backwards=c.take("go_backwards", False), unroll=c.take("unroll", False),
                  zero_output_for_mask=c.take("zero_output_for_mask", False))
        if cell != "simple":
            kw["recurrent_activation"] = read_activation(c.owner, c.take("recurrent_activation", "sigmoid"))
        if cell == "lstm":
            kw["unit_forget_bias"] = c.take("unit_forget_bias", True)
        if cell == "gru":
            c.only("reset_after", True)
        return kw
    return read


def _write_recurrent(layer):
    owner = f"layer '{layer.name}' ({type(layer).__name__})"
    cfg = dict(units=layer.units, activation=write_activation(owner, layer.activation), use_bias=layer.use_bias,
               **_write_weight_args(layer, _RECURRENT_WEIGHTS), dropout=layer.dropout,
               recurrent_dropout=layer.recurrent_dropout, seed=layer.seed, return_sequences=layer.return_sequences,
               return_state=layer.return_state, go_backwards=layer.go_backwards, stateful=False,
               unroll=layer.unroll, zero_output_for_mask=layer.zero_output_for_mask)
    if layer.cell != "simple":
        cfg["recurrent_activation"] = write_activation(owner, layer.recurrent_activation)
    if layer.cell == "lstm":
        cfg["unit_forget_bias"] = layer.unit_forget_bias
    if layer.cell == "gru":
        cfg["reset_after"] = True
    return cfg


def _recurrent_params(layer, features, prefix=""):
    g, u = kshapes.RNN_GATES[layer.cell], layer.units
    out = [(prefix + "kernel", (features, g * u)), (prefix + "recurrent_kernel", (u, g * u))]
    if layer.use_bias:
        out.append((prefix + "bias", kshapes.rnn_bias_shape(layer.cell, u)))
    return out


def _recurrent_call(inputs, kwargs):
    kw = {k: v for k, v in kwargs.items() if v}
    if len(inputs) > 1:
        kw["initial_state"] = list(inputs[1:])
    return [inputs[0]], kw


def _build_first_input(layer):
    return None if layer.input_shape is None else {"input_shape": _batch(layer.input_shape)}


_RECURRENT = {"SimpleRNN": SimpleRNN, "LSTM": LSTM, "GRU": GRU}


def nested(owner, value):
    """A Keras layer config nested in another's (Bidirectional's layer) -> a numbanet layer."""
    if not isinstance(value, dict) or value.get("class_name") not in _RECURRENT:
        raise Unsupported(f"{owner}: its layer must be a SimpleRNN, LSTM or GRU, got "
                          f"{value.get('class_name') if isinstance(value, dict) else value!r}")
    return make_layer(value)


def _read_bidirectional(c):
    merge = c.only("merge_mode", "concat", "sum", "ave")
    backward = c.take("backward_layer", None)
    return dict(layer=nested(c.owner, c.take("layer")), merge_mode=merge,
                backward_layer=None if backward is None else nested(c.owner, backward))


def _sub(layer):
    return {**serialize(layer), "build_config": _build_first_input(layer)}


def _write_bidirectional(layer):
    return dict(merge_mode=layer.merge_mode, layer=_sub(layer.forward_layer), backward_layer=_sub(layer.backward_layer))


def _bidirectional_variables(layer, shape):
    return [(f"{side}_layer/cell", _recurrent_params(sub, shape[-1], f"{side}/"))
            for side, sub in (("forward", layer.forward_layer), ("backward", layer.backward_layer))]


def _read_position_embedding(c):
    c.only("seq_axis", None, -2, 1)
    return dict(sequence_length=c.take("sequence_length"), initializer=c.initializer("initializer"))


def _read_input(c):
    c.only("sparse", False)
    c.only("ragged", False)
    c.only("optional", False)
    shape = c.take("batch_shape", None) or c.take("batch_input_shape", None)   # Keras 3's name, then 2's
    if shape is None:
        shape = [None] + list(c.take("shape"))
    if not isinstance(shape, list) or not shape or shape[0] is not None:
        raise Unsupported(f"{c.owner}: batch_shape must start with the batch axis (null), got {shape!r}")
    dtype = c.take("dtype", None)
    # A float input reads the model's float type (the model's dtype policy says which).
    return dict(shape=tuple(shape[1:]), dtype=None if dtype in (None, "float32", "float64") else dtype)


LAYERS = {}


def _entry(keras_name, cls, **kw):
    LAYERS[keras_name] = Entry(keras_name, cls, **kw)


_entry("InputLayer", InputLayer, read=_read_input, write=None)
_entry("Dense", Dense, read=_read_dense,
       write=lambda l: _write_weighted(l, f"layer '{l.name}' (Dense)", units=l.units),
       variables=lambda l, s: [("", _kernel_bias()(l, (s[-1], l.units), (l.units,)))])
_entry("Conv2D", Conv2D, read=_read_conv(2), write=_write_conv,
       variables=lambda l, s: [("", _kernel_bias()(l, l.kernel_size + (s[-1], l.filters), (l.filters,)))])
for _cls in (MaxPooling2D, AveragePooling2D):
    _entry(_cls.__name__, _cls, read=_read_pool, write=_write_pool)
for _cls in (GlobalAveragePooling1D, GlobalAveragePooling2D):
    _entry(_cls.__name__, _cls, read=_read_global, write=_write_global)
_entry("Flatten", Flatten, read=lambda c: _channels_last(c) or {}, write=lambda l: dict(data_format="channels_last"))
_entry("Dropout", Dropout, read=_read_dropout, write=lambda l: dict(rate=l.rate, seed=None, noise_shape=None))
_entry("Activation", Activation, read=lambda c: dict(activation=c.activation()),
       write=lambda l: dict(activation=write_activation(f"layer '{l.name}' (Activation)", l.activation)))
_entry("Reshape", Reshape, read=lambda c: dict(target_shape=tuple(c.take("target_shape"))),
       write=lambda l: dict(target_shape=list(l.target_shape)))
_entry("Permute", Permute, read=lambda c: dict(dims=tuple(c.take("dims"))), write=lambda l: dict(dims=list(l.dims)))
_entry("Add", Add, read=lambda c: {}, write=lambda l: {})
_entry("Concatenate", Concatenate, read=lambda c: dict(axis=c.take("axis", -1)), write=lambda l: dict(axis=l.axis))
_entry("Embedding", Embedding, read=_read_embedding, write=_write_embedding,
       variables=lambda l, s: [("", [("embeddings", (l.input_dim, l.output_dim))])])
_entry("LayerNormalization", LayerNormalization, read=_read_layer_norm, write=_write_layer_norm,
       variables=_layer_norm_variables)
_entry("BatchNormalization", BatchNormalization, read=_read_batch_norm, write=_write_batch_norm,
       variables=_batch_norm_variables)
_entry("MultiHeadAttention", MultiHeadAttention, read=_read_mha, write=_write_mha, variables=_mha_variables,
       call=_mha_call, build_config=_mha_build_config)
for _name, _cls in _RECURRENT.items():
    _entry(_name, _cls, read=_read_recurrent(_cls.cell), write=_write_recurrent,
           variables=lambda l, s: [("cell", _recurrent_params(l, s[-1]))], call=_recurrent_call,
           build_config=_build_first_input)
_entry("Bidirectional", Bidirectional, read=_read_bidirectional, write=_write_bidirectional,
       variables=_bidirectional_variables, call=_recurrent_call, build_config=_build_first_input)
_entry("PositionEmbedding", PositionEmbedding, read=_read_position_embedding,
       write=lambda l: dict(sequence_length=l.sequence_length, initializer=write_initializer(l.initializer)),
       variables=lambda l, s: [("", [("embeddings", (l.sequence_length, s[-1]))])],
       module="keras_hub.src.layers.modeling.position_embedding", registered_name="keras_hub>PositionEmbedding")
_entry("Conv1D", Conv1D, read=_read_conv(1), write=_write_conv,
       variables=lambda l, s: [("", _kernel_bias()(l, (l.kernel_size, s[-1], l.filters), (l.filters,)))])
_entry("Conv2DTranspose", Conv2DTranspose, read=_read_conv2d_transpose, write=_write_conv,
       variables=lambda l, s: [("", _kernel_bias()(l, l.kernel_size + (l.filters, s[-1]), (l.filters,)))])
for _cls in (MaxPooling1D, AveragePooling1D):
    _entry(_cls.__name__, _cls, read=_read_pool, write=_write_pool)
for _cls in (GlobalMaxPooling1D, GlobalMaxPooling2D):
    _entry(_cls.__name__, _cls, read=_read_global, write=_write_global)
_entry("UpSampling2D", UpSampling2D, read=_read_upsampling2d,
       write=lambda l: dict(size=list(l.size), data_format="channels_last", interpolation=l.interpolation))

# Keras classes that hold code, not configuration: refused by name.
CODE_LAYERS = ("Lambda", "TFSMLayer", "TorchModuleWrapper", "JaxLayer", "FlaxLayer")


def entry_for(class_name, owner):
    if class_name in CODE_LAYERS:
        raise Unsupported(f"{owner}: a {class_name} layer holds Python code, which numbanet never runs from a file; "
                          f"rebuild the model without it")
    if class_name not in LAYERS:
        raise Unsupported(f"{owner}: Keras layer class {class_name!r} has no numbanet counterpart (numbanet reads "
                          f"{', '.join(sorted(k for k in LAYERS if k != 'InputLayer'))})")
    return LAYERS[class_name]


def make_layer(entry_config, dtype=None):
    """A Keras layer entry ({"class_name", "config", ...}) -> a numbanet layer (not built)."""
    if not isinstance(entry_config, dict):
        raise Unsupported(f"a layer entry must be a JSON object, got {type(entry_config).__name__}")
    cfg = entry_config.get("config")
    name = cfg.get("name") if isinstance(cfg, dict) else None
    owner = f"layer {name!r} ({entry_config.get('class_name')})"
    entry = entry_for(entry_config.get("class_name"), owner)
    registered, module = entry_config.get("registered_name"), entry_config.get("module")
    if registered not in (None, entry.registered_name, entry.keras_name) or not (
            module in (None, "keras", entry.module) or str(module).startswith("keras.")):
        raise Unsupported(f"{owner}: a custom class (module {module!r}, registered as {registered!r}) that numbanet "
                          f"does not know")
    c = KerasConfig(cfg, owner)
    kwargs = entry.read(c)
    c.finish()
    got = policy_name(owner, c.config.get("dtype"))
    if entry.cls is not InputLayer and got is not None and dtype is not None and got != dtype:
        raise Unsupported(f"{owner}: dtype {got} differs from the model's {dtype}; numbanet runs a model in one "
                          f"float type")
    try:
        return entry.cls(name=name, **kwargs)
    except (TypeError, ValueError) as exc:
        raise Unsupported(f"{owner}: {exc}") from None


def entry_of(layer):
    for entry in LAYERS.values():
        if type(layer) is entry.cls:
            return entry
    raise Unsupported(f"layer '{layer.name}': {type(layer).__name__} has no Keras counterpart in a .keras file")


def serialize(layer, dtype=None):
    """A numbanet layer -> its Keras layer entry (without build_config and nodes)."""
    entry = entry_of(layer)
    cfg = {"name": layer.name, "trainable": True}
    if dtype is not None:
        cfg["dtype"] = policy(dtype)
    cfg.update(entry.write(layer))
    return obj(entry.module, entry.keras_name, cfg, entry.registered_name)


# Layers whose numbanet kernels apply an Embedding(mask_zero=True) padding mask; layers
# with supports_masking pass it on unchanged (Dense, Dropout, Activation, LayerNormalization),
# as in Keras.
MASK_APPLYING = (SimpleRNN, LSTM, GRU, Bidirectional)


def mask_sources(nodes):
    """{id(node): the token-id tensor whose padding (id 0) masks the node's input, or None},
    as numbanet's Model propagates masks, for nodes [(layer, inputs, outputs)] in graph
    order. A mask that reaches a layer numbanet neither applies it in nor passes it
    through (GlobalAveragePooling1D, MultiHeadAttention, merging, reshaping layers) is
    refused: Keras applies or carries it there, so the two would compute different things."""
    masks, out = {}, {}
    for node_id, layer, inputs, outputs in nodes:
        mask = masks.get(id(inputs[0])) if inputs else None
        out[node_id] = mask
        if mask is not None and not isinstance(layer, MASK_APPLYING) and not layer.supports_masking:
            raise Unsupported(f"layer '{layer.name}' ({type(layer).__name__}) receives the padding mask of an "
                              f"Embedding(mask_zero=True); Keras applies or carries it there and numbanet does not")
        for t, m in zip(outputs, layer.output_masks(mask, list(inputs), len(outputs))):
            if m is not None:
                masks[id(t)] = m
    return out


def group_names(layers):
    """{layer name: its group in model.weights.h5}: Keras names them by class, in model
    order (dense, dense_1, ...), not by the layer's own name."""
    used, out = {}, {}
    for layer in layers:
        base = snake_case(entry_of(layer).keras_name)
        used[base] = used.get(base, -1) + 1
        out[layer.name] = base if used[base] == 0 else f"{base}_{used[base]}"
    return out
