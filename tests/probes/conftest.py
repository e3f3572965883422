"""Fixtures of the probe tests: the fake installs (make_fakes.py), built once per session."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.probes import make_fakes


@pytest.fixture(scope="session")
def fake_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fakes")
    for variant in [*make_fakes.SAGE2_VARIANTS, *make_fakes.SAGE3_VARIANTS]:
        make_fakes.make(root, variant)
    (root / "nothing").mkdir()
    return root
