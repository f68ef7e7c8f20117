"""The built wheel, installed into a fresh virtual environment and run from a directory
outside the checkout: what a user of `pip install numbanet` gets.

No network: the wheel is built without build isolation, installed with --no-deps, and
the new environment borrows this one's dependencies (numba, numpy, ...) through a path
file. A path file adds a directory to sys.path without running the .pth files in it,
so this checkout's editable install stays invisible there: every import of numbanet
must come from the wheel.
"""
import os
import subprocess
import sys
import sysconfig
import venv
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "-w", str(dist), ROOT], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (wheel,) = dist.glob("numbanet-*.whl")
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    child_site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(child_site, "borrowed-dependencies.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps",
                              "--no-index", str(wheel)], capture_output=True, text=True, timeout=600)
    if "no such option: --python" in install.stderr:  # pip < 22.3 cannot install into another env
        install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                                  "--target", child_site, str(wheel)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    work = base / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NUMBANET_BENCH_ENV")}
    env.update(NUMBA_CACHE_DIR=str(base / "numba-cache"), PYTHONNOUSERSITE="1")
    return {"wheel": wheel, "bin": env_dir / "bin", "py": py, "cwd": work, "env": env}


def _run(installed, *argv, timeout=600):
    return subprocess.run([str(a) for a in argv], cwd=installed["cwd"], env=installed["env"],
                          capture_output=True, text=True, timeout=timeout)


def test_wheel_holds_the_three_packages_under_one_name(installed):
    names = zipfile.ZipFile(installed["wheel"]).namelist()
    for module in ("numbanet/cli.py", "numbanet/kernels/cpu/gemm.py", "numbanet/kernels/gpu/gemm.py",
                   "numbanet/nn/models.py", "numbanet/nn/layers/conv.py", "numbanet/nn/datasets/mnist.py",
                   "numbanet/bench/runner.py", "numbanet/bench/gpu_check.sh", "numbanet/kernels/gpu_static.py",
                   "numbanet/kernels/gpu/signatures.json", "numbanet/bench/gpu_launches.py"):
        assert module in names, module
    tops = {n.split("/")[0] for n in names if not n.startswith("numbanet-")}
    assert tops == {"numbanet"}, f"the wheel installs top-level names besides numbanet: {sorted(tops)}"


def test_imports_come_from_the_wheel_not_the_checkout(installed):
    r = _run(installed, installed["py"], "-c",
             "import numbanet.kernels, numbanet.nn, numbanet.bench.runner as r; print(r.__file__)")
    assert r.returncode == 0, r.stderr
    path = r.stdout.strip()
    assert path.startswith(str(installed["py"].parent.parent)), path
    assert not path.startswith(ROOT + os.sep), path


def test_info_runs_from_another_directory(installed):
    r = _run(installed, installed["bin"] / "numbanet", "info")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "numbanet" in r.stdout and "cpu" in r.stdout


def test_bench_runs_from_another_directory(installed):
    r = _run(installed, installed["bin"] / "numbanet", "bench", "--tiny", "--repeats", "1", "--ops", "optim",
             "--backends", "cpu,numpy", "--json", "bench.json")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "| adam 1000 params" in r.stdout and "| sgd 1000 params" in r.stdout
    assert (installed["cwd"] / "bench.json").is_file()


def test_the_gpu_kernel_signatures_ship_with_the_wheel(installed):
    """`numbanet info --gpu-kernels` reads kernels/gpu/signatures.json as package data."""
    r = _run(installed, installed["py"], "-c", "from numbanet.kernels import gpu_static as g; "
             "r = g.load_signatures(); print(len(r), g.SIGNATURES); print(g.resolve(r[0]))")
    assert r.returncode == 0, r.stderr[-3000:]
    count, path = r.stdout.split("\n")[0].split(" ", 1)
    assert int(count) > 50 and path.startswith(str(installed["py"].parent.parent)), r.stdout


def test_train_help_runs_from_another_directory(installed):
    r = _run(installed, installed["bin"] / "numbanet", "train", "--help")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "--epochs" in r.stdout
