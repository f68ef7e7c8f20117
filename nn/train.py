"""`numbanet train`: the article's MNIST CNN (the default); with --model charlm, a
character-level GPT on Python's documentation topics; with --model lstm, an LSTM on
scikit-learn's 8x8 digits read row by row. Trained and evaluated end to end."""
import os
import sys
import time
import warnings

# Epochs sized to finish in a few minutes on two cores (`numbanet train` prints its time
# per step); the offline 4,000-digit sample needs about five passes to pass 95% on its
# held-out digits (tests/nn/test_article.py trains it).
DEFAULT_EPOCHS_FULL = 3
DEFAULT_EPOCHS_SAMPLE = 5
DEFAULT_OUTPUT = "mnist_cnn.npz"
DEFAULT_CHARLM_OUTPUT = "charlm.npz"
DEFAULT_LSTM_OUTPUT = "digits_lstm.npz"


def add_arguments(parser):
    from numbanet.nn import charlm, digits_lstm
    parser.add_argument("--model", choices=("cnn", "charlm", "lstm"), default="cnn",
                        help="cnn: the article's MNIST CNN (default); charlm: a character-level GPT on Python's "
                             "documentation topics; lstm: an LSTM on scikit-learn's 8x8 digits, read row by row")
    parser.add_argument("--epochs", type=_positive_int, default=None,
                        help=f"passes over the training set (cnn: {DEFAULT_EPOCHS_FULL} on the full MNIST set, "
                             f"{DEFAULT_EPOCHS_SAMPLE} on the offline sample; charlm: {charlm.EPOCHS}; lstm: "
                             f"{digits_lstm.EPOCHS})")
    parser.add_argument("--batch-size", type=_positive_int, default=None,
                        help=f"samples per step (cnn: 128 digits; charlm: {charlm.BATCH_SIZE} windows; lstm: "
                             f"{digits_lstm.BATCH_SIZE} digits)")
    parser.add_argument("--backend", choices=("auto", "cpu", "gpu"), default=None,
                        help="kernel backend (default NUMBANET_BACKEND, else auto: the GPU when usable)")
    parser.add_argument("--data-dir", default=None,
                        help="MNIST cache directory (default NUMBANET_DATA, else ~/.cache/numbanet)")
    parser.add_argument("--output", default=None,
                        help=f"where to save the trained model (default ./{DEFAULT_OUTPUT}, charlm: "
                             f"./{DEFAULT_CHARLM_OUTPUT}, lstm: ./{DEFAULT_LSTM_OUTPUT})")
    parser.add_argument("--seed", type=_non_negative_int, default=0, help="seed for weights and shuffling (default 0)")
    parser.add_argument("--limit", type=_positive_int, default=None,
                        help="train on the first N training samples only (a quick smoke run)")
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1,
                        help="1: progress bar (default), 2: one line per epoch, 0: silent fit")
    parser.add_argument("--plot", default=None, metavar="PATH",
                        help="save the loss and metric per epoch (training and validation) as a picture, e.g. "
                             "curves.png (needs matplotlib: pip install 'numbanet[plot]')")
    charlm_group = parser.add_argument_group("charlm")
    charlm_group.add_argument("--prompt", default=charlm.PROMPT,
                              help=f"text the sample after training starts from (default {charlm.PROMPT!r})")
    charlm_group.add_argument("--sample-length", type=_non_negative_int, default=300,
                              help="characters to generate after training (default 300; 0: none)")
    charlm_group.add_argument("--temperature", type=_non_negative_float, default=0.8,
                              help="sampling temperature (default 0.8; 0: always the likeliest character)")
    charlm_group.add_argument("--top-k", type=_positive_int, default=None,
                              help="sample among the k likeliest characters only (default: all)")
    return parser


def _int_at_least(minimum, expected):
    """An argparse type: an int >= minimum, refused with `expected` named."""
    def parse(text):
        import argparse
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value
    return parse


_non_negative_int = _int_at_least(0, "an integer >= 0")
_positive_int = _int_at_least(1, "a positive integer")


def _non_negative_float(text):
    import argparse
    import math
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def _save(model, path):
    output = os.path.abspath(path)
    parent = os.path.dirname(output)
    if parent:
        os.makedirs(parent, exist_ok=True)
    model.save(output)   # process 0 only, when several train together
    _say(f"Saved model to {output}")


