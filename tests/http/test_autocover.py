"""autocover (what `invoke bake` runs before judging coverage): a hashed pin with no coverage is
downloaded from a real loopback server, checked against its sha256, and its coverage recorded."""

from __future__ import annotations

import pytest

from comfyimg.bake import autocover
from comfyimg.pins import load as pins_mod
from comfyimg.errors import WorkFailed
from tests.lib.cudawheels import FULL_SAGE2, sage2_wheel
from tests.lib.pinfile import profile, wheel
from tests.lib.server import serve
from tests.lib.wheels import build_wheel, sha256_file

NAME = "sageattention-2.2.0-290.129-cp312-cp312-linux_x86_64.whl"


@pytest.fixture
def server(tmp_path):
    srv = serve(tmp_path / "www")
    yield srv
    srv.stop()


def _project(tmp_path, server, sha256: str | None, extra: str = "") -> pins_mod.Pins:
    whl = sage2_wheel(server.root, FULL_SAGE2, filename=NAME)
    text = (profile("cuda", torch="2.9.0", torch_index="cu128", cuda="12.9", archs=["sm80", "sm90"]) + "\n"
            + wheel("sageattention", "2.2.0", f"{server.url}/{whl.name}", targets=["complete-cuda"],
                    sha256=sha256) + extra)
    root = tmp_path / "project"
    root.mkdir()
    (root / "wheels.toml").write_text(text)
    return pins_mod.load(root / "wheels.toml")


def test_records_coverage_of_a_hashed_pin(tmp_path, server, monkeypatch):
    monkeypatch.setenv("GITHUB_API_URL", "http://127.0.0.1:9")  # never asked
    sha = sha256_file(sage2_wheel(tmp_path / "same", FULL_SAGE2, filename=NAME))
    pins = _project(tmp_path, server, sha)
    chosen = autocover.missing(pins, pins.wheels)
    assert [p.key for p in chosen] == ["sageattention"]
    said: list[str] = []
    new = autocover.record(pins.path.parent, pins, chosen, say=said.append)
    assert said == [f"recorded the kernel coverage of sageattention (read from {NAME}, sha256 {sha[:12]}… verified)"]
    pin = new.wheels[0]
    assert pin.coverage is not None and pin.coverage.sha256 == sha
    assert {m.name for m in pin.coverage.modules} == {f"sageattention.{m}" for m in FULL_SAGE2}
    assert pins_mod.load(pins.path).wheels[0].coverage == pin.coverage  # written to wheels.toml
    assert server.requests == [f"/{NAME}"]
    assert autocover.missing(new, new.wheels) == []  # recorded once


def test_other_bytes_fail_and_write_nothing(tmp_path, server, monkeypatch):
    monkeypatch.setenv("GITHUB_API_URL", "http://127.0.0.1:9")
    pins = _project(tmp_path, server, "e" * 64)
    before = pins.path.read_bytes()
    with pytest.raises(WorkFailed, match=r"digest mismatch: " + NAME + r" .* but the sha256 pinned in "
                                         r"wheels\.toml says e{64} \(the asset was replaced"):
        autocover.record(pins.path.parent, pins, autocover.missing(pins, pins.wheels), say=print)
    assert pins.path.read_bytes() == before


def test_only_hashed_gpu_pins_are_recorded(tmp_path, server):
    cpu = "\n" + profile("cpu", torch="2.9.0", torch_index="cpu") + "\n" + wheel(
        "helper", "0.1.0", f"{server.url}/helper-0.1.0-py3-none-any.whl", targets=["core-cpu"], sha256="a" * 64)
    build_wheel(server.root, "helper", "0.1.0")
    pins = _project(tmp_path, server, None, cpu)
    assert autocover.missing(pins, pins.wheels) == []  # no sha256: never trusted here; CPU: no GPU
