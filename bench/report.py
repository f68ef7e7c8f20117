"""`numbanet bench --save DIR`: one run's results as DIR/<machine>.md and DIR/<machine>.png.

The Markdown file holds the machine facts the bench prints in its header, the tables of
the run and the command; the PNG is a bar chart of each of our rows' ratios to the
references measured in the same run. Both are named by the machine (CPU model, and the
GPU when one ran), so results from several machines sit side by side in one folder and
none is ever edited by hand. The runner passes its own header and tables in, so that this
module does not import it (the runner imports this one).
"""
import io
import re

from numbanet.nn.utils import atomic_write

PLOT_MISSING = ("numbanet bench --save needs matplotlib for its chart, which is not installed: "
                "pip install 'numbanet[plot]' (or pip install matplotlib)")

# Trademark marks and clock speeds say nothing about which machine it is and make names long.
_NOISE = re.compile(r"\((?:r|tm|c)\)|\bcpu\b|@\s*[\d.]+\s*[gm]hz|\b\d+-core processor\b", re.I)
_SLUG_MAX = 80


def _slug_part(text):
    text = _NOISE.sub(" ", str(text)).lower()
    return "-".join(re.findall(r"[a-z0-9]+", text))


def machine_slug(cpu_model, gpu_name=None, target=None):
    """The file name stem for a machine: its CPU model (and GPU name), lowercase, words of
    [a-z0-9] joined by '-'. 'Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.0GHz' and an
    'NVIDIA H100 80GB HBM3' give 'intel-xeon-platinum-8480-nvidia-h100-80gb-hbm3'. A run
    whose kernels were compiled for another CPU than the host (target: NUMBA_CPU_NAME,
    such as 'haswell' to limit the ISA to AVX2) adds 'as-<target>' after the CPU model."""
    parts = [_slug_part(cpu_model) or "unknown-cpu"]
    if target:
        parts.append("as-" + _slug_part(target))
    if gpu_name:
        gpu = _slug_part(gpu_name)
        if gpu:
            parts.append(gpu)
    return "-".join(parts)[:_SLUG_MAX].strip("-")


def gpu_name(detail):
    """The device name from kernels.gpu_status()'s detail for a real GPU ('NVIDIA H100 ...
    (compute capability 9.0)'); None for the simulator or no GPU."""
    m = re.match(r"(.+?) \(compute capability [\d.]+\)$", detail or "")
    return m.group(1) if m else None


def title(info):
    """'AMD EPYC' or 'AMD EPYC + NVIDIA H100 80GB HBM3': the machine in words, with
    ' (compiled for haswell)' after the CPU when info['target'] names another CPU."""
    gpu = gpu_name(info.get("gpu"))
    target = f" (compiled for {info['target']})" if info.get("target") else ""
    return info["cpu_model"] + target + (f" + {gpu}" if gpu else "")


def markdown(header, tables, missing, *, name, command, run, date_utc, load, version):
    """The saved page: machine facts, then the run's tables as the bench printed them."""
    lines = [f"# numbanet bench on {name}", "",
             "Written by `numbanet bench --save`; do not edit by hand, run the command again.", "",
             "```text", header,
             f"numbanet {version}",
             f"date: {date_utc}; load average (1, 5, 15 min): {load}",
             f"command: {command}", f"run: {run}", "```", "", tables]
    if missing:
        lines += ["", "```text", missing, "```"]
    return "\n".join(lines) + "\n"


def _label(row):
    return f"{row['op']}: {row['case']}" + ("" if row["impl"] == "cpu" else f" ({row['impl']})")


def chart_png(rows, title):
    """PNG bytes: one horizontal bar per reference for each of our rows that ran, the
    reference's time / ours (right of the 1x line: ours is faster)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401  (matplotlib.ticker below)

    ours = [r for r in rows if r["ours"] and r["status"] == "ok"
            and (r.get("vs_numpy") is not None or r.get("vs_torch") is not None)]
    refs = [(key, name) for key, name in (("vs_numpy", "NumPy"), ("vs_torch", "PyTorch"))
            if any(r.get(key) is not None for r in ours)]
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.32 * max(len(ours), 1)))
    height = 0.8 / max(len(refs), 1)
    for j, (key, name) in enumerate(refs):
        ys = [i + (j - (len(refs) - 1) / 2) * height for i in range(len(ours))]
        ratios = [r.get(key) or 1.0 for r in ours]  # no such reference for the row: no bar
        # Bars grow from 1x on a log axis: 2x faster and 2x slower are the same length.
        ax.barh(ys, [v - 1.0 for v in ratios], left=1.0, height=height, label=f"vs {name}")
        for y, r in zip(ys, ours):
            if r.get(key) is not None:
                ax.annotate(f"{r[key]:.2f}x", (r[key], y), xytext=(3 if r[key] >= 1 else -3, 0),
                            textcoords="offset points", ha="left" if r[key] >= 1 else "right",
                            va="center", fontsize=6)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(ours)))
    ax.set_yticklabels([_label(r) for r in ours], fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log", base=2)
    values = [r[key] for r in ours for key, _ in refs if r.get(key)] or [1.0]
    ax.set_xlim(min(min(values), 1.0) / 1.6, max(max(values), 1.0) * 1.6)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.set_xlabel("reference time / our time (same run; above 1x: ours is faster)")
    ax.set_title(title, fontsize=9)
    if refs:
        ax.legend(fontsize=8, loc="best")
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")  # long case names stay whole
    plt.close(fig)
    return buf.getvalue()


def save(directory, slug, page, rows, title):
    """Render both files in memory, then write each atomically: a failure while drawing
    writes nothing, and a failed write leaves any earlier file of that name whole."""
    import os
    png = chart_png(rows, title)
    os.makedirs(directory, exist_ok=True)
    md_path = os.path.join(directory, slug + ".md")
    png_path = os.path.join(directory, slug + ".png")
    atomic_write(md_path, lambda f: f.write(page.encode("utf-8")), suffix=".md")
    atomic_write(png_path, lambda f: f.write(png), suffix=".png")
    return md_path, png_path
