"""Kept only for ``kernels/coverage.py`` (the kernels helper's file), which imports
``record_hash_command`` from here: it lives in :mod:`comfyimg.pins.model` now. Delete this
module once that import names ``comfyimg.pins.model``."""

from comfyimg.pins.model import record_hash_command

__all__ = ["record_hash_command"]
