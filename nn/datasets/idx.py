"""Reader and writer for the IDX format that the MNIST files use.

An IDX file is a 4-byte magic (two zero bytes, a dtype code, the number of dimensions),
one big-endian uint32 per dimension, then the data in C order, big-endian.
"""
import gzip
import os
import struct

import numpy as np

# dtype code -> big-endian NumPy dtype, as in LeCun's description of the format.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}


def parse_idx(data, name="<bytes>"):
    """Parse the (decompressed) bytes of an IDX file; `name` is used in error messages."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"parse_idx: expected bytes for {name}, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < 4:
        raise ValueError(f"IDX file {name}: truncated, {len(data)} bytes is shorter than the 4-byte magic")
    zero0, zero1, code, ndim = data[0], data[1], data[2], data[3]
    if zero0 != 0 or zero1 != 0 or code not in IDX_DTYPES or ndim == 0:
        raise ValueError(
            f"IDX file {name}: bad magic 0x{data[:4].hex()}; expected 0x0000 then a dtype code "
            f"in {{{', '.join(f'0x{c:02x}' for c in sorted(IDX_DTYPES))}}} and a dimension count >= 1 "
            f"(is it still gzip-compressed, or not an IDX file?)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"IDX file {name}: truncated header, {ndim} dimensions need {header} bytes, file has {len(data)}")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    got = len(data) - header
    if got < expected:
        raise ValueError(f"IDX file {name}: truncated, dims {dims} of {dtype.newbyteorder('=').name} need "
                         f"{expected} data bytes, file has {got}")
    if got > expected:
        raise ValueError(f"IDX file {name}: size mismatch, dims {dims} of {dtype.newbyteorder('=').name} need "
                         f"{expected} data bytes, file has {got} ({got - expected} extra)")
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    # A native-endian, writable copy, so callers can use it like any other array.
    return arr.astype(dtype.newbyteorder("="))


def read_idx(path):
    """Read an IDX file, gzip-compressed when its name ends in .gz."""
    path = os.fspath(path)
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        # gzip raises these for a truncated or non-gzip .gz file.
        raise ValueError(f"IDX file {path}: cannot be read: {e}") from e
    return parse_idx(data, name=path)


def to_idx_bytes(arr):
    """Encode an array as IDX bytes (the inverse of parse_idx; tests use it to build files)."""
    arr = np.asarray(arr)
    native = arr.dtype.newbyteorder("=")
    if native not in _CODES:
        raise TypeError(f"to_idx_bytes: dtype {arr.dtype} has no IDX code; expected one of "
                        f"{sorted(d.name for d in _CODES)}")
    if arr.ndim == 0:
        raise ValueError("to_idx_bytes: expected an array with at least one dimension, got a scalar")
    code = _CODES[native]
    head = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return head + np.ascontiguousarray(arr, dtype=IDX_DTYPES[code]).tobytes()
