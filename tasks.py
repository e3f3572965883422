"""Maintainer tasks: ``invoke --list``.  Thin: parse arguments, call comfyimg.cli, print."""

from pathlib import Path

from invoke import task

from comfyimg import cli

ROOT = Path(__file__).resolve().parent


@task(help={})
def check(c):
    """Validate wheels.toml and verify generated/ is current (exit 1: drift, 2: bad input)."""
    cli.run(cli.check, ROOT)


@task(help={})
def render(c):
    """Regenerate generated/ (hash-pinned requirements, bake variables) from wheels.toml."""
    cli.run(cli.render_files, ROOT)
