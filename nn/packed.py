"""A model's weights in one flat backend array and their gradients in another.

The optimizer's update is elementwise and the same for every weight (Adam, SGD), so over
flat arrays it is one kernel launch per step instead of one per weight array. The layout
is get_weights order: [layer 0 kernel, layer 0 bias, layer 1 kernel, ...]; each layer's
params are views into `params`, and each layer gets `grad_buffer`, the view of `grads`
holding its kernel and then its bias gradient, which be.dense_backward and
be.conv2d_backward write into (grads=...).
"""
import numpy as np


class PackedParams:
    def __init__(self, be, slots):
        """slots: [(key, layer, name)] of the model's weights, in get_weights order."""
        self.be = be
        self.layout = []
        offset = 0
        for key, layer, name in slots:
            p = layer.params[name]
            self.layout.append((key, layer, name, offset, int(p.size), tuple(p.shape)))
            offset += int(p.size)
        self.size = offset
        self.dtype = np.dtype(slots[0][1].params[slots[0][2]].dtype)
        # zeros, not empty: persistent arrays, never taken from a step's workspace.
        self.params = be.zeros((offset,), self.dtype)
        self.grads = be.zeros((offset,), self.dtype)
        self.views = {key: be.reshape(self.params[o:o + n], shape) for key, _, _, o, n, shape in self.layout}
        self.buffers = {}
        for _, layer, _, o, n, _ in self.layout:
            lo = self.buffers[id(layer)][0] if id(layer) in self.buffers else o
            self.buffers[id(layer)] = (lo, o + n)

    def matches(self, be, slots):
        """True when slots have this layout (same backend, layers, names, shapes, dtype)."""
        if be is not self.be or len(slots) != len(self.layout):
            return False
        for (key, layer, name), (k2, l2, n2, _, _, shape) in zip(slots, self.layout):
            p = layer.params[name]
            if (key, name) != (k2, n2) or layer is not l2 or tuple(p.shape) != shape or np.dtype(p.dtype) != self.dtype:
                return False
        return True

    def adopt(self, slots):
        """Make every weight a view of `params` (copying in the ones replaced since) and
        give each layer its gradient buffer."""
        for key, layer, name in slots:
            view = self.views[key]
            if layer.params[name] is not view:
                self.be.assign(view, layer.params[name])
                layer.params[name] = view
        for _, layer, _, _, _, _ in self.layout:
            lo, hi = self.buffers[id(layer)]
            layer.grad_buffer = self.grads[lo:hi]

    def holds(self, params):
        """True when params [(key, param, grad)] are still this buffer's views and every
        layer wrote its gradients into its buffer this step."""
        for key, p, _ in params:
            if self.views.get(key) is not p:
                return False
        return all(getattr(layer, "_grads_into", None) is layer.grad_buffer for _, layer, _, _, _, _ in self.layout)

    def slot_views(self, flat):
        """{key: view of flat} in this layout, for optimizer state packed the same way."""
        return {key: self.be.reshape(flat[o:o + n], shape) for key, _, _, o, n, shape in self.layout}
