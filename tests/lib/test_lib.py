"""Tests of the shared test helpers (tests/lib) and of the fixtures they read: the committed
CUDA objects (tests/fixtures/cuda-objects) and the vendored sources (tests/vendor)."""

from __future__ import annotations

import re
import subprocess
import zipfile
from pathlib import Path

import pytest

from comfyimg.kernels.cuobjdump import cuobjdump
from tests.lib import VENDOR, vendored_sage_files
from tests.lib.cudawheels import LISTING, OBJECTS, SEED_SAGE2, sage2_wheel, so
from tests.lib.wheels import build_wheel

OBJECT_NAMES = sorted(p.stem for p in OBJECTS.glob("*.so"))


# --------------------------------------------------------------------------- the CUDA objects


def relist(path: Path) -> str:
    """What build.sh writes for one object: ``cuobjdump --list-elf --list-ptx``, stdout and
    stderr together, the folder's path removed."""
    tool, _ = cuobjdump()
    r = subprocess.run([tool, "--list-elf", "--list-ptx", path.name], cwd=path.parent, capture_output=True,
                       text=True, timeout=60)
    return f"== {path.name}\n" + (r.stdout + r.stderr).replace(f"{path.parent}/", "") + "\n"


def test_every_committed_object_lists_exactly_as_recorded_in_listing_txt():
    assert len(OBJECT_NAMES) >= 14, OBJECT_NAMES
    blocks = re.split(r"(?m)^(?=== )", LISTING.read_text())
    recorded = {b.splitlines()[0][3:]: b for b in blocks if b.strip()}
    assert sorted(recorded) == sorted(f"{n}.so" for n in OBJECT_NAMES)
    for name in OBJECT_NAMES:
        assert relist(OBJECTS / f"{name}.so") == recorded[f"{name}.so"], name


def targets_in_name(name: str) -> tuple[set[str], set[str]]:
    """``r_80_89_90a_ptx80`` -> ({sm_80, sm_89, sm_90a}, {compute_80})."""
    tokens = name.removeprefix("r_").split("_")
    assert all(re.fullmatch(r"(ptx)?\d+[af]?", t) for t in tokens), name
    return ({f"sm_{t}" for t in tokens if not t.startswith("ptx")},
            {f"compute_{t[3:]}" for t in tokens if t.startswith("ptx")})


def targets_in_object(path: Path) -> tuple[set[str], set[str]]:
    """The arch of each cubin and PTX in the fatbin, from the headers ``cuobjdump -elf -ptx`` prints
    (``--list-elf`` would say ``sm_120`` for an ``sm_120f`` cubin)."""
    tool, _ = cuobjdump()
    out = subprocess.run([tool, "-elf", "-ptx", str(path)], capture_output=True, text=True, timeout=60).stdout
    sass: set[str] = set()
    ptx: set[str] = set()
    for kind, arch in re.findall(r"^Fatbin (elf|ptx) code:\n=+\narch = (sm_\w+)$", out, flags=re.M):
        (sass if kind == "elf" else ptx).add(arch if kind == "elf" else arch.replace("sm_", "compute_"))
    return sass, ptx


@pytest.mark.parametrize("name", OBJECT_NAMES)
def test_each_object_carries_exactly_the_targets_its_name_says(name):
    assert targets_in_object(OBJECTS / f"{name}.so") == targets_in_name(name)


def test_the_objects_are_small_and_built_without_the_cuda_runtime():
    for name in OBJECT_NAMES:
        size = (OBJECTS / f"{name}.so").stat().st_size
        assert size < 64 * 1024, (name, size)  # -cudart none: tens of KB, not a megabyte


def test_the_build_script_names_every_committed_object():
    script = (OBJECTS / "build.sh").read_text()
    assert sorted(re.findall(r"^\s+\[(r_\w+)\]=", script, flags=re.M)) == OBJECT_NAMES
    readme = (OBJECTS / "README.md").read_text()
    for name in OBJECT_NAMES:
        assert f"`{name}.so`" in readme, name


