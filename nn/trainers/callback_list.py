"""fit's callbacks called as one (Keras 3: keras/src/callbacks/callback_list.py): the
user's, then a History, each told the model."""
from numbanet.nn.callbacks import History, TerminateOnNaN


class CallbackList:
    def __init__(self, callbacks, model):
        self.history = History()
        # History last, as in Keras: it records what the others add to the logs (learning_rate).
        self.callbacks = list(callbacks or []) + [self.history]
        for cb in self.callbacks:
            cb.set_model(model)
        # With TerminateOnNaN a non-finite loss ends fit quietly instead of raising.
        self.stop_on_nan = any(isinstance(cb, TerminateOnNaN) for cb in self.callbacks)

    def _call(self, hook, *args):
        for cb in self.callbacks:
            getattr(cb, hook)(*args)

    def on_train_begin(self):
        self._call("on_train_begin")

    def on_train_end(self):
        self._call("on_train_end")

    def on_epoch_begin(self, epoch):
        self._call("on_epoch_begin", epoch)

    def on_epoch_end(self, epoch, logs):
        self._call("on_epoch_end", epoch, logs)

    # Called every step: a plain loop each, without _call's lookup.
    def on_batch_begin(self, step):
        for cb in self.callbacks:
            cb.on_batch_begin(step)

    def on_batch_end(self, step, logs):
        for cb in self.callbacks:
            cb.on_batch_end(step, logs)
