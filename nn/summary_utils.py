"""model.summary(): Keras's table of layers, output shapes and parameter counts, with the
"Connected to" column for functional models (Keras 3: keras/src/utils/summary_utils.py)."""


def _connected_to(model, layer, index):
    parts = []
    for node in model._graph.nodes:
        if node.layer is layer:
            parts += [f"{t.node.layer.name}[{index[id(t.node)]}][{t.index}]" for t in node.inputs]
    return ", ".join(parts) or "-"


def _rows(model):
    """(layer (type), output shape, params, connected to) per layer; an unbuilt Sequential's
    layers have no shapes yet ("?")."""
    nodes = model._graph.nodes if model._graph is not None else []
    index = model._graph.node_indices() if model._graph is not None else {}
    rows = []
    for layer in model.layers:
        calls = [n for n in nodes if n.layer is layer] or [t.node for t in model.inputs if t.node.layer is layer]
        shapes = [t.shape for t in calls[0].outputs] if calls else []
        shape = "?" if not shapes else ", ".join(map(str, shapes))
        params = str(layer.count_params()) if layer.built else "0 (unbuilt)"
        connected = _connected_to(model, layer, index) if model._graph is not None else "-"
        rows.append((f"{layer.name} ({type(layer).__name__})", shape, params, connected))
    return rows


def print_summary(model, print_fn, connections):
    header = ("Layer (type)", "Output Shape", "Param #") + (("Connected to",) if connections else ())
    rows = [header] + [r if connections else r[:3] for r in _rows(model)]
    widths = (29, 26, 10) + ((30,) if connections else ())
    line = lambda r: "".join((c + " ").ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    total = model.count_params() if model.built else 0
    frozen = sum(layer.count_non_trainable_params() for layer in model.layers) if model.built else 0
    out = [f'Model: "{model.name}"', "_" * sum(widths), line(rows[0]), "=" * sum(widths)]
    for i, r in enumerate(rows[1:]):
        out.append(line(r))
        out.append("_" * sum(widths) if i < len(rows) - 2 else "=" * sum(widths))
    if len(rows) == 1:
        out.append("=" * sum(widths))
    out += [f"Total params: {total:,}", f"Trainable params: {total - frozen:,}",
            f"Non-trainable params: {frozen:,}",
            "_" * sum(widths)]
    for s in out:
        print_fn(s)
