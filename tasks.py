"""Maintainer tasks: ``invoke --list``.  Thin: each task is a command defined once in
comfyimg.cli (a frozen dataclass of its options, their help, the function it runs), which
``python -m comfyimg`` and the nox sessions run too. How to add one: docs/dev/commands.md."""

import os
import sys
from pathlib import Path

# invoke turns bytecode caching off (so that no tasks.pyc appears here); the package's own
# modules are cached as under plain python, or every task would compile them again.
sys.dont_write_bytecode = bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))

from comfyimg import cli  # noqa: E402  (after the line above, which decides its caching)

ROOT = Path(__file__).resolve().parent

# `invoke bump -d` would be invoke's --debug (and a bump that writes); refused, exit 2.
cli.refuse_invoke_letters(sys.argv, {c.name: c for c in cli.INVOKE_COMMANDS})

check = cli.CHECK.task(ROOT)
render = cli.RENDER.task(ROOT)
audit = cli.AUDIT.task(ROOT)
bump = cli.BUMP.task(ROOT)  # --release: cli.BumpRequest.release → cli.bump → comfyimg.bump.plan.bump
bake = cli.BAKE.task(ROOT)
attest = cli.ATTEST.task(ROOT)
verify = cli.VERIFY.task(ROOT)  # invoke verify IMAGE: cli.VerifyRequest → cli.verify → comfyimg.validate.verify