def _plot(history, path, title):
    from numbanet.nn.plotting import plot_history
    try:
        written = plot_history(history, path, title=title)
    except ImportError as e:
        print(f"numbanet train: {e}", file=sys.stderr)
        return 1
    _say(f"Saved training curves to {os.path.abspath(written)}")
    return 0


def _check_plot_path(path):
    """Fail before training, not after: the picture's folder must exist, matplotlib be there."""
    if path is None:
        return None
    import importlib.util
    if importlib.util.find_spec("matplotlib") is None:
        return "--plot needs matplotlib: pip install 'numbanet[plot]'"
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        return f"--plot: the folder {parent} does not exist"
    return None


def _say(*args, **kwargs):
    """print, on process 0 only when several train together (mpiexec -n N numbanet train)."""
    from numbanet.nn import distributed
    if distributed.is_chief():
        print(*args, **kwargs)


def _processes(batch_size):
    """', 2 processes (MPI) of 64 rows each' under mpiexec, else ''."""
    from numbanet.nn import distributed
    n = distributed.size()
    if n == 1:
        return ""
    return f" split over {n} processes (MPI, {batch_size // n}{'+' if batch_size % n else ''} rows each)"


def main(args):
    from numbanet import kernels
    from numbanet.nn import distributed
    from numbanet.nn.utils import set_random_seed

    # Under `mpiexec -n N` (N > 1) the processes train data-parallel; alone, nothing changes.
    distributed.init()
    problem = _check_plot_path(args.plot)
    if problem:
        print(f"numbanet train: {problem}", file=sys.stderr)
        return 2
    if args.backend is not None:
        try:
            kernels.set_backend(args.backend)
        except kernels.BackendUnavailable as e:
            print(f"numbanet train: {e}", file=sys.stderr)
            return 2
    set_random_seed(args.seed)
    if args.model == "charlm":
        return _main_charlm(args, kernels.get_backend())
    if args.model == "lstm":
        return _main_lstm(args, kernels.get_backend())
    return _main_cnn(args, kernels.get_backend())


def _main_cnn(args, be):
    from numbanet.nn import mnist_cnn
    from numbanet.nn.datasets import mnist

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
        _say(f"numbanet train: warning: {w.message}", file=sys.stderr, flush=True)
    x_train, y_train, epochs, batch_size, steps_per_epoch = _run_size(
        args, x_train, y_train, DEFAULT_EPOCHS_SAMPLE if sample else DEFAULT_EPOCHS_FULL, 128)
    x_train = x_train.reshape(-1, 28, 28, 1).astype("float32") / 255
    x_test = x_test.reshape(-1, 28, 28, 1).astype("float32") / 255
    source = "the offline MNIST sample" if sample else "MNIST"
    _say(f"numbanet train: backend {be.name}, {source}: {len(x_train)} training and {len(x_test)} test digits, "
         f"{epochs} epoch(s) of batch {batch_size}{_processes(batch_size)}, seed {args.seed}", flush=True)

    model = mnist_cnn.build_model()
    history, seconds = _fit_timed(be, model, x_train, y_train, batch_size, epochs, args.verbose,
                                  (x_test, y_test) if args.plot else None)
    return _test_and_save(args, model, history, seconds, epochs, steps_per_epoch, (x_test, y_test),
                          args.output or DEFAULT_OUTPUT, "MNIST CNN (validation: the test digits)")


def _run_size(args, x_train, y_train, epochs, batch_size):
    """--limit, --epochs and --batch-size over the model's defaults -> (x_train, y_train,
    epochs, batch size, steps per epoch)."""
    if args.limit is not None:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]
    batch_size = args.batch_size or batch_size
    return x_train, y_train, args.epochs or epochs, batch_size, -(-len(x_train) // batch_size)


def _fit_timed(be, model, x, y, batch_size, epochs, verbose, validation_data, callbacks=None):
    """model.fit, timed until the backend has finished -> (history, seconds)."""
    start = time.perf_counter()
    history = model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=verbose, validation_data=validation_data,
                        callbacks=callbacks)
    be.synchronize()
    return history, time.perf_counter() - start


def _say_training_time(seconds, epochs, steps_per_epoch):
    _say(f"Training time: {seconds:.1f} s ({seconds / epochs:.1f} s/epoch, "
         f"{1000 * seconds / (epochs * steps_per_epoch):.0f} ms/step)")


