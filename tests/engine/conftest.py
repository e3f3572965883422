"""The engine suite's fixtures. Their code lives in tests/lib/engine.py (shared with bench/),
so no test module or bench script imports a conftest."""

from tests.lib.engine import (  # noqa: F401  (pytest finds fixtures by name here)
    _cleanup, _engine_gate, bumped_image, crash_image, engine_project, main_image, registry, served)
