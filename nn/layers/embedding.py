"""Embedding (token ids -> vectors) and PositionEmbedding (a learned vector per position)."""
from numbanet.nn import initializers
from numbanet.nn.layers.base import Layer


def _positive_int(owner, name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}")
    return value


class Embedding(Layer):
    """Embedding(input_dim, output_dim): integer ids of any shape -> (..., output_dim) rows of
    the (input_dim, output_dim) table `embeddings`. Ids outside [0, input_dim) are refused
    with an error naming the id. The gradient is a deterministic scatter-add.

    mask_zero=True: id 0 is padding. The output carries a mask (the ids themselves: zero
    marks a padded step) that the recurrent layers downstream skip, as in Keras; Dense,
    Dropout, Activation and LayerNormalization pass it on. The loss does not read it."""
    reads_ids = True

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform", embeddings_regularizer=None,
                 mask_zero=False, input_length=None, input_shape=None, name=None):
        # input_length: the tutorials' (Keras 2's) way to give a Sequential its sequence
        # length, the same as input_shape=(input_length,). Keras 3 ignores it with a
        # warning and learns the length from the first batch; numbanet builds on it.
        if input_length is not None:
            length = _positive_int("Embedding", "input_length", input_length)
            if input_shape is not None and not (isinstance(input_shape, (list, tuple))
                                                and tuple(input_shape) == (length,)):
                raise ValueError(f"Embedding: input_length={length} and input_shape={input_shape!r} disagree; "
                                 f"give one of them")
            input_shape = (length,)
        super().__init__(name=name, input_shape=input_shape)
        self.input_dim = _positive_int("Embedding", "input_dim", input_dim)
        self.output_dim = _positive_int("Embedding", "output_dim", output_dim)
        self._set_weight_args(embeddings_initializer=embeddings_initializer,
                              embeddings_regularizer=embeddings_regularizer)
        self.mask_zero = bool(mask_zero)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def build_weights(self, input_shape):
        self.add_weight("embeddings", (self.input_dim, self.output_dim), self.embeddings_initializer,
                        self.embeddings_regularizer)

    def forward(self, x, training=False, logits=False, ids_checked=False):
        self._saved_ids, self._saved_checked = x, ids_checked
        return self.be.embedding(self.params["embeddings"], x, _ids_checked=ids_checked)

    def run_node(self, inputs, training, logits, kwargs):
        # Integer tensors only come from a model's inputs, and fit/evaluate/predict range-check
        # those on the host against every Embedding that reads them: the gpu need not scan
        # the ids again (a round trip per call).
        return [self.forward(inputs[0], training=training, ids_checked=True)]

    def output_masks(self, mask, inputs, n_outputs):
        return [inputs[0] if self.mask_zero else None]

    def backward(self, dy, logits=False):
        be = self.be
        d = be.embedding_backward(self._saved_ids, dy, self.input_dim, _ids_checked=bool(self._saved_checked))
        self.grads = {"embeddings": d}
        return None   # integer ids have no gradient

    def get_config(self):
        cfg = super().get_config()
        cfg.update(input_dim=self.input_dim, output_dim=self.output_dim, **self._weight_args_config(("embeddings",)),
                   mask_zero=self.mask_zero)
        return cfg


class PositionEmbedding(Layer):
    """keras_hub.layers.PositionEmbedding(sequence_length): called on a (batch, steps,
    features) tensor, returns the learned (steps, features) position vectors (weights
    `embeddings`, (sequence_length, features)) broadcast over the batch; add it to the
    token embeddings with Add(). Its input gives only the shape: no gradient flows into it."""

    def __init__(self, sequence_length, initializer="glorot_uniform", input_shape=None, name=None):
        super().__init__(name=name, input_shape=input_shape)
        self.sequence_length = _positive_int("PositionEmbedding", "sequence_length", sequence_length)
        self.initializer = initializers.get(initializer)
        self._zero_rows = {}

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(f"layer '{self.name}' (PositionEmbedding) expects per-sample shape (steps, features), "
                             f"got {tuple(input_shape)}")
        if input_shape[0] > self.sequence_length:
            raise ValueError(f"layer '{self.name}' (PositionEmbedding): {input_shape[0]} steps exceed "
                             f"sequence_length={self.sequence_length}")
        return tuple(input_shape)

    def build_weights(self, input_shape):
        self.add_weight("embeddings", (self.sequence_length, input_shape[1]), self.initializer)

    def _zeros(self, n):
        # Row indices all 0: take_rows copies the one (steps * features) row to every sample.
        if n not in self._zero_rows:
            self._zero_rows[n] = self.be.zeros((n,), "int32")
        return self._zero_rows[n]

    def forward(self, x, training=False, logits=False):
        be = self.be
        n, steps, feat = x.shape[0], self.input_shape[0], self.input_shape[1]
        self._saved_n = n
        table = be.reshape(self.params["embeddings"][:steps], (1, steps * feat))
        y = be.take_rows(table, self._zeros(n), _indices_checked=True)
        return be.reshape(y, (n, steps, feat))

    def backward(self, dy, logits=False):
        be = self.be
        steps, feat = self.input_shape
        d = be.reshape(be.column_sum(be.reshape(dy, (self._saved_n, steps * feat))), (steps, feat))
        if steps < self.sequence_length:
            d = be.concatenate([d, be.zeros((self.sequence_length - steps, feat), d.dtype)], axis=0)
        self.grads = {"embeddings": d}
        return None

    def move_to(self, be):
        super().move_to(be)
        self._zero_rows = {}

    def get_config(self):
        cfg = super().get_config()
        cfg.update(sequence_length=self.sequence_length, initializer=self.initializer)
        return cfg
