"""ComfyUI itself as a pin: ``[comfyui]`` in ``wheels.toml``.

    [comfyui]
    github = "Comfy-Org/ComfyUI"
    release = "v0.38.1"
    commit = "<40 hex>"   # recorded by `invoke bump --comfyui`; absent until then

* The loader (:func:`load`) checks the table, each error as ``wheels.toml:LINE: comfyui.FIELD: …``.
* :func:`bake_vars` gives the bake variables ``render`` writes: ``COMFYUI_REF`` is the
  commit once recorded, else the tag (the images then build from the tag, and say so);
  ``COMFYUI_TAG`` and ``COMFYUI_COMMIT`` fill the ``io.comfyimg.comfyui.*`` labels.
* :func:`comfyimg.bump.comfyui.bump` moves the pin to the newest release (GitHub releases API)
  and resolves the commit the tag points at (``GET /repos/{o}/{r}/commits/{tag}``).
* :func:`label_check` compares an image's labels with the pin (``invoke validate``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from comfyimg.pins import fields as F
from comfyimg.pins.fields import string, sub_table
from comfyimg.pins.lines import Errors

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


__all__ = ["COMMIT", "ComfyUI", "LABEL_COMMIT", "LABEL_REF", "LABEL_TAG", "bake_vars", "label_check", "load"]
