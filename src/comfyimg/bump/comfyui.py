"""``invoke bump --comfyui``: move ``[comfyui]`` in wheels.toml to the newest ComfyUI release
and record the commit its tag points at (the pin itself: :mod:`comfyimg.pins.comfyui`)."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import tomlkit

from comfyimg import render
from comfyimg.build import bakefile
from comfyimg.bump.github import GitHub
from comfyimg.errors import BadInput, WorkFailed
from comfyimg.fsutil import atomic_write_many, exclusive, read_text
from comfyimg.output import out
from comfyimg.pins import load as pins_mod
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
    """``wheels.toml`` with ``[comfyui]`` moved to ``release``/``commit``; comments kept."""
    doc = tomlkit.parse(text)
    table = doc["comfyui"]
    table["release"] = release
    table["commit"] = commit
    return tomlkit.dumps(doc)


def newest_release(client: Any, repo: str, pre: bool, release: str | None) -> str:
    if release:
        return str(client.release_by_tag(repo, release).tag)
    return str(client.latest_release(repo, pre=pre).tag)


def bump(root: Path, *, pre: bool = False, release: str | None = None, dry_run: bool = False,
         json_out: bool = False, client: Any = None) -> int:
    """``invoke bump --comfyui``: move ``[comfyui]`` to the newest release and record its commit."""
    path = root / "wheels.toml"
    with exclusive(path, "invoke bump"):
        bake_targets = bakefile.targets(root / bakefile.BAKE_FILE)
        pins = pins_mod.load(path, bake_targets=bake_targets)
        pin = pins.comfyui
        if pin is None:
            raise BadInput(f"{path.name}: no [comfyui] table; add one, e.g.\n[comfyui]\n"
                           'github = "comfyanonymous/ComfyUI"\nrelease = "v0.3.66"')
        own = client is None
        client = client or GitHub.from_env()
        try:
            tag = newest_release(client, pin.github, pre, release)
            commit = resolve_commit(client, pin.github, tag)
        finally:
            if own:
                client.close()
        text = read_text(path)
        if (tag, commit) == (pin.release, pin.commit):
            if json_out:
                print(as_json(pin, tag, commit, []))
            else:
                out().print(f"up to date: ComfyUI {tag} at {commit}")
            return 0
        new_text = updated_text(text, tag, commit)
        try:
            new_pins = pins_mod.loads(new_text, path, bake_targets=bake_targets)
        except BadInput as exc:
            raise WorkFailed(f"the bumped {path.name} would not be valid:\n{exc}") from None
        if dry_run:
            diff = "".join(difflib.unified_diff(text.splitlines(keepends=True), new_text.splitlines(keepends=True),
                                                f"a/{path.name}", f"b/{path.name}"))
            if json_out:
                print(as_json(pin, tag, commit, []))
            else:
                out().print(diff, end="", soft_wrap=True)
                out().print("dry run: nothing written")
            return 0
        staged: dict[Path, bytes | str] = {path: new_text}
        for rel, content in render.render(new_pins).items():
            if not render.is_current(root / rel, content):
                staged[root / rel] = content
        atomic_write_many(staged)
        wrote = sorted(str(p.relative_to(root)) for p in staged)
        if json_out:
            print(as_json(pin, tag, commit, wrote))
        else:
            out().print(f"ComfyUI: {pin.release} {pin.commit or '(no commit)'} → {tag} {commit}; "
                        f"wrote {', '.join(wrote)}")
        return 0


def as_json(pin: ComfyUI, tag: str, commit: str, wrote: list[str]) -> str:
    return json.dumps({"comfyui": {"old": {"release": pin.release, "commit": pin.commit},
                                   "new": {"release": tag, "commit": commit},
                                   "changed": (tag, commit) != (pin.release, pin.commit)},
                       "wrote": wrote}, indent=2)


__all__ = ["as_json", "bump", "newest_release", "resolve_commit", "updated_text"]
