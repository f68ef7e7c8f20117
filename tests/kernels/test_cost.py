"""Op.cost (kernels/ops/<family>.py, the rule in kernels/ops/cost.py): every op declares
one, and a few ops' FLOPs and bytes against counts written out by hand here."""
import numpy as np
import pytest

from numbanet.kernels import ops

f32, f64 = np.float32, np.float64


def z(*shape, dtype=f32):
    return np.zeros(shape, dtype=dtype)


def cost(name, *args, **kwargs):
    return ops.get(name).cost(*args, **kwargs)


def test_every_op_declares_a_cost():
    missing = [op.name for op in ops.all_ops() if op.cost is None]
    assert not missing, f"ops without a cost formula (Op.cost, beside the op in its family): {missing}"


def test_matmul_bias_relu():
    # m=3, k=5, n=4: 3*4*5 multiply-adds = 120 FLOPs, then a bias add and a relu per output (12 each).
    # bytes: a 15 + b 20 + bias 4 read, c 12 written, 4 bytes each.
    assert cost("matmul", z(3, 5), z(5, 4), bias=z(4), activation="relu") == (120 + 24, (15 + 20 + 4 + 12) * 4)


def test_matmul_transposed():
    # op(a) = a^T is 3x5, op(b) = b^T is 5x4: the same 120 FLOPs; no bias, no activation.
    assert cost("matmul", z(5, 3), z(4, 5), trans_a=True, trans_b=True) == (120, (15 + 20 + 12) * 4)


def test_dense_backward_float64():
    # x (8, 3), w (3, 2), dy (8, 2): dw = x^T dy 2*8*3*2 = 96, dx = dy w^T 96, db 8*2 = 16 adds.
    # read x 24 + dy 16 + w 6 elements, written dw 6 + db 2 + dx 24, 8 bytes each.
    assert cost("dense_backward", z(8, 3, dtype=f64), z(3, 2, dtype=f64), z(8, 2, dtype=f64)) == \
        (96 + 96 + 16, (24 + 16 + 6 + 6 + 2 + 24) * 8)
    # Without dx: w is not read, dx not written.
    assert cost("dense_backward", z(8, 3, dtype=f64), z(3, 2, dtype=f64), z(8, 2, dtype=f64), compute_dx=False) == \
        (96 + 16, (24 + 16 + 6 + 2) * 8)


def test_batched_matmul():
    # 6 products of (4x3)(3x2): 6 * 2*4*3*2 = 288; a 72 + b 36 read, c 48 written.
    assert cost("batched_matmul", z(2, 3, 4, 3), z(2, 3, 3, 2)) == (288, (72 + 36 + 48) * 4)


def test_conv2d_valid_with_bias():
    # x (2, 5, 5, 3), w (3, 3, 3, 4), valid: y (2, 3, 3, 4) = 72 outputs of 27 multiply-adds
    # (54 FLOPs) + a bias add each. bytes: x 150 + w 108 + bias 4 + y 72, 4 bytes each.
    assert cost("conv2d", z(2, 5, 5, 3), z(3, 3, 3, 4), z(4)) == (72 * 55, (150 + 108 + 4 + 72) * 4)


def test_conv2d_same_strided():
    # x (1, 5, 5, 1), w (3, 3, 1, 2), stride 2, same: y (1, 3, 3, 2) = 18 outputs of 9 multiply-adds.
    assert cost("conv2d", z(1, 5, 5, 1), z(3, 3, 1, 2), strides=2, padding="same") == (18 * 18, (25 + 18 + 18) * 4)


def test_conv2d_backward_through_relu():
    # dw and dx: two products of 72 outputs x 27 multiply-adds (2 * 3888), db 72 adds, relu's
    # gradient 2 per output (relu' and the multiply). read x 150, dy 72, y 72, w 108;
    # written dw 108, db 4, dx 150.
    x, w, dy = z(2, 5, 5, 3), z(3, 3, 3, 4), z(2, 3, 3, 4)
    assert cost("conv2d_backward", x, w, dy, activation="relu", y=dy) == \
        (2 * 3888 + 72 + 144, (150 + 72 + 72 + 108 + 108 + 4 + 150) * 4)


