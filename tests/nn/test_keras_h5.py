"""model.weights.h5 read as hostile (nn/keras_h5.py): objects that reach outside the file
or are not plain numbers are refused before any data is read."""
import h5py
import numpy as np

from keras_cases import refused, rewrite, small_file


def test_hdf5_objects_that_reach_outside_or_are_not_plain_data_arerefused(tmp_path):
    good = small_file(tmp_path)
    cases = {
        "external": (lambda h: h.__setitem__("layers/dense/vars/extra", h5py.ExternalLink("/etc/passwd", "/x")),
                     r"'layers/dense/vars/extra' is an external link \(to '/etc/passwd'\)"),
        "soft": (lambda h: h.__setitem__("layers/dense/alias", h5py.SoftLink("/layers/dense_1")),
                 r"'layers/dense/alias' is a SoftLink; only plain groups and datasets are read"),
        "float16": (lambda h: (h.__delitem__("layers/dense/vars/1"),
                               h.create_dataset("layers/dense/vars/1", data=np.zeros(3, np.float16))),
                    r"dataset 'layers/dense/vars/1' has dtype float16"),
        "strings": (lambda h: h.create_dataset("layers/dense/note", data="text"), r"'layers/dense/note' has dtype"),
        "unwritten": (lambda h: h.create_dataset("layers/dense/huge", shape=(10 ** 6, 10 ** 6), dtype="f4"),
                      r"'layers/dense/huge' declares shape \(1000000, 1000000\) \(4000000000000 bytes\) but stores 0"),
        "chunked": (lambda h: h.create_dataset("layers/dense/big", shape=(10 ** 5,), dtype="f4", compression="gzip",
                                               data=np.zeros(10 ** 5, "f4")),
                    r"'layers/dense/big' is chunked or compressed"),
        "wrong shape": (lambda h: (h.__delitem__("layers/dense/vars/0"),
                                   h.create_dataset("layers/dense/vars/0", data=np.zeros((3, 4), np.float32))),
                        r"'layers/dense/vars/0' \(layer 'dense.*' kernel\) has shape \(3, 4\) and dtype float32; "
                        r"the architecture expects \(4, 3\)"),
        "missing": (lambda h: h.__delitem__("layers/dense/vars/1"),
                    r"holds 1 variables for layer 'dense.*' at 'layers/dense', its architecture 2"),
        "gap": (lambda h: h.move("layers/dense/vars/1", "layers/dense/vars/7"),
                r"'layers/dense/vars' holds variables \['0', '7'\]; expected '0', '1', ..."),
    }
    for name, (edit, match) in cases.items():
        refused(rewrite(good, tmp_path / f"{name.replace(' ', '_')}.keras", weights=edit), match)


def test_a_virtual_dataset_isrefused(tmp_path):
    good = small_file(tmp_path)

    def edit(h):
        layout = h5py.VirtualLayout(shape=(4,), dtype="f4")
        layout[:] = h5py.VirtualSource("/etc/hostname", "data", shape=(4,))
        h.create_virtual_dataset("layers/dense/virtual", layout)
    refused(rewrite(good, tmp_path / "v.keras", weights=edit), r"'layers/dense/virtual' is virtual")
