"""The article's CNN, the model `numbanet train` trains by default on MNIST:

    (28, 28, 1) -> Conv2D(32, 3x3, relu) -> MaxPooling2D(2x2) -> Conv2D(64, 3x3, relu)
                -> MaxPooling2D(2x2) -> Flatten -> Dense(128, relu) -> Dense(10, softmax)

compiled as the article compiles it: Adam, categorical cross-entropy (integer labels are
accepted as well as one-hot rows), accuracy. tests/nn/test_article.py holds the
article's own code and checks that build_model() builds the same model.
"""


def build_model(input_shape=(28, 28, 1), filters=(32, 64), units=128, classes=10):
    """The compiled model, built on the process's default backend. The defaults are the
    article's; the tests train narrower ones on smaller images (filters, units, input_shape)."""
    from numbanet.nn.layers import Conv2D, Dense, Flatten, MaxPooling2D
    from numbanet.nn.models import Sequential
    from numbanet.nn.optimizers import Adam

    if len(filters) != 2:
        raise ValueError(f"mnist_cnn: filters must hold the two Conv2D layers' filter counts, got {filters!r}")
    model = Sequential()
    model.add(Conv2D(filters[0], kernel_size=(3, 3), activation="relu", input_shape=tuple(input_shape)))
    model.add(MaxPooling2D(pool_size=(2, 2)))
    model.add(Conv2D(filters[1], kernel_size=(3, 3), activation="relu"))
    model.add(MaxPooling2D(pool_size=(2, 2)))
    model.add(Flatten())
    model.add(Dense(units, activation="relu"))
    model.add(Dense(classes, activation="softmax"))
    model.compile(optimizer=Adam(), loss="categorical_crossentropy", metrics=["accuracy"])
    return model
