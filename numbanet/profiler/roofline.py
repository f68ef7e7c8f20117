"""The roofline chart (PNG; matplotlib, the `plot` extra): one point per kernel (its
calls summed: summary rows by op) at its arithmetic intensity and GFLOP/s, the roofs of
each backend that ran (the GEMM's measured peak solid, the ISA's theoretical figure
dashed, the triad bandwidth's slope), cpu and gpu in one picture."""
import os

from numbanet.profiler import limits as limits_mod

STYLE = {"cpu": ("tab:blue", "o"), "gpu": ("tab:green", "s")}


def _roof(ax, limits, color, label):
    bw, peak, isa = limits["bandwidth_gbs"], limits["peak_gflops"], limits.get("isa_gflops")
    xs = [2.0 ** e for e in range(-6, 13)]
    ax.plot(xs, [limits_mod.attainable(limits, x) for x in xs], color=color, lw=1.5,
            label=f"{label} roof: GEMM {peak:.0f} GFLOP/s, triad {bw:.0f} GB/s")
    if isa:
        ax.plot(xs, [min(isa, x * bw) for x in xs], color=color, lw=1, ls="--", label=f"{label} ISA peak {isa:.0f}")


def save(path, rows, limits, title="numbanet roofline"):
    """rows: summary rows by op; limits: {backend: limits dict or None}. -> path."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("the roofline chart needs matplotlib: pip install 'numbanet[plot]'") from None
    from numbanet.nn.utils import atomic_write

    fig, ax = plt.subplots(figsize=(10, 6.5))
    for backend in sorted({r.backend for r in rows}):
        color, marker = STYLE.get(backend, ("tab:gray", "^"))
        if limits.get(backend):
            _roof(ax, limits[backend], color, backend)
        points = [r for r in rows if r.backend == backend and r.flops and r.bytes and r.total_ns]
        total = sum(r.total_ns for r in points) or 1
        for r in points:
            size = 20 + 400 * r.total_ns / total   # the marker's area: the kernel's share of the time
            ax.scatter(r.intensity, r.gflops, s=size, color=color, marker=marker, alpha=0.6, edgecolors="k")
            ax.annotate(r.name, (r.intensity, r.gflops), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / byte moved)")
    ax.set_ylabel("GFLOP/s")
    ax.set_title(title + " (marker area: share of the kernels' time)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = os.fspath(path)

    def write(f):
        fig.savefig(f, format="png", dpi=110)
    atomic_write(path, write, ".png")
    plt.close(fig)
    return path