def test_a_sage2_wheel_carries_the_objects_under_module_names(tmp_path):
    wheel = sage2_wheel(tmp_path, SEED_SAGE2)
    with zipfile.ZipFile(wheel) as zf:
        for module, obj in SEED_SAGE2.items():
            assert zf.read(f"sageattention/{module}.cpython-312-x86_64-linux-gnu.so") == so(obj)


# --------------------------------------------------------------------------- tests/vendor


def vendor_list() -> dict[str, tuple[str, str, str, list[str]]]:
    """tests/vendor/vendor.txt: directory -> (version or commit, url, licence, file globs)."""
    entries = {}
    for line in (VENDOR / "vendor.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        spec, url, licence, *globs = line.split()
        directory, _, version = spec.partition("==")
        assert version and url.startswith("https://github.com/") and globs, line
        entries[directory] = (version, url, licence, globs)
    return entries


def test_vendor_txt_lists_every_vendored_directory_with_its_licence_file():
    entries = vendor_list()
    assert sorted(entries) == sorted(p.name for p in VENDOR.iterdir() if p.is_dir())
    for directory, (version, _, licence, _) in entries.items():
        assert directory.endswith(f"-{version}"), (directory, version)
        assert licence in ("Apache-2.0", "GPL-3.0-only"), licence
        text = (VENDOR / directory / "LICENSE").read_text()
        assert ("Apache License" if licence == "Apache-2.0" else "GNU GENERAL PUBLIC LICENSE") in text


def test_each_vendored_directory_holds_exactly_the_files_vendor_txt_names():
    for directory, (_, _, _, globs) in vendor_list().items():
        root = VENDOR / directory
        on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
        named = {p.relative_to(root).as_posix() for g in globs for p in root.glob(g) if p.is_file()}
        assert on_disk == named, (directory, on_disk ^ named)
        assert not any("__pycache__" in f for f in on_disk), directory


@pytest.mark.parametrize(("source", "package"), [("v2.2.0", "sageattention"), ("d1a57a5", "sageattention"),
                                                  ("pixeloven-7bd3a0e", "sageattention"),
                                                  ("sageattn3-v2.2.0", "sageattn3"),
                                                  ("sageattn3-pixeloven-7bd3a0e", "sageattn3")])
def test_vendored_sage_files_are_the_package_python_by_wheel_path(source, package, tmp_path):
    files = vendored_sage_files(source)
    assert f"{package}/__init__.py" in files and all(p.startswith(f"{package}/") for p in files)
    assert all(p.endswith(".py") for p in files)
    root = VENDOR / (source if source.startswith("sageattn3") else f"sageattention-{source}")
    assert files == {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*.py")}
    if package == "sageattention":
        assert b"def sageattn(" in files["sageattention/core.py"]
    wheel = build_wheel(tmp_path, package, "2.2.0", files=files)
    with zipfile.ZipFile(wheel) as zf:
        assert {n: zf.read(n) for n in zf.namelist() if n.endswith(".py")} == files


def test_an_unknown_source_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="no vendored Python"):
        vendored_sage_files("v9.9.9")


# --------------------------------------------------------------------------- tests/conftest.py


def test_a_skip_without_the_gpu_mark_or_a_loose_xfail_fails_the_run(tmp_path):
    import os
    import sys

    (tmp_path / "test_outcomes.py").write_text(
        "import pytest\n"
        "def test_plain_skip(): pytest.skip('a fixture is missing')\n"
        "@pytest.mark.gpu\ndef test_gpu_skip(): pytest.skip('no GPU')\n"
        "@pytest.mark.xfail(reason='loose')\ndef test_loose(): assert False\n"
        "@pytest.mark.xfail(reason='tight', strict=True)\ndef test_tight(): assert False\n"
        "def test_ok(): pass\n")
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), str(repo / "src"), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-q",
                        "-W", "ignore::pytest.PytestUnknownMarkWarning", "--rootdir", str(tmp_path),
                        str(tmp_path / "test_outcomes.py")], cwd=repo, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "test_plain_skip: skipped but not marked gpu (Skipped: a fixture is missing)" in r.stdout
    assert "test_loose: xfail that is not strict (loose)" in r.stdout
    assert "test_gpu_skip:" not in r.stdout.split("only gpu-marked tests may skip")[1]
    assert "test_tight:" not in r.stdout.split("only gpu-marked tests may skip")[1]
