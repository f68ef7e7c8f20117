"""The HDF5 weights file inside a .keras archive (model.weights.h5), read as hostile and
written as Keras 3 writes it.

Keras's layout: one group per saved object, named by its path ("layers/dense",
"layers/lstm/cell", "layers/multi_head_attention/query_dense", "optimizer"), holding a
group "vars" (attribute "name": the object's name) whose datasets "0", "1", ... are the
object's variables in creation order; the root's "vars" holds the model's own (none).

Reading opens nothing but the one file: before any data is read, every object in it is
visited through its link (never followed) and refused when it is an external or soft
link, a virtual dataset, a dataset with external storage, chunked or filtered storage,
storage shorter than its shape (never written), or a dtype other than little-endian
float32/float64/int32/int64 (numbers only: nothing is unpickled or decoded); the tree may
hold at most MAX_OBJECTS objects. Each read then checks the dataset's shape and dtype
against what the caller expects before its bytes are read.
"""
import numpy as np

# Far above any model's group count (a few per layer), far below what a walk can afford.
MAX_OBJECTS = 200_000
MAX_DEPTH = 32
DTYPES = tuple(np.dtype(t) for t in ("<f4", "<f8", "<i4", "<i8"))


class H5Error(ValueError):
    """What is wrong with the weights file (the caller adds the archive's name)."""


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError(".keras files need h5py: pip install 'numbanet[keras]' (or pip install h5py)") from None
    return h5py


class WeightsReader:
    """with WeightsReader(binary file object) as w: the checked tree of model.weights.h5."""

    def __init__(self, fileobj):
        h5py = _h5py()
        try:
            self._file = h5py.File(fileobj, "r")
        except Exception as exc:  # OSError for a file that is not HDF5, and anything the library raises
            raise H5Error(f"model.weights.h5 is not an HDF5 file ({type(exc).__name__}: {exc})") from exc
        try:
            self.datasets = {}   # path -> (shape, dtype)
            self.groups = set()
            self._walk(h5py)
        except BaseException:
            self._file.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()

    def _walk(self, h5py):
        count = 0
        stack = [("", self._file, 0)]
        seen = set()
        while stack:
            path, group, depth = stack.pop()
            if depth > MAX_DEPTH:
                raise H5Error(f"model.weights.h5 nests groups deeper than {MAX_DEPTH} at {path!r}")
            try:
                names = list(group.keys())
            except Exception as exc:
                raise H5Error(f"model.weights.h5: group {path or '/'!r} cannot be listed ({exc})") from exc
            for name in names:
                count += 1
                if count > MAX_OBJECTS:
                    raise H5Error(f"model.weights.h5 holds more than {MAX_OBJECTS} objects")
                where = f"{path}/{name}" if path else name
                link = group.get(name, getlink=True)
                if isinstance(link, h5py.ExternalLink):
                    raise H5Error(f"model.weights.h5: {where!r} is an external link (to {link.filename!r}); "
                                  f"links to other files are refused")
                if not isinstance(link, h5py.HardLink):
                    raise H5Error(f"model.weights.h5: {where!r} is a {type(link).__name__}; only plain groups and "
                                  f"datasets are read")
                obj = group.get(name)
                if obj.id in seen:
                    raise H5Error(f"model.weights.h5: {where!r} links back to an object already seen")
                seen.add(obj.id)
                if isinstance(obj, h5py.Group):
                    self.groups.add(where)
                    stack.append((where, obj, depth + 1))
                elif isinstance(obj, h5py.Dataset):
                    self.datasets[where] = self._check_dataset(where, obj, h5py)
                else:
                    raise H5Error(f"model.weights.h5: {where!r} is a {type(obj).__name__}, not a group or dataset")

    @staticmethod
    def _check_dataset(where, ds, h5py):
        if ds.is_virtual:
            raise H5Error(f"model.weights.h5: dataset {where!r} is virtual (it maps other files); refused")
        if ds.external:
            raise H5Error(f"model.weights.h5: dataset {where!r} keeps its data in external files; refused")
        if ds.chunks is not None or ds.compression is not None:
            raise H5Error(f"model.weights.h5: dataset {where!r} is chunked or compressed; Keras writes contiguous "
                          f"datasets, and a compressed one can expand far beyond the file")
        if ds.dtype not in DTYPES:
            raise H5Error(f"model.weights.h5: dataset {where!r} has dtype {ds.dtype}; expected one of "
                          f"{', '.join(str(d) for d in DTYPES)}")
        shape = tuple(int(d) for d in ds.shape)
        nbytes = ds.dtype.itemsize
        for d in shape:
            nbytes *= d
        stored = ds.id.get_storage_size()
        if stored != nbytes:
            raise H5Error(f"model.weights.h5: dataset {where!r} declares shape {shape} ({nbytes} bytes) but stores "
                          f"{stored} bytes")
        return shape, ds.dtype

    def variables(self, path):
        """The dataset paths of the object at `path` ("" for the root), in Keras's order."""
        group = f"{path}/vars" if path else "vars"
        names = [p.rsplit("/", 1)[1] for p in self.datasets if p.rsplit("/", 1)[0] == group]
        if sorted(names, key=lambda n: (len(n), n)) != [str(i) for i in range(len(names))]:
            raise H5Error(f"model.weights.h5: {group!r} holds variables {sorted(names)}; expected '0', '1', ...")
        return [f"{group}/{i}" for i in range(len(names))]

    def read(self, path, shape, dtype):
        """The array at `path` after its shape and dtype have been checked."""
        have = self.datasets.get(path)
        if have is None:
            raise H5Error(f"model.weights.h5 has no dataset {path!r}")
        if have[0] != tuple(shape):
            raise H5Error(f"model.weights.h5: {path!r} has shape {have[0]} but the architecture expects "
                          f"{tuple(shape)}")
        if have[1] != np.dtype(dtype):
            raise H5Error(f"model.weights.h5: {path!r} has dtype {have[1]}, expected {np.dtype(dtype)}")
        try:
            return np.asarray(self._file[path][()], dtype=have[1])
        except Exception as exc:
            raise H5Error(f"model.weights.h5: {path!r} cannot be read ({type(exc).__name__}: {exc})") from exc


def write_weights(fileobj, objects):
    """Write Keras's layout to the binary file object: objects is a list of (path, name,
    [arrays]), path "" for the root; each becomes <path>/vars with attribute name and
    datasets "0", "1", ... (contiguous, uncompressed, as Keras writes them)."""
    h5py = _h5py()
    with h5py.File(fileobj, "w") as f:
        for path, name, arrays in objects:
            group = f.require_group(f"{path}/vars" if path else "vars")
            group.attrs["name"] = name
            for i, a in enumerate(arrays):
                group.create_dataset(str(i), data=np.array(a, order="C"))   # ascontiguousarray makes 0-d arrays 1-d
