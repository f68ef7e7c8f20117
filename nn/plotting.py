"""Training curves from a History, as a picture (the `plot` extra: matplotlib)."""
import os

from numbanet.nn import utils


def plot_history(history, filepath, title=None):
    """One panel per quantity (loss, accuracy, ...), training and validation per epoch,
    saved to filepath (its extension picks the format: .png, .svg, .pdf). Written to a
    temporary file beside it and renamed into place."""
    logs = getattr(history, "history", history)
    if not isinstance(logs, dict) or not logs:
        raise ValueError(f"plot_history: expected a History (or its .history dict) with at least one epoch, "
                         f"got {history!r}")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise ImportError("plot_history needs matplotlib: pip install 'numbanet[plot]'") from None
    names = [k for k in logs if not k.startswith("val_")]
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        epochs = range(1, len(logs[name]) + 1)
        ax.plot(epochs, logs[name], marker="o", label="training")
        if f"val_{name}" in logs:
            ax.plot(range(1, len(logs[f"val_{name}"]) + 1), logs[f"val_{name}"], marker="o", label="validation")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.set_title(name)
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    ext = os.path.splitext(os.fspath(filepath))[1] or ".png"
    try:
        utils.atomic_write(filepath, lambda f: fig.savefig(f, format=ext.lstrip("."), dpi=110), suffix=ext)
    finally:
        plt.close(fig)
    return os.fspath(filepath)
