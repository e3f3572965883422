"""``invoke bump --comfyui``: move ``[comfyui]`` in wheels.toml to the newest ComfyUI release
and record the commit its tag points at (the pin itself: :mod:`comfyimg.pins.comfyui`)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import quote

import tomlkit

from comfyimg import render
from comfyimg.sources.github import borrowed
from comfyimg.errors import BadInput, WorkFailed
from comfyimg.fsutil import atomic_write_many, exclusive, read_text
from comfyimg.pins import load as pins_mod
from comfyimg.pins.edit import diff as toml_diff
from comfyimg.pins.edit import drop_pending_notes, reloaded
from comfyimg.pins.lines import entry_end
from comfyimg.pins.comfyui import COMMIT, ComfyUI

def resolve_commit(client: Any, repo: str, ref: str) -> str:
    """The commit ``ref`` (a tag) points at, from ``GET /repos/{o}/{r}/commits/{ref}``."""
    owner, name = repo.split("/", 1)
    what = f"commit of {ref} in {repo}"
    path = f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}/commits/{quote(ref, safe='')}"
    data, _ = client.http.json(client.http.api(path), what)
    sha = data.get("sha") if isinstance(data, dict) else None
    if not isinstance(sha, str) or not COMMIT.fullmatch(sha):
        raise WorkFailed(f"{what}: the answer has no 40-hex 'sha'")
    return sha


def updated_text(text: str, release: str, commit: str) -> str:
    """``wheels.toml`` with ``[comfyui]`` moved to ``release``/``commit``; comments kept. A new
    ``commit`` goes right after the table's last key (tomlkit would append it after the comments
    that introduce the next table); the note that it is not recorded yet goes."""
    doc = tomlkit.parse(text)
    table = doc["comfyui"]
    table["release"] = release
    if "commit" in table:
        table["commit"] = commit
        return drop_pending_notes(tomlkit.dumps(doc), ("comfyui",))
    moved = tomlkit.dumps(doc)
    end = entry_end(moved, ("comfyui",))
    lines = moved.split("\n")
    placed = "\n".join([*lines[:end], f'commit = "{commit}"', *lines[end:]]) if end else ""
    try:
        fits = bool(placed) and tomllib.loads(placed)["comfyui"] == {**tomllib.loads(moved)["comfyui"], "commit": commit}
    except tomllib.TOMLDecodeError:
        fits = False
    if not fits:  # a layout the line edit cannot place: tomlkit's own placement
        table["commit"] = commit
        placed = tomlkit.dumps(doc)
    return drop_pending_notes(placed, ("comfyui",))


def newest_release(client: Any, repo: str, pre: bool, release: str | None) -> str:
    if release:
        return str(client.release_by_tag(repo, release).tag)
    return str(client.latest_release(repo, pre=pre).tag)


def bump(root: Path, *, pre: bool = False, release: str | None = None, dry_run: bool = False,
         client: Any = None) -> dict[str, Any]:
    """``invoke bump --comfyui``: move ``[comfyui]`` to the newest release and record its commit.
    Returns what moved (:func:`as_json`, with the ``diff`` of a dry run); ``cli`` prints it."""
    path = root / "wheels.toml"
    with exclusive(path, "invoke bump"):
        bake_targets = render.targets(root / render.BAKE_FILE)
        pins = pins_mod.load(path, bake_targets=bake_targets)
        pin = pins.comfyui
        if pin is None:
            raise BadInput(f"{path.name}: no [comfyui] table; add one, e.g.\n[comfyui]\n"
                           'github = "Comfy-Org/ComfyUI"\nrelease = "v0.38.1"')
        with borrowed(client) as github:
            tag = newest_release(github, pin.github, pre, release)
            commit = resolve_commit(github, pin.github, tag)
        text = read_text(path)
        if (tag, commit) == (pin.release, pin.commit):
            return as_json(pin, tag, commit, [])
        new_text = updated_text(text, tag, commit)
        new_pins = reloaded(new_text, path, bake_targets=bake_targets,
                            failed=f"the bumped {path.name} would not be valid")
        if dry_run:
            return {**as_json(pin, tag, commit, []), "diff": toml_diff(text, new_text, path.name)}
        staged: dict[Path, bytes | str] = {path: new_text, **render.changed(new_pins, root)}
        atomic_write_many(staged, verbatim={path})
        return as_json(pin, tag, commit, sorted(str(p.relative_to(root)) for p in staged))


def as_json(pin: ComfyUI, tag: str, commit: str, wrote: list[str]) -> dict[str, Any]:
    """``invoke bump --comfyui --json``: the pin's old and new release and commit, the files written."""
    return {"comfyui": {"old": {"release": pin.release, "commit": pin.commit},
                        "new": {"release": tag, "commit": commit},
                        "changed": (tag, commit) != (pin.release, pin.commit)},
            "wrote": wrote}


__all__ = ["as_json", "bump", "newest_release", "resolve_commit", "updated_text"]
