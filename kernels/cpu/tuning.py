"""The GEMM configuration in force: micro-kernel shape, blocking and size thresholds.

Either measured on this machine by `numbanet tune` (numbanet/tune.py) and stored as JSON
in the user's cache directory, one file per machine key (CPU model, the LLVM CPU name and
vector ISA Numba compiles for, Numba's version: its LLVM decides what spills), or, when
no valid file is stored, derived from the CPU's features (kernels/cpu/machine.py):

    tile   the candidate (kernels/cpu/tiles.py) that fits the register file, keeps at
           least 2 x FMA units x FMA latency accumulators in flight (else the most), has
           an NR that divides power-of-two widths, and does the most FMAs per value
           loaded (B vectors plus A broadcasts per step of k; ties: the taller tile)
    kc     deepest KC slice: one kc x NR panel of op(b) fills the L1 data cache (the
           micro-kernel streams it once per MR rows of op(a))
    mc     rows of op(a) per packed block: an mc x kc block takes an eighth of L2
    serial_macs, prepack_macs: products below serial_macs run on one thread (a
           parallel region costs ~0.1 ms, worth this many multiply-adds at the vector
           unit's peak); above prepack_macs op(b) is packed once by all threads

A stored file is checked before it is trusted: unreadable JSON, another format, another
machine key, an unknown candidate or a value out of range is ignored with one warning
(TuningWarning) naming the file and the reason, and the derived defaults are used.

    NUMBANET_TUNING_DIR   where the files are (default $XDG_CACHE_HOME/numbanet or
                          ~/.cache/numbanet)
    NUMBANET_TUNING=off   ignore stored files: the derived defaults
"""
import hashlib
import json
import os
import re
import warnings
from dataclasses import dataclass

from numbanet.kernels.cpu import machine as machine_info
from numbanet.kernels.cpu.tiles import Tile, accumulators, all_tiles, fits

FORMAT = "numbanet-gemm-tuning/1"
DIR_ENV = "NUMBANET_TUNING_DIR"
SWITCH_ENV = "NUMBANET_TUNING"

KC_RANGE = (64, 1024)
MC_RANGE = (16, 2048)
_FALLBACK_L1D = 32 * 1024          # when the OS reports no cache sizes: the smallest
_FALLBACK_L2 = 256 * 1024          # L1d/L2 of any x86 core since 2008
_REGION_S = 1e-4                   # a parallel region's start + join, seconds
_NOMINAL_HZ = 2.5e9                # a clock to turn FMA issue into multiply-adds per second
_PREPACK_OVER_SERIAL = 24          # packing op(b) once pays when it is reused this much more


class TuningWarning(UserWarning):
    """A stored GEMM tuning file was ignored (the message says which and why)."""


@dataclass(frozen=True)
class Choice:
    tile: Tile
    kc: int
    mc: int
    serial_macs: int
    prepack_macs: int
    source: str = "derived"   # "derived" (from the CPU's features), "tuned" (a stored file), "given"
    where: str = ""           # the file, for "tuned"

    def as_dict(self):
        return {"tile": self.tile.name, "kc": self.kc, "mc": self.mc, "serial_macs": self.serial_macs,
                "prepack_macs": self.prepack_macs}

    def describe(self):
        return (f"{self.tile.name} micro-kernel, KC {self.kc}, MC {self.mc}, one thread below "
                f"{self.serial_macs / 1e6:.3g}M multiply-adds, op(b) packed once above {self.prepack_macs / 1e6:.3g}M")

    def origin(self):
        return {"derived": "derived from the CPU's features", "tuned": f"tuned file {self.where}"}.get(
            self.source, self.source)


def candidate_tiles(m):
    """The shapes worth measuring on machine m: those that fit its register file (the
    search's plan), best-first by the derived rule."""
    fitting = [t for t in all_tiles() if fits(t, m.lanes, m.registers)]
    return sorted(fitting, key=lambda t: _tile_rank(t, m), reverse=True)


