"""The character-level GPT that `numbanet train --model charlm` trains on Python's
documentation topics (nn.datasets.pydoc_topics).

A pre-norm Transformer decoder built with the functional API:

    ids (T,) -> token Embedding + PositionEmbedding
             -> num_layers x [x + MHA(LN(x), causal), x + Dense(GELU Dense(LN(x)))]
             -> LayerNormalization -> Dense(vocabulary): next-character logits

trained with AdamW (a warm-up and cosine decay of the learning rate, gradients clipped
to a global norm of 1, no decay on biases, LayerNorm scales and embeddings) on
sparse categorical cross-entropy from the logits.
"""
import math

# Sized to train in a few minutes on two cores (`numbanet train --model charlm` prints its
# time per step): a step of 32 x 128 characters is about 11 GFLOP, an epoch 3,268 windows.
SEQUENCE_LENGTH = 128
D_MODEL = 128
NUM_HEADS = 4
NUM_LAYERS = 2
BATCH_SIZE = 32
EPOCHS = 5
PEAK_LEARNING_RATE = 3e-3
WARMUP_STEPS = 100
WEIGHT_DECAY = 0.01
PROMPT = "The assert statement"


def build_model(vocabulary_size, sequence_length=SEQUENCE_LENGTH, d_model=D_MODEL, num_heads=NUM_HEADS,
                num_layers=NUM_LAYERS, mlp_ratio=4, dropout=0.0, name="charlm"):
    """The uncompiled model: (batch, sequence_length) int ids -> (batch, sequence_length,
    vocabulary_size) logits."""
    from numbanet.nn.layers import (Add, Dense, Dropout, Embedding, Input, LayerNormalization, MultiHeadAttention,
                                    PositionEmbedding)
    from numbanet.nn.models import Model

    if d_model % num_heads:
        raise ValueError(f"charlm: d_model={d_model} must be a multiple of num_heads={num_heads}")
    ids = Input((sequence_length,), dtype="int32", name="ids")
    tokens = Embedding(vocabulary_size, d_model, name="token_embedding")(ids)
    positions = PositionEmbedding(sequence_length, name="position_embedding")(tokens)
    x = Add(name="embeddings")([tokens, positions])
    for i in range(num_layers):
        h = LayerNormalization(name=f"block{i}_norm1")(x)
        h = MultiHeadAttention(num_heads, d_model // num_heads, dropout=dropout, name=f"block{i}_attention")(
            h, h, use_causal_mask=True)
        if dropout:
            h = Dropout(dropout, name=f"block{i}_dropout1")(h)
        x = Add(name=f"block{i}_residual1")([x, h])
        h = LayerNormalization(name=f"block{i}_norm2")(x)
        h = Dense(mlp_ratio * d_model, activation="gelu", name=f"block{i}_mlp_in")(h)
        h = Dense(d_model, name=f"block{i}_mlp_out")(h)
        if dropout:
            h = Dropout(dropout, name=f"block{i}_dropout2")(h)
        x = Add(name=f"block{i}_residual2")([x, h])
    x = LayerNormalization(name="final_norm")(x)
    logits = Dense(vocabulary_size, name="logits")(x)
    return Model(ids, logits, name=name)


def compile_model(model, total_steps, peak_learning_rate=PEAK_LEARNING_RATE, warmup_steps=WARMUP_STEPS,
                  weight_decay=WEIGHT_DECAY):
    """AdamW with a linear warm-up to the peak rate and a cosine decay to a tenth of it
    over the rest of `total_steps`; gradients clipped to a global norm of 1."""
    from numbanet.nn import losses, optimizers

    warmup = min(warmup_steps, max(1, total_steps // 2))
    schedule = optimizers.schedules.CosineDecay(0.0, max(1, total_steps - warmup), alpha=0.1,
                                                warmup_target=peak_learning_rate, warmup_steps=warmup)
    opt = optimizers.AdamW(learning_rate=schedule, weight_decay=weight_decay, global_clipnorm=1.0)
    opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta", "embeddings"])
    model.compile(optimizer=opt, loss=losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def perplexity(loss):
    """exp(mean cross-entropy in nats): the effective number of equally likely next characters."""
    return math.exp(min(loss, 700.0))
