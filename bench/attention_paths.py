"""Fused attention against the same attention built from the unfused ops, on the cpu.

    python -m numbanet.bench.attention_paths

be.attention never stores the Tq x Tk scores: it works on 16-wide strips that stay in L1
(kernels/cpu/attention.py). The unfused path is what a layer falls back to when it needs
the probabilities themselves (attention dropout, return_attention_scores): transpose to
(B, H, T, D), batched_matmul for the scores, scale, softmax with the causal mask,
batched_matmul with v, writing and re-reading the whole score array. Both compute the
causal forward pass on the same float32 inputs; the medians of REPEATS calls each, taken
in turn, are compared.
"""
import time

import numpy as np

from numbanet import kernels

SHAPES = ((32, 128, 4, 32), (4, 512, 4, 64), (1, 2048, 4, 64))  # (batch, T, heads, head_dim)
REPEATS = 15


def main():
    be = kernels.get_backend("cpu")
    rng = np.random.default_rng(0)
    print(f"{'shape':<22} {'fused ms':>9} {'unfused ms':>11} {'scores MiB':>11} {'unfused / fused':>16}")
    for b, t, h, d in SHAPES:
        q, k, v = (rng.standard_normal((b, t, h, d)).astype(np.float32) for _ in range(3))

        def fused():
            be.attention(q, k, v, causal=True)

        def unfused():
            qh, kh, vh = (np.ascontiguousarray(a.transpose(0, 2, 1, 3)) for a in (q, k, v))
            s = be.scale(be.batched_matmul(qh, kh, trans_b=True), 1 / np.sqrt(d))
            be.batched_matmul(be.softmax(s, causal=True), vh)

        times = {fused: [], unfused: []}
        for f in times:
            f()
            f()
        for _ in range(REPEATS):
            for f in times:
                t0 = time.perf_counter()
                f()
                times[f].append(time.perf_counter() - t0)
        tf, tu = (float(np.median(times[f])) * 1e3 for f in (fused, unfused))
        print(f"{f'B{b} T{t} H{h} D{d}':<22} {tf:>9.2f} {tu:>11.2f} {b * h * t * t * 4 / 2 ** 20:>11.0f} "
              f"{tu / tf:>15.2f}x")
    print("causal forward, float32, medians of", REPEATS, "calls each;",
          f"python -m numbanet.bench.attention_paths ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})")


if __name__ == "__main__":
    main()
