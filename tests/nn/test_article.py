"""The article's example, as written in design.md but for fewer epochs, learns MNIST,
and nn.mnist_cnn.build_model() (what `numbanet train`, the benchmarks, the GPU check and
the MPI tests build) is the same model.

It runs on the offline 4,000/1,000 sample (the mirrors point at a closed local port),
so the figure is the accuracy on the 1,000 held-out digits.
"""
import socket

import pytest

from numbanet.nn.datasets import mnist as mnist_module

EPOCHS = 4


def closed_port_url():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/"


def describe(model):
    """What makes two compiled models the same: each layer's class and config (its name
    aside), the input shape, the weight shapes and dtypes, the optimizer's class and
    config, the loss's, the metrics."""
    layers = [(type(layer).__name__, {k: v for k, v in layer.get_config().items() if k != "name"})
              for layer in model.layers]
    return {"layers": layers, "input_shape": model.input_shape,
            "weights": [(w.shape, w.dtype) for w in model.get_weights()],
            "optimizer": (type(model.optimizer).__name__, model.optimizer.get_config()),
            "loss": (type(model.loss).__name__, model.loss.get_config()), "metrics": model.metrics}


def test_article_example_reaches_95_percent_and_is_the_builders_model(monkeypatch, tmp_path):
    monkeypatch.setenv("NUMBANET_MNIST_URL", closed_port_url())
    monkeypatch.setenv("NUMBANET_DATA", str(tmp_path / "empty-cache"))
    from numbanet.nn.utils import set_random_seed
    set_random_seed(0)

    # --- the article's code, imports changed from keras to nn, epochs lowered ---
    from numbanet.nn.datasets import mnist
    from numbanet.nn.models import Sequential
    from numbanet.nn.layers import Conv2D, MaxPooling2D, Flatten, Dense
    from numbanet.nn.optimizers import Adam

    with pytest.warns(mnist_module.MNISTSampleWarning):
        (x_train, y_train), (x_test, y_test) = mnist.load_data()
    x_train = x_train.reshape(-1, 28, 28, 1).astype('float32') / 255
    x_test = x_test.reshape(-1, 28, 28, 1).astype('float32') / 255

    model = Sequential()
    model.add(Conv2D(32, kernel_size=(3, 3), activation='relu', input_shape=(28, 28, 1)))
    model.add(MaxPooling2D(pool_size=(2, 2)))
    model.add(Conv2D(64, kernel_size=(3, 3), activation='relu'))
    model.add(MaxPooling2D(pool_size=(2, 2)))
    model.add(Flatten())
    model.add(Dense(128, activation='relu'))
    model.add(Dense(10, activation='softmax'))

    model.compile(optimizer=Adam(), loss='categorical_crossentropy', metrics=['accuracy'])
    model.fit(x_train, y_train, batch_size=128, epochs=EPOCHS, verbose=0)
    test_loss, test_acc = model.evaluate(x_test, y_test, verbose=0)
    print('Test accuracy:', test_acc)
    # --- end of the article's code ---

    from numbanet.nn import mnist_cnn
    built = describe(mnist_cnn.build_model())
    assert built == describe(model)
    assert [name for name, _ in built["layers"]] == ["Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Flatten",
                                                     "Dense", "Dense"]

    assert (x_train.shape, x_test.shape) == ((4000, 28, 28, 1), (1000, 28, 28, 1))
    assert test_acc >= 0.95, f"test accuracy {test_acc:.4f} after {EPOCHS} epochs"
