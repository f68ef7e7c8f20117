"""nn/trainers/callback_list.py: the user's callbacks, then History, every one told the
model and called in order with fit's arguments."""
from numbanet.nn.callbacks import Callback, History, TerminateOnNaN
from numbanet.nn.trainers.callback_list import CallbackList


class Recorder(Callback):
    def __init__(self, name, calls):
        self.name, self.calls = name, calls

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append((self.name, "epoch_begin", epoch))

    def on_batch_end(self, batch, logs=None):
        self.calls.append((self.name, "batch_end", batch, logs))


def test_history_comes_last_and_each_callback_is_called_in_order():
    calls, model = [], object()
    a, b = Recorder("a", calls), Recorder("b", calls)
    cbs = CallbackList([a, b], model)
    assert cbs.callbacks[:2] == [a, b] and isinstance(cbs.callbacks[2], History)
    assert all(cb.model is model for cb in cbs.callbacks)
    cbs.on_train_begin()
    cbs.on_epoch_begin(2)
    cbs.on_batch_end(5, {"loss": 0.5})
    cbs.on_epoch_end(2, {"loss": 0.25})
    assert calls == [("a", "epoch_begin", 2), ("b", "epoch_begin", 2), ("a", "batch_end", 5, {"loss": 0.5}),
                     ("b", "batch_end", 5, {"loss": 0.5})]
    assert cbs.history.history == {"loss": [0.25]} and cbs.history.epoch == [2]
    assert not cbs.stop_on_nan and CallbackList([TerminateOnNaN()], model).stop_on_nan