def _test_and_save(args, model, history, seconds, epochs, steps_per_epoch, test, output, title):
    """A classifier's end of training: the test figures, the saved model, the curves."""
    from numbanet.nn import distributed
    test_loss, test_acc = model.evaluate(*test, verbose=0)
    _say_training_time(seconds, epochs, steps_per_epoch)
    _say(f"Test loss: {float(test_loss):.4f}")
    _say(f"Test accuracy: {float(test_acc):.4f}")
    _save(model, output)
    if args.plot and distributed.is_chief():
        return _plot(history, args.plot, title)
    return 0


def _main_charlm(args, be):
    from numbanet.nn import charlm, distributed
    from numbanet.nn.callbacks import Callback
    from numbanet.nn.datasets import pydoc_topics
    from numbanet.nn.generation import generate

    (x_train, y_train), (x_val, y_val), vocab = pydoc_topics.load_data(charlm.SEQUENCE_LENGTH)
    x_train, y_train, epochs, batch_size, steps_per_epoch = _run_size(args, x_train, y_train, charlm.EPOCHS,
                                                                      charlm.BATCH_SIZE)
    _say(f"numbanet train: backend {be.name}, Python's documentation topics (pydoc_data): {len(x_train)} training "
         f"and {len(x_val)} validation windows of {charlm.SEQUENCE_LENGTH} characters, vocabulary {vocab.size}, "
         f"{epochs} epoch(s) of batch {batch_size}{_processes(batch_size)}, seed {args.seed}", flush=True)
    model = charlm.compile_model(charlm.build_model(vocab.size), total_steps=epochs * steps_per_epoch)
    _say(f"numbanet train: {model.count_params():,} parameters, {charlm.NUM_LAYERS} blocks of {charlm.NUM_HEADS} "
          f"heads, d_model {charlm.D_MODEL}", flush=True)

    class Perplexity(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if args.verbose:
                _say(f"Epoch {epoch + 1}: validation loss {logs['val_loss']:.4f} (perplexity "
                      f"{charlm.perplexity(logs['val_loss']):.2f}), accuracy {logs['val_accuracy']:.4f}", flush=True)

    history, seconds = _fit_timed(be, model, x_train, y_train, batch_size, epochs, args.verbose, (x_val, y_val),
                                  callbacks=[Perplexity()])
    val_loss = history.history["val_loss"][-1]
    _say_training_time(seconds, epochs, steps_per_epoch)
    _say(f"Validation loss: {val_loss:.4f}")
    _say(f"Validation perplexity: {charlm.perplexity(val_loss):.2f}")
    _say(f"Validation accuracy: {history.history['val_accuracy'][-1]:.4f}")
    _save(model, args.output or DEFAULT_CHARLM_OUTPUT)
    if args.sample_length and distributed.is_chief():
        text = generate(model, args.prompt, args.sample_length, temperature=args.temperature, top_k=args.top_k,
                        vocabulary=vocab, seed=args.seed)
        print(f"Sample (temperature {args.temperature:g}{f', top-k {args.top_k}' if args.top_k else ''}):")
        print(args.prompt + text)
    if args.plot and distributed.is_chief():
        return _plot(history, args.plot, "character-level GPT on pydoc topics")
    return 0


def _main_lstm(args, be):
    from numbanet.nn import digits_lstm
    from numbanet.nn.datasets import digits

    try:
        (x_train, y_train), (x_test, y_test) = digits.load_data(seed=args.seed)
    except RuntimeError as e:  # scikit-learn missing: the message says what to install
        print(f"numbanet train: {e}", file=sys.stderr)
        return 1
    x_train, y_train, epochs, batch_size, steps_per_epoch = _run_size(args, x_train, y_train, digits_lstm.EPOCHS,
                                                                      digits_lstm.BATCH_SIZE)
    _say(f"numbanet train: backend {be.name}, scikit-learn's 8x8 digits read row by row ({digits.TIMESTEPS} steps "
          f"of {digits.FEATURES} pixels): {len(x_train)} training and {len(x_test)} test digits, {epochs} epoch(s) "
          f"of batch {batch_size}{_processes(batch_size)}, seed {args.seed}", flush=True)
    model = digits_lstm.build_model()
    _say(f"numbanet train: LSTM({digits_lstm.UNITS}) -> Dense(10), {model.count_params():,} parameters",
          flush=True)
    history, seconds = _fit_timed(be, model, x_train, y_train, batch_size, epochs, args.verbose, (x_test, y_test))
    return _test_and_save(args, model, history, seconds, epochs, steps_per_epoch, (x_test, y_test),
                          args.output or DEFAULT_LSTM_OUTPUT,
                          "LSTM on the 8x8 digits, row by row (validation: the test digits)")
