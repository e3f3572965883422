"""ComfyUI itself as a pin: ``[comfyui]`` in ``wheels.toml``.

    [comfyui]
    github = "comfyanonymous/ComfyUI"
    release = "v0.3.66"
    commit = "<40 hex>"   # recorded by `invoke bump --comfyui`; absent until then

* The loader (:func:`load`) checks the table, each error as ``wheels.toml:LINE: comfyui.FIELD: …``.
* :func:`bake_vars` gives the bake variables ``render`` writes: ``COMFYUI_REF`` is the
  commit once recorded, else the tag (the images then build from the tag, and say so);
  ``COMFYUI_TAG`` and ``COMFYUI_COMMIT`` fill the ``io.comfyimg.comfyui.*`` labels.
* :func:`bump` moves the pin to the newest release (GitHub releases API) and resolves the
  commit the tag points at (``GET /repos/{o}/{r}/commits/{tag}``).
* :func:`label_check` compares an image's labels with the pin (``invoke validate``).
"""

from __future__ import annotations

import json
import re
import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import tomlkit

from . import pinfields as F
from .errors import BadInput, WorkFailed
from .pinfields import string, sub_table
from .tomllines import Errors

KEYS = {"github", "release", "commit"}
COMMIT = re.compile(r"[0-9a-f]{40}")
LABEL_REF = "io.comfyimg.comfyui.ref"  # what the build checked out (COMFYUI_REF)
LABEL_TAG = "io.comfyimg.comfyui.tag"
LABEL_COMMIT = "io.comfyimg.comfyui.commit"


@dataclass(frozen=True)
class ComfyUI:
    github: str
    release: str
    commit: str | None
    line: int

    @property
    def ref(self) -> str:
        """What the bake checks out: the commit once recorded, else the tag."""
        return self.commit or self.release


def load(err: Errors, raw: Any) -> ComfyUI | None:
    where = ("comfyui",)
    if not sub_table(err, (), "comfyui", raw, KEYS,
                     "{ github = 'owner/repo', release = 'TAG', commit = '40 hex' }"):
        return None
    github = string(err, where, "comfyui.github", raw, "github")
    release = string(err, where, "comfyui.release", raw, "release")
    commit = string(err, where, "comfyui.commit", raw, "commit", required=False)
    ok = True
    if github and not F.REPO.fullmatch(github):
        err.add(where + ("github",), "comfyui.github", f"{github!r} is not 'owner/repo'")
        ok = False
    if release and (why := F.tag_problem(release)):
        err.add(where + ("release",), "comfyui.release", f"{release!r} is not a git tag name: it {why}")
        ok = False
    if commit is not None and not COMMIT.fullmatch(commit):
        err.add(where + ("commit",), "comfyui.commit",
                f"{commit!r} is not a commit id; expected 40 lowercase hex characters. Omit it until "
                "`invoke bump --comfyui` records it; never invent one")
        ok = False
    if not (ok and github and release):
        return None
    return ComfyUI(github, release, commit, err.line(*where))


def bake_vars(pin: ComfyUI) -> dict[str, object]:
    return {"COMFYUI_REF": {"default": pin.ref}, "COMFYUI_TAG": {"default": pin.release},
            "COMFYUI_COMMIT": {"default": pin.commit or ""}}


def label_check(labels: dict[str, str], pin: ComfyUI | None) -> dict:
    """The image's ComfyUI labels against the pin, as one check of a validation report."""
    name = "ComfyUI label matches the pin"
    if pin is None:
        return {"name": name, "status": "skip", "detail": "wheels.toml has no [comfyui] pin"}
    tag, commit = labels.get(LABEL_TAG), labels.get(LABEL_COMMIT)
    if tag is None:
        return {"name": name, "status": "skip", "detail": f"no {LABEL_TAG} label (no ComfyUI, or not built "
                                                           "by invoke bake)"}
    ref = labels.get(LABEL_REF)
    want = (pin.release, pin.commit or "", pin.ref)
    if (tag, commit or "", ref) != want:
        return {"name": name, "status": "fail",
                "detail": f"the image holds ComfyUI {tag} {commit or '(no commit)'}, checked out at {ref}; "
                          f"wheels.toml pins {pin.release} {pin.commit or '(no commit recorded)'} ({pin.ref})"}
    return {"name": name, "status": "pass", "detail": f"ComfyUI {tag} {commit or '(tag; no commit recorded)'}"}


# --------------------------------------------------------------------------- bump


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
    from . import bakefile, render
    from . import pins as pins_mod
    from .console import out
    from .fsutil import atomic_write_many, exclusive, read_text
    from .releases import GitHub

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


__all__ = ["ComfyUI", "LABEL_COMMIT", "LABEL_REF", "LABEL_TAG", "bake_vars", "bump", "label_check", "load",
           "resolve_commit", "updated_text"]
