"""Keras's serialized objects in a .keras config.json, read and written for nn/keras_layers.py
and nn/keras_compile.py: the error they raise (Unsupported), Keras's snake_case names,
dtype policies, initializers, regularizers and activations, and KerasConfig, which reads
a layer's config argument by argument and refuses what it leaves over."""
import re

from numbanet.nn import activations as activations_mod
from numbanet.nn import initializers as initializers_mod
from numbanet.nn import regularizers as regularizers_mod

# The members of a .keras archive.
CONFIG = "config.json"
METADATA = "metadata.json"
WEIGHTS = "model.weights.h5"


class Unsupported(ValueError):
    """A Keras layer, argument or value numbanet cannot represent (the message says which)."""


def snake_case(name):
    """Keras's naming.to_snake_case: how Keras names a layer's group in model.weights.h5."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


# ---------------------------------------------------------------------- serialized objects
def obj(module, class_name, config, registered_name=None):
    return {"module": module, "class_name": class_name, "config": config, "registered_name": registered_name}


def policy(dtype_name):
    return obj("keras", "DTypePolicy", {"name": dtype_name})


def policy_name(owner, value):
    """A Keras dtype (a DTypePolicy or a name) -> "float32"/"float64"/..., mixed policies refused."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and value.get("class_name") == "DTypePolicy" and isinstance(value.get("config"), dict):
        return value["config"].get("name")
    raise Unsupported(f"{owner}: dtype policy {value!r} is not supported (numbanet runs a model in one float type)")


# Keras initializer class -> (numbanet name, the config values numbanet's draw has).
_INITIALIZERS = {
    "GlorotUniform": ("glorot_uniform", {}), "GlorotNormal": ("glorot_normal", {}),
    "HeUniform": ("he_uniform", {}), "HeNormal": ("he_normal", {}),
    "Zeros": ("zeros", {}), "Ones": ("ones", {}), "Orthogonal": ("orthogonal", {"gain": 1.0}),
    "RandomUniform": ("random_uniform", {"minval": -0.05, "maxval": 0.05}),
    "RandomNormal": ("random_normal", {"mean": 0.0, "stddev": 0.05}),
}
_INITIALIZER_CLASS = {name: cls for cls, (name, _) in _INITIALIZERS.items()}


def read_initializer(owner, value):
    if isinstance(value, str):
        try:
            return initializers_mod.get(value)
        except ValueError as exc:
            raise Unsupported(f"{owner}: {exc}") from None
    cls = value.get("class_name") if isinstance(value, dict) else None
    if cls not in _INITIALIZERS:
        raise Unsupported(f"{owner}: initializer {cls or value!r} has no numbanet counterpart (numbanet has "
                          f"{', '.join(sorted(_INITIALIZERS))})")
    name, fixed = _INITIALIZERS[cls]
    cfg = value.get("config") or {}
    for key, v in cfg.items():
        if key == "seed" or (key in ("input_axes", "output_axes") and v is None):
            continue
        if key not in fixed or v != fixed[key]:
            raise Unsupported(f"{owner}: initializer {cls} with {key}={v!r} has no numbanet counterpart")
    return name


def write_initializer(name):
    cls = _INITIALIZER_CLASS[name]
    cfg = dict(_INITIALIZERS[cls][1])
    if cls not in ("Zeros", "Ones"):   # the constant ones take no seed
        cfg["seed"] = None
    return obj("keras.initializers", cls, cfg)


def read_regularizer(owner, value):
    if value is None:
        return None
    cls = value.get("class_name") if isinstance(value, dict) else None
    cfg = value.get("config") if isinstance(value, dict) else None
    if cls not in ("L1", "L2", "L1L2") or not isinstance(cfg, dict):
        raise Unsupported(f"{owner}: regularizer {value!r} has no numbanet counterpart (L1, L2, L1L2)")
    try:
        return regularizers_mod.L1L2(l1=float(cfg.get("l1", 0.0)), l2=float(cfg.get("l2", 0.0)))
    except (TypeError, ValueError) as exc:
        raise Unsupported(f"{owner}: regularizer {value!r}: {exc}") from None


def write_regularizer(reg):
    return None if reg is None else obj("keras.regularizers", "L1L2", {"l1": reg.l1, "l2": reg.l2})


def read_activation(owner, value):
    if isinstance(value, dict) and value.get("class_name") == "function":
        value = value.get("config")
    if not isinstance(value, str):
        raise Unsupported(f"{owner}: activation {value!r} is not a Keras activation name")
    try:
        return activations_mod.get(value)
    except ValueError:
        raise Unsupported(f"{owner}: activation {value!r} has no numbanet kernel (numbanet has "
                          f"{', '.join(activations_mod.NAMES)})") from None


def write_activation(owner, spec):
    if not isinstance(spec, str):
        raise Unsupported(f"{owner}: activation {spec!r} takes a parameter other than its default; a .keras file "
                          f"names activations without parameters")
    return spec


# ---------------------------------------------------------------------- reading a layer config
_ABSENT = object()


class KerasConfig:
    """A Keras layer config being read: take() each argument numbanet maps; finish()
    refuses what is left unless it is null, false or a random seed."""

    def __init__(self, config, owner):
        if not isinstance(config, dict):
            raise Unsupported(f"{owner}: config must be a JSON object, got {type(config).__name__}")
        self.config, self.owner, self.used = config, owner, {"name", "dtype", "seed", "shared_object_id"}

    def take(self, key, default=_ABSENT):
        self.used.add(key)
        if key in self.config:
            return self.config[key]
        if default is _ABSENT:
            raise Unsupported(f"{self.owner}: the config has no {key!r}")
        return default

    def only(self, key, *allowed):
        """An argument numbanet supports with these values only (absent is fine)."""
        value = self.take(key, allowed[0])
        if isinstance(value, list):
            value = tuple(value)
        if value not in allowed:
            raise Unsupported(f"{self.owner}: {key}={value!r} is not supported (numbanet: "
                              f"{' or '.join(repr(a) for a in allowed)})")
        return value

    def finish(self):
        self.only("trainable", True)
        for key, value in self.config.items():
            if key not in self.used and value not in (None, False):
                raise Unsupported(f"{self.owner}: argument {key}={value!r} has no numbanet counterpart")

    def initializer(self, key):
        return read_initializer(f"{self.owner} {key}", self.take(key))

    def regularizer(self, key):
        return read_regularizer(f"{self.owner} {key}", self.take(key, None))

    def activation(self, key="activation"):
        return read_activation(self.owner, self.take(key, "linear"))

    def no_constraints(self, *names):
        for n in names:
            self.only(f"{n}_constraint", None)
        self.only("activity_regularizer", None)


KEEP = object()


def map_tree(value, leaf):
    """value (JSON-like: lists, dicts) with every part for which leaf(part) is not KEEP
    replaced by what leaf returned."""
    out = leaf(value)
    if out is not KEEP:
        return out
    if isinstance(value, list):
        return [map_tree(v, leaf) for v in value]
    if isinstance(value, dict):
        return {k: map_tree(v, leaf) for k, v in value.items()}
    return value
