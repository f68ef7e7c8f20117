"""The IDX reader against files built byte by byte here, and its errors."""
import gzip
import struct

import numpy as np
import pytest

from numbanet.nn.datasets.idx import parse_idx, read_idx, to_idx_bytes


def idx_bytes(code, dims, payload):
    # Built from LeCun's description, independently of nn.datasets.idx.
    return bytes([0, 0, code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + payload


@pytest.mark.parametrize("code,fmt,np_dtype", [
    (0x08, "B", np.uint8), (0x09, "b", np.int8), (0x0B, "h", np.int16),
    (0x0C, "i", np.int32), (0x0D, "f", np.float32), (0x0E, "d", np.float64),
])
def test_parse_each_dtype(code, fmt, np_dtype):
    dims = (2, 3, 4)
    values = [((i * 7) % 11) - (0 if fmt == "B" else 5) for i in range(24)]
    data = idx_bytes(code, dims, struct.pack(f">{len(values)}{fmt}", *values))
    arr = parse_idx(data, name="t")
    assert arr.dtype == np.dtype(np_dtype) and arr.dtype.isnative
    assert arr.shape == dims
    assert [float(v) for v in arr.ravel()] == [float(v) for v in values]
    assert arr.flags.writeable


def test_one_dimensional_labels_and_roundtrip():
    labels = np.array([3, 1, 4, 1, 5, 9], np.uint8)
    data = idx_bytes(0x08, (6,), bytes(labels.tolist()))
    assert to_idx_bytes(labels) == data
    np.testing.assert_array_equal(parse_idx(data), labels)


def test_read_plain_and_gz(tmp_path):
    img = (np.arange(2 * 28 * 28) % 256).astype(np.uint8).reshape(2, 28, 28)
    data = idx_bytes(0x08, img.shape, bytes(img.ravel().tolist()))
    (tmp_path / "a-idx3-ubyte").write_bytes(data)
    (tmp_path / "a-idx3-ubyte.gz").write_bytes(gzip.compress(data))
    np.testing.assert_array_equal(read_idx(tmp_path / "a-idx3-ubyte"), img)
    np.testing.assert_array_equal(read_idx(tmp_path / "a-idx3-ubyte.gz"), img)


@pytest.mark.parametrize("data,words", [
    (b"\x00\x00", ["truncated", "4-byte magic"]),
    (b"\x1f\x8b\x08\x00" + b"\x00" * 8, ["bad magic", "gzip"]),          # still compressed
    (bytes([0, 0, 0x07, 1]) + struct.pack(">I", 1) + b"\x00", ["bad magic", "0x00000701"]),  # unknown dtype
    (bytes([0, 0, 0x08, 0]), ["bad magic"]),                              # zero dimensions
    (bytes([0, 0, 0x08, 3]) + struct.pack(">I", 2), ["truncated header"]),
    (idx_bytes(0x08, (2, 3), b"\x01" * 5), ["truncated", "need 6", "has 5"]),
    (idx_bytes(0x0C, (2,), b"\x00" * 7), ["truncated", "need 8", "has 7"]),
    (idx_bytes(0x08, (2, 3), b"\x01" * 7), ["size mismatch", "need 6", "has 7"]),
])
def test_errors_name_the_file(data, words):
    with pytest.raises(ValueError) as e:
        parse_idx(data, name="my-file-idx")
    msg = str(e.value)
    assert "my-file-idx" in msg
    for w in words:
        assert w in msg


def test_corrupt_gz_names_the_file(tmp_path):
    good = gzip.compress(idx_bytes(0x08, (4,), b"\x01\x02\x03\x04"))
    path = tmp_path / "cut-idx1-ubyte.gz"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="cut-idx1-ubyte.gz"):
        read_idx(path)


def test_bad_argument_types():
    with pytest.raises(TypeError, match="expected bytes"):
        parse_idx("not bytes")
    with pytest.raises(TypeError, match="no IDX code"):
        to_idx_bytes(np.zeros(3, np.uint32))
