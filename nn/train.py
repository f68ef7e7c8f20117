"""`numbanet train`: the article's MNIST CNN, trained and evaluated end to end."""
import os
import sys
import time
import warnings

# Defaults sized to finish in a few minutes on two cores (about 20 ms per step of 128
# on an idle 2-core machine: 10 s per epoch of the full 60,000 digits). The offline
# 4,000-digit sample needs more passes: about five to pass 95% on its held-out digits.
DEFAULT_EPOCHS_FULL = 3
DEFAULT_EPOCHS_SAMPLE = 5
DEFAULT_OUTPUT = "mnist_cnn.npz"


def add_arguments(parser):
    parser.add_argument("--epochs", type=_positive_int, default=None,
                        help=f"passes over the training set (default {DEFAULT_EPOCHS_FULL} on the full MNIST set, "
                             f"{DEFAULT_EPOCHS_SAMPLE} on the offline sample)")
    parser.add_argument("--batch-size", type=_positive_int, default=128, help="digits per step (default 128)")
    parser.add_argument("--backend", choices=("auto", "cpu", "gpu"), default=None,
                        help="kernel backend (default NUMBANET_BACKEND, else auto: the GPU when usable)")
    parser.add_argument("--data-dir", default=None,
                        help="MNIST cache directory (default NUMBANET_DATA, else ~/.cache/numbanet)")
    parser.add_argument("--output", default=DEFAULT_OUTPUT,
                        help=f"where to save the trained model (default ./{DEFAULT_OUTPUT})")
    parser.add_argument("--seed", type=_seed, default=0, help="seed for weights and shuffling (default 0)")
    parser.add_argument("--limit", type=_positive_int, default=None,
                        help="train on the first N training digits only (a quick smoke run)")
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                        help="1: progress bar (default), 2: one line per epoch, 0: silent fit")
    return parser


def _positive_int(text):
    import argparse
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _seed(text):
    import argparse
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def build_model():
    """The article's CNN, layer for layer, compiled as the article compiles it."""
    from numbanet.nn.layers import Conv2D, Dense, Flatten, MaxPooling2D
    from numbanet.nn.models import Sequential
    from numbanet.nn.optimizers import Adam

    model = Sequential()
    model.add(Conv2D(32, kernel_size=(3, 3), activation="relu", input_shape=(28, 28, 1)))
    model.add(MaxPooling2D(pool_size=(2, 2)))
    model.add(Conv2D(64, kernel_size=(3, 3), activation="relu"))
    model.add(MaxPooling2D(pool_size=(2, 2)))
    model.add(Flatten())
    model.add(Dense(128, activation="relu"))
    model.add(Dense(10, activation="softmax"))
    model.compile(optimizer=Adam(), loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def main(args):
    from numbanet import kernels
    from numbanet.nn.datasets import mnist
    from numbanet.nn.utils import set_random_seed

    if args.backend is not None:
        try:
            kernels.set_backend(args.backend)
        except kernels.BackendUnavailable as e:
            print(f"numbanet train: {e}", file=sys.stderr)
            return 2
    be = kernels.get_backend()
    set_random_seed(args.seed)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", mnist.MNISTSampleWarning)
        try:
            (x_train, y_train), (x_test, y_test) = mnist.load_data(data_dir=args.data_dir)
        except RuntimeError as e:  # offline and without the sample: the message says what to do
            print(f"numbanet train: {e}", file=sys.stderr)
            return 1
    sample = False
    for w in caught:
        sample = sample or issubclass(w.category, mnist.MNISTSampleWarning)
        # One plain line on stderr: a command's user needs the message, not a source line.
        print(f"numbanet train: warning: {w.message}", file=sys.stderr, flush=True)
    epochs = args.epochs or (DEFAULT_EPOCHS_SAMPLE if sample else DEFAULT_EPOCHS_FULL)
    if args.limit is not None:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]
    x_train = x_train.reshape(-1, 28, 28, 1).astype("float32") / 255
    x_test = x_test.reshape(-1, 28, 28, 1).astype("float32") / 255
    source = "the offline MNIST sample" if sample else "MNIST"
    print(f"numbanet train: backend {be.name}, {source}: {len(x_train)} training and {len(x_test)} test digits, "
          f"{epochs} epoch(s) of batch {args.batch_size}, seed {args.seed}", flush=True)

    model = build_model()
    start = time.perf_counter()
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=epochs, verbose=args.verbose)
    be.synchronize()
    seconds = time.perf_counter() - start
    steps = epochs * -(-len(x_train) // args.batch_size)
    test_loss, test_acc = model.evaluate(x_test, y_test, verbose=0)
    print(f"Training time: {seconds:.1f} s ({seconds / epochs:.1f} s/epoch, "
          f"{1000 * seconds / steps:.0f} ms/step)")
    print(f"Test loss: {float(test_loss):.4f}")
    print(f"Test accuracy: {float(test_acc):.4f}")

    output = os.path.abspath(args.output)
    parent = os.path.dirname(output)
    if parent:
        os.makedirs(parent, exist_ok=True)
    model.save(output)
    print(f"Saved model to {output}")
    return 0
