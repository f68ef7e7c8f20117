"""The LSTM that `numbanet train --model lstm` trains: scikit-learn's 8x8 digits read row
by row (nn.datasets.digits), 8 steps of 8 pixels, classified from the last output.

    x (8, 8) -> LSTM(UNITS) -> Dense(10, softmax)

A task no single row answers: the network has to carry what it saw in the earlier rows
through its state. Adam on sparse categorical cross-entropy, the test digits (a fifth of
each class) as validation data.
"""
UNITS = 64
EPOCHS = 20
BATCH_SIZE = 32
LEARNING_RATE = 1e-2


def build_model(units=UNITS, cell="lstm", name="digits_lstm"):
    """The compiled model: (batch, 8, 8) float rows -> (batch, 10) class probabilities.
    cell: "lstm", "gru" or "simple" (SimpleRNN)."""
    from numbanet.nn.datasets import digits
    from numbanet.nn.layers import GRU, LSTM, Dense, Input, SimpleRNN
    from numbanet.nn.models import Model
    from numbanet.nn.optimizers import Adam

    layers = {"lstm": LSTM, "gru": GRU, "simple": SimpleRNN}
    if cell not in layers:
        raise ValueError(f"digits_lstm: cell must be one of {sorted(layers)}, got {cell!r}")
    rows = Input((digits.TIMESTEPS, digits.FEATURES), name="rows")
    h = layers[cell](units, name=cell)(rows)
    probs = Dense(10, activation="softmax", name="classes")(h)
    model = Model(rows, probs, name=name)
    model.compile(optimizer=Adam(learning_rate=LEARNING_RATE), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model
