"""Weight penalties l1, l2, l1_l2 (Keras's defaults 0.01), through be.l1_l2_penalty/_grad."""


class L1L2:
    def __init__(self, l1=0.0, l2=0.0):
        for name, v in (("l1", l1), ("l2", l2)):
            if not float(v) >= 0.0:
                raise ValueError(f"regularizer: {name} must be >= 0, got {v!r}")
        self.l1, self.l2 = float(l1), float(l2)

    def penalty(self, be, w, into=None):
        """l1 * sum|w| + l2 * sum(w^2), a host float; with into (a float64 (1,) backend
        array) added there on the backend instead, and 0.0 returned."""
        if into is None:
            return be.l1_l2_penalty(w, l1=self.l1, l2=self.l2)
        be.l1_l2_penalty(w, l1=self.l1, l2=self.l2, into=into)
        return 0.0

    def add_gradient(self, be, w, dw):
        """dw += the penalty's gradient (in place)."""
        be.l1_l2_grad(w, dw, l1=self.l1, l2=self.l2)

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}

    def __repr__(self):
        return f"L1L2(l1={self.l1}, l2={self.l2})"


def l1(l1=0.01):
    return L1L2(l1=l1)


def l2(l2=0.01):
    return L1L2(l2=l2)


def l1_l2(l1=0.01, l2=0.01):
    return L1L2(l1=l1, l2=l2)


L1 = l1
L2 = l2


def serialize(reg):
    """A regularizer (or None) as get_config records it; get() reads it back."""
    return None if reg is None else reg.get_config()


def get(obj):
    """None, an L1L2, 'l1' / 'l2' / 'l1_l2' (default strengths) or a saved config dict."""
    if obj is None or isinstance(obj, L1L2):
        return obj
    if isinstance(obj, str) and obj.lower() in ("l1", "l2", "l1_l2"):
        return {"l1": l1, "l2": l2, "l1_l2": l1_l2}[obj.lower()]()
    if isinstance(obj, dict) and set(obj) == {"l1", "l2"}:
        return L1L2(**obj)
    raise ValueError(f"regularizer must be None, nn.regularizers.l1/l2/l1_l2(...) or 'l1'/'l2'/'l1_l2', got {obj!r}")