def _tile_rank(tile, m):
    acc = accumulators(tile, m.lanes)
    # Twice FMA units x latency independent accumulators: each FMA also waits on its
    # loads (a row of B, a broadcast of A), so latency x units alone leaves the unit idle
    # (2x32, 4 accumulators, ran at 63% of 8x32 on Zen 4, one 512-bit FMA per cycle).
    enough = acc >= 2 * m.fma_units * machine_info.FMA_LATENCY
    # Layer widths are mostly powers of two: an NR that divides them leaves no edge
    # panel (6x48 ran 13% below 8x32 at 512^3, one thread, for that alone).
    whole = tile.nr & (tile.nr - 1) == 0
    loads = tile.nr // m.lanes + tile.mr
    # Short of accumulators, the most of them; else the most FMAs per value loaded.
    return (enough, whole, acc / loads if enough else acc, tile.mr)


def derived_tile(m):
    ranked = candidate_tiles(m)
    if ranked:
        return ranked[0]
    # Nothing fits (a register file smaller than any candidate's): the fewest registers.
    return min(all_tiles(), key=lambda t: (accumulators(t, m.lanes) if t.nr % m.lanes == 0 else 1 << 30, t.mr))


def derived_blocking(tile, m):
    """(kc, mc) from the cache sizes (see the module's docstring)."""
    l1d = m.l1d or _FALLBACK_L1D
    l2 = m.l2 or _FALLBACK_L2
    kc = _clamp(l1d // (4 * tile.nr) // 16 * 16, *KC_RANGE)
    mc = _clamp(l2 // 8 // (4 * kc) // tile.mr * tile.mr, *MC_RANGE)
    return kc, max(tile.mr, mc - mc % tile.mr)


def derived_thresholds(m):
    serial = max(int(_REGION_S * m.lanes * m.fma_units * _NOMINAL_HZ), 1 << 20)
    return serial, serial * _PREPACK_OVER_SERIAL


def derive(m):
    tile = derived_tile(m)
    kc, mc = derived_blocking(tile, m)
    serial, prepack = derived_thresholds(m)
    return Choice(tile, kc, mc, serial, prepack, "derived")


def _clamp(v, lo, hi):
    return max(lo, min(hi, v))


# --------------------------------------------------------------------------- stored choice
def tuning_dir():
    if os.environ.get(DIR_ENV):
        return os.environ[DIR_ENV]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "numbanet")


def machine_key(m):
    """What a stored choice is valid for."""
    import numba
    return {"model": m.model, "cpu_name": m.cpu_name, "isa": m.isa, "numba": numba.__version__}


def path_for(m, directory=None):
    key = machine_key(m)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", f"{key['cpu_name']}-{key['isa']}").strip("-")
    return os.path.join(directory or tuning_dir(), f"gemm-{slug}-{digest}.json")


def record(choice, m, measured):
    """The JSON document `numbanet tune` stores for machine m."""
    return {"format": FORMAT, "machine": machine_key(m), "choice": choice.as_dict(), "measured": measured}


def parse(doc, m):
    """doc (a stored document) -> the Choice it holds for machine m; ValueError saying why not."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} document")
    if doc.get("machine") != machine_key(m):
        raise ValueError(f"tuned for {doc.get('machine')!r}, this process compiles for {machine_key(m)!r}")
    c = doc.get("choice")
    if not isinstance(c, dict):
        raise ValueError("no 'choice' object")
    tile = Tile.parse(c.get("tile"))
    values = {}
    for name, lo, hi in (("kc", *KC_RANGE), ("mc", *MC_RANGE), ("serial_macs", 0, 1 << 40),
                         ("prepack_macs", 0, 1 << 40)):
        v = c.get(name)
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {v!r}")
        values[name] = v
    if values["mc"] % tile.mr:
        raise ValueError(f"mc={values['mc']} is not a multiple of the tile's {tile.mr} rows")
    return Choice(tile, values["kc"], values["mc"], values["serial_macs"], values["prepack_macs"], "tuned")


def load(m, path=None):
    """The stored Choice for machine m, or None (no file: silently; a bad one: one warning)."""
    path = path or path_for(m)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        warnings.warn(f"numbanet: GEMM tuning file {path} ignored (cannot read it: {e}); using the defaults "
                      "derived from the CPU's features", TuningWarning, stacklevel=3)
        return None
    try:
        choice = parse(json.loads(text), m)
    except ValueError as e:   # json.JSONDecodeError is a ValueError
        warnings.warn(f"numbanet: GEMM tuning file {path} ignored ({e}); using the defaults derived from the "
                      "CPU's features; `numbanet tune` writes a new one", TuningWarning, stacklevel=3)
        return None
    return Choice(choice.tile, choice.kc, choice.mc, choice.serial_macs, choice.prepack_macs, "tuned", path)


_current = []


def current():
    """The Choice in force in this process (read once: the stored file, else derived)."""
    if not _current:
        m = machine_info.describe()
        stored = None if os.environ.get(SWITCH_ENV, "").lower() in ("off", "0") else load(m)
        _current.append((stored or derive(m), m))
    return _current[0][0]


def strip_tile(lanes):
    """The micro-kernel shape for products written into strips `lanes` wide whose row
    panels split them evenly (attention's 16-lane score strips): the choice in force when
    its shape is one, else the best-ranked candidate of that kind for this machine."""
    if lanes not in _strip:
        tile = current().tile
        if not (tile.nr == lanes and lanes % tile.mr == 0):
            m = current_machine()
            kind = [t for t in all_tiles() if t.nr == lanes and lanes % t.mr == 0]
            fitting = [t for t in kind if fits(t, m.lanes, m.registers)]
            tile = max(fitting, key=lambda t: _tile_rank(t, m)) if fitting else min(kind, key=lambda t: t.mr)
        _strip[lanes] = tile
    return _strip[lanes]


_strip = {}   # strip_tile's, by lane width, and short_tile's ("short"); forget() clears both

# A tile of few rows for two kinds of product the GEMM's tuned shape serves badly:
# - convolution (kernels/cpu/conv.py) reads MR pixels' windows of the image in place, each
#   from a base address in a general-purpose register; x86-64 has 16 of them, shared with
#   the loop's pointers and counters. The article's second convolution forward (B128, two
#   threads, AMD EPYC, tiles interleaved in one process): 4x64 3.41 ms, 10x32 and 8x32 4.6
#   (10x32 was the tuned GEMM's choice), 2x32 5.37; compiled for AVX2: 2x32 4.80 ms, 4x16
#   5.58, 3x24 (the tuned choice) 6.00.
# - the recurrence (kernels/cpu/rnn.py) multiplies the batch's rows (64 in the bench) by the
#   recurrent kernel at every step, split between the threads in MR-row panels: 10 rows pad
#   64 to 70 and split 4 + 3. `numbanet bench --quick --ops rnn --backends cpu,torch`, AMD
#   EPYC: LSTM B64 T100 F128 H256 137 ms on the tuned 10x32, 119 on 4x64 (GRU 125, 97);
#   compiled for AVX2 on the tuned 3x24 216 ms (0.71x PyTorch), on 2x32 133 (0.93x).
SHORT_MAX_MR = 4


def short_tile():
    """The register tile of convolution and the recurrence on this machine: of the candidates
    with MR <= 4 that fit its registers, the widest (then the tallest): AVX-512's 4x64,
    AVX2's 2x32."""
    if "short" not in _strip:
        m = current_machine()
        fitting = [t for t in all_tiles() if t.mr <= SHORT_MAX_MR and fits(t, m.lanes, m.registers)]
        _strip["short"] = (max(fitting, key=lambda t: (t.nr, t.mr)) if fitting
                           else min(all_tiles(), key=lambda t: t.mr * t.nr))
    return _strip["short"]


def current_machine():
    current()
    return _current[0][1]


def forget():
    """Read the choice again on the next current() (after `numbanet tune` wrote one)."""
    _current.clear()
    _strip.clear()
