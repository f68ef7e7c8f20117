"""nn/compile_utils.py: compile's arguments resolved per output, their refusals, the log
names, and the step's loss terms against NumPy."""
import numpy as np
import pytest

from numbanet.nn import compile_utils, regularizers
from numbanet.nn.compile_utils import CompileLoss, RunningLogs
from numbanet.nn.layers import Dense
from numbanet.nn.losses import BinaryCrossentropy, MeanSquaredError, SparseCategoricalCrossentropy
from numbanet.nn.models import Sequential


def test_one_argument_serves_every_output_and_dicts_pick_by_name():
    c = CompileLoss("mse", ["acc"], None, ["a", "b"])
    assert [type(l) for l in c.losses] == [MeanSquaredError, MeanSquaredError]
    assert c.loss_weights == [1.0, 1.0] and c.metric_names == [["accuracy"], ["accuracy"]]
    c = CompileLoss({"a": "sparse_categorical_crossentropy", "b": "binary_crossentropy"}, {"b": "accuracy"},
                    {"b": 0.5}, ["a", "b"])
    assert [type(l) for l in c.losses] == [SparseCategoricalCrossentropy, BinaryCrossentropy]
    assert c.loss_weights == [1.0, 0.5] and c.metric_names == [[], ["accuracy"]]
    assert c.metric_kinds == [[], ["binary"]]   # accuracy follows the loss, as in Keras 3
    c = CompileLoss(["mse", "binary_crossentropy"], [["accuracy"], ["binary_accuracy", "acc"]], [2, 0], ["a", "b"])
    assert c.loss_weights == [2.0, 0.0] and c.metric_names == [["accuracy"], ["binary_accuracy", "accuracy"]]
    assert c.log_names() == ["loss", "a_loss", "b_loss", "a_accuracy", "b_binary_accuracy", "b_accuracy"]
    assert CompileLoss("mse", ["accuracy"], None, ["out"]).log_names() == ["loss", "accuracy"]


@pytest.mark.parametrize("args, message", [
    (({"c": "mse"}, None, None), r"compile: loss names \['c'\], which are not outputs of the model \(outputs: "
                                 r"\['a', 'b'\]\)"),
    ((["mse"], None, None), "compile: loss has 1 entries but the model has 2 outputs"),
    (("mse", None, [1.0, -0.5]), r"compile: loss weights must be finite numbers >= 0, got -0.5"),
    (("mse", None, {"a": float("nan")}), "compile: loss weights must be finite numbers >= 0, got nan"),
    (("mse", None, True), "compile: loss weights must be finite numbers >= 0, got True"),
    (("mse", [["accuracy"]], None), "compile: metrics has 1 lists but the model has 2 outputs"),
])
def test_refusals_name_what_is_wrong(args, message):
    with pytest.raises(ValueError, match=message):
        CompileLoss(*args, ["a", "b"])


def test_names_are_checked_before_the_outputs_are_known():
    with pytest.raises(ValueError, match="compile: loss is required"):
        compile_utils.check_names(None, None)
    with pytest.raises(ValueError, match="loss must be one of"):
        compile_utils.check_names({"a": "hinge"}, None)
    with pytest.raises(ValueError, match="metric must be one of .* got 'precision'"):
        compile_utils.check_names("mse", {"a": ["accuracy", "precision"]})
    compile_utils.check_names(["mse", "binary_crossentropy"], [["acc"], []])


@pytest.mark.simulator
def test_loss_terms_of_two_weighted_outputs_match_numpy(nnbe):
    """Not fused (probabilities in): the weighted sum of the mean losses plus the penalty,
    each output's mean, each gradient scaled by its weight, the accuracy's hits."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((5, 3))
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    labels = np.array([0, 2, 1, 1, 0])
    pred_r, want_r = rng.standard_normal((5, 2)), rng.standard_normal((5, 2))
    w = rng.standard_normal((4, 3))
    c = CompileLoss(["sparse_categorical_crossentropy", "mse"], [["accuracy"], []], [1.0, 0.25], ["cls", "reg"])
    be = nnbe
    reg = regularizers.l2(0.1)
    w_be = be.asarray(w)
    loss, per_output, douts, stats = c(be, [be.asarray(p), be.asarray(pred_r)],
                                       [be.asarray(labels.astype(np.int64)), be.asarray(want_r)],
                                       lambda into: reg.penalty(be, w_be, into))
    ce = -np.log(p[np.arange(5), labels]).mean()
    mse = ((pred_r - want_r) ** 2).mean()
    assert np.isclose(loss, ce + 0.25 * mse + 0.1 * (w ** 2).sum(), rtol=1e-12)
    np.testing.assert_allclose(per_output, [ce, mse], rtol=1e-12)
    np.testing.assert_allclose(be.to_numpy(douts[1]), 0.25 * 2 * (pred_r - want_r) / pred_r.size, rtol=1e-12)
    assert stats == [(int((p.argmax(1) == labels).sum()), 5)]


@pytest.mark.simulator
def test_softmax_output_hands_its_logits_to_the_fused_loss(nnbe):
    m = Sequential([Dense(3, activation="softmax", input_shape=(2,))], dtype="float64")
    m.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    c = m._compile_loss
    assert c.fused_outputs == [True] and c.fused_nodes == {id(m.outputs[0].node)}
    z = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
    labels = np.array([2, 1])
    loss, per_output, douts, stats = c(nnbe, [nnbe.asarray(z)], [nnbe.asarray(labels)])
    log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
    assert np.isclose(loss, -log_p[np.arange(2), labels].mean(), rtol=1e-12)
    assert per_output == [] and stats == [(1, 2)]   # row 0's argmax is 0, not 2
    np.testing.assert_allclose(nnbe.to_numpy(douts[0]), (np.exp(log_p) - np.eye(3)[labels]) / 2, rtol=1e-12)


def test_running_logs_weigh_each_batch_by_its_rows():
    c = CompileLoss(["mse", "binary_crossentropy"], [[], ["accuracy"]], None, ["a", "b"])
    logs = RunningLogs(c)
    logs.add(3, 1.0, [0.5, 0.5], [(2, 3)])
    logs.add(1, 5.0, [4.0, 1.0], [(0, 1)])
    assert logs.means() == {"loss": (3 * 1.0 + 5.0) / 4, "a_loss": (3 * 0.5 + 4.0) / 4, "b_loss": (3 * 0.5 + 1.0) / 4,
                            "b_accuracy": 2 / 4}
