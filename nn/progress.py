"""Per-epoch progress output for fit().

verbose=1 on a terminal: a tqdm bar per epoch (steps, ETA, time per step, running loss
and metrics), then the epoch's line with validation figures. verbose=2, or verbose=1
when the stream is not a terminal: one line per epoch. verbose=0: nothing.
"""
import sys
import time

from tqdm import tqdm


def _fmt(logs):
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())


def _per_step(seconds, steps):
    per = seconds / max(steps, 1)
    return f"{per * 1e3:.0f}ms/step" if per >= 1e-3 else f"{per * 1e6:.0f}us/step"


class Progress:
    def __init__(self, verbose, epochs, steps, stream=None):
        if verbose not in (0, 1, 2, "auto"):
            raise ValueError(f"fit: verbose must be 0, 1, 2 or 'auto', got {verbose!r}")
        self.verbose = 1 if verbose == "auto" else verbose
        self.epochs, self.steps = epochs, steps
        self.stream = sys.stdout if stream is None else stream
        isatty = getattr(self.stream, "isatty", None)
        self.bar_on = self.verbose == 1 and bool(isatty and isatty())
        self.bar = None

    def epoch_begin(self, epoch):
        self.t0 = time.perf_counter()
        if self.verbose == 0:
            return
        if self.bar_on:
            print(f"Epoch {epoch + 1}/{self.epochs}", file=self.stream)
            self.bar = tqdm(total=self.steps, file=self.stream, unit="step", leave=True, dynamic_ncols=True,
                            bar_format="{n_fmt}/{total_fmt} {bar} {elapsed}<{remaining}, {rate_inv_fmt}{postfix}")

    def batch_end(self, step, running):
        if self.bar is not None:
            self.bar.set_postfix_str(_fmt(running), refresh=False)
            self.bar.update(1)

    def epoch_end(self, epoch, logs):
        if self.verbose == 0:
            return
        seconds = time.perf_counter() - self.t0
        if self.bar is not None:
            self.bar.close()
            self.bar = None
            line = f"{self.steps}/{self.steps} - {seconds:.0f}s {_per_step(seconds, self.steps)} - {_fmt(logs)}"
        else:
            line = (f"Epoch {epoch + 1}/{self.epochs} - {self.steps} steps - {seconds:.0f}s "
                    f"{_per_step(seconds, self.steps)} - {_fmt(logs)}")
        print(line, file=self.stream, flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