def test_max_pool2d():
    # x (2, 4, 4, 3), 2x2: 24 outputs, 4 comparisons each; x 96 floats read, y 24 floats and 24 int32 written.
    assert cost("max_pool2d", z(2, 4, 4, 3)) == (96, 96 * 4 + 24 * 4 + 24 * 4)


def test_avg_pool2d_backward():
    # dy (1, 2, 2, 1) from x (1, 4, 4, 1): each of 4 dy scaled once and added to its 4 cells.
    assert cost("avg_pool2d_backward", z(1, 2, 2, 1), (1, 4, 4, 1)) == (4 * 5, (4 + 16) * 4)


def test_adam_and_sgd():
    p = z(10)
    # Adam 14 FLOPs per parameter; param, grad, m, v read and param, m, v written: 7 x 40 bytes.
    assert cost("adam_step", p, p, p, p, lr=1e-3, step=1) == (140, 280)
    assert cost("sgd_step", p, p, lr=0.1) == (40, 120)
    assert cost("sgd_step", p, p, p, lr=0.1, momentum=0.9) == (60, 200)
    assert cost("sgd_step", p, p, p, lr=0.1, momentum=0.9, nesterov=True) == (90, 200)


def test_softmax_cross_entropy():
    # logits (4, 10), int32 labels: 7 per element + 2 per row; logits 160 B and labels 16 B read,
    # dlogits 160 B and losses 16 B written.
    assert cost("softmax_cross_entropy", z(4, 10), np.zeros(4, np.int32)) == (7 * 40 + 8, 160 + 16 + 160 + 16)


def test_attention_causal_and_not():
    # q, k, v (1, 4, 2, 8): 2 heads x 16 scores, each 2*8 (q.k) + 5 (softmax) + 2*8 (p v) FLOPs.
    q = z(1, 4, 2, 8)
    moved = 3 * 64 * 4 + 64 * 4 + 8 * 4   # q, k, v read; out (1, 4, 2, 8) and lse (1, 2, 4) written
    assert cost("attention", q, q, q) == (32 * 37, moved)
    # Causal: query i sees i + 1 keys, 1 + 2 + 3 + 4 = 10 scores per head.
    assert cost("attention", q, q, q, causal=True) == (20 * 37, moved)


def test_lstm_forward():
    # x (2, 3, 4), 5 units: 6 rows; input projection 2*6*4*20 = 960, its bias 6*20 = 120,
    # recurrent product 2*6*5*20 = 1200, the cell 22 per unit and step: 6*5*22 = 660.
    x, kernel, rec, bias = z(2, 3, 4), z(4, 20), z(5, 20), z(20)
    flops, _ = cost("rnn", x, kernel, rec, bias, cell="lstm")
    assert flops == 960 + 120 + 1200 + 660


def test_elementwise_and_gathers():
    assert cost("relu", z(3, 4)) == (12, 2 * 48)
    assert cost("add", z(3, 4), z(3, 4)) == (12, 3 * 48)
    # embedding: 6 ids (int32) gather 6 rows of 4 floats: ids 24 B, rows read 96 B and written 96 B.
    assert cost("embedding", z(10, 4), np.zeros((2, 3), np.int32)) == (0, 24 + 96 + 96)
    # layer_norm over (2, 3, 4): 8 per element + 3 per row; x read, y written (96 B each), gamma
    # and beta 16 B each, mean and rstd 6 floats each.
    assert cost("layer_norm", z(2, 3, 4), z(4), z(4)) == (8 * 24 + 3 * 6, 192 + 32 + 48)


@pytest.mark.parametrize("name", ["transpose", "split"])
def test_copies_have_no_flops(name):
    x = z(2, 3)
    args = (x, (1, 0)) if name == "transpose" else (x, [1, 2])
    assert cost(name, *args) == (0, 2 * 24)
