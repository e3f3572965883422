"""``invoke bump --profile NAME [--torch V] [--cuda V] [--python cpXY] [--torch-index I]``: a
profile and every pin of it move together. For each pin, the newest release (or index file)
whose one fitting file fits the moved profile (:func:`fitting_groups`); the profile's own keys
(:class:`ProfileMove`) and their edit (:func:`with_profile`). :mod:`comfyimg.bump.plan` then
verifies, records and writes it all in one edit."""

from __future__ import annotations

from dataclasses import dataclass, replace

import tomlkit
from packaging.version import InvalidVersion, Version

from comfyimg.bump.select import reject_reason, select_asset
from comfyimg.errors import BadInput, WorkFailed
from comfyimg.pins import fields as F
from comfyimg.pins import load as pins_mod
from comfyimg.pins.abi import InvalidWheelName, fit, parse_wheel
from comfyimg.pins.fields import index_vs_cuda
from comfyimg.sources import index as index_mod
from comfyimg.sources.github import GitHub, Release


def _fits_now(pins: pins_mod.Pins, pin: pins_mod.Pin) -> bool:
    """Does the file the pin names already fit every profile of its targets?"""
    try:
        wheel = parse_wheel(pin.filename)
    except InvalidWheelName:
        return False
    return all(not fit(wheel, pins.profile_for(t).abi_for(pin.platform), pin.arch) for t in pin.targets)


def _newest_fit(pins: pins_mod.Pins, pin: pins_mod.Pin, client: GitHub, pre: bool) -> tuple[Release, bool] | str:
    """The newest release (or index page) with the one file that fits ``pin`` in the moved
    profile: (release, pick the newest of the page?), or why there is none."""
    target = pin.targets[0]
    profile = pins.profile_for(target)
    if isinstance(pin.source, pins_mod.IndexSource):
        page = index_mod.as_release(index_mod.project_files(client.http, pin.source.index, pin.source.project),
                                    pin.source.index, pin.source.project)
        try:
            select_asset(page, pin, profile, target, newest=True, pre=pre)
        except WorkFailed as exc:
            return str(exc).splitlines()[0]
        return page, True
    if not isinstance(pin.source, pins_mod.Source):
        return (f"{pin.key}: {pin.filename} does not fit {target} ({profile.abi_for(pin.platform).describe()}) and the pin has "
                "no source to search; give it a source = { github, release } or edit its url")
    newest: Release | None = None
    for rel in client.releases(pin.source.github):
        if rel.draft or (rel.prerelease and not pre):
            continue
        newest = newest or rel
        try:
            select_asset(rel, pin, profile, target, pre=pre)
        except WorkFailed as exc:
            if "ambiguous" in str(exc).splitlines()[0]:
                return str(exc).splitlines()[0]
            continue
        return rel, False
    if newest is None:
        return f"{pin.key}: {pin.source.github} has no published release" + ("" if pre else " (--pre: prereleases too)")
    near = [f"{a.name} ({why})" for a in newest.assets
            if (why := reject_reason(a, pin, profile, pre)) and not why.startswith(("not a wheel", "distribution"))]
    return (f"{pin.key}: no release of {pin.source.github} has a file that fits {target} "
            f"({profile.abi_for(pin.platform).describe()}{', ' + pin.arch if pin.arch else ''}); newest release {newest.tag}: "
            + ("; ".join(near) or f"no {pin.name} file"))


def fitting_groups(pins: pins_mod.Pins, chosen: list[pins_mod.Pin], client: GitHub,
                   pre: bool) -> list[tuple[Release, bool, list[pins_mod.Pin]]]:
    """For each pin, the newest release that has a file fitting its (moved) profile; a pin
    whose file already fits and that has no source stays. None fits for some pin: an error
    that lists each such pin and why, before anything is downloaded."""
    groups: list[tuple[Release, bool, list[pins_mod.Pin]]] = []
    missing: list[str] = []
    for pin in chosen:
        if pin.source is None and _fits_now(pins, pin):
            continue
        found = _newest_fit(pins, pin, client, pre)
        if isinstance(found, str):
            missing.append(found)
        else:
            groups.append((found[0], found[1], [pin]))
    if missing:
        raise WorkFailed("\n".join(missing) + "\nnothing written: a profile moves with all its pins or not at all")
    return groups


@dataclass(frozen=True)
class ProfileMove:
    """``--profile NAME [--torch V] [--cuda V] [--python cpXY] [--torch-index I]``."""

    name: str
    torch: str | None = None
    cuda: str | None = None
    python: str | None = None
    torch_index: str | None = None

    def fields(self, pins: pins_mod.Pins) -> dict[str, str]:
        """The profile's keys that change; bad values are bad input naming the option."""
        profile = pins.profiles.get(self.name)
        if profile is None:
            raise BadInput(f"--profile {self.name}: {pins.path.name} has no [profiles.{self.name}]; "
                           f"profiles: {', '.join(sorted(pins.profiles))}")
        if not (self.torch or self.cuda or self.python or self.torch_index):
            raise BadInput("--profile moves a profile: give --torch, --cuda, --python or --torch-index")
        if self.torch:
            try:
                if Version(self.torch).local:
                    raise InvalidVersion
            except InvalidVersion:
                raise BadInput(f"--torch {self.torch!r} is not a plain torch version; expected e.g. 2.11.0") from None
        if self.cuda and not F.CUDA.fullmatch(self.cuda):
            raise BadInput(f"--cuda {self.cuda!r} is not a CUDA version; expected MAJOR.MINOR, e.g. 13.0")
        if self.cuda and profile.abi.cuda is None:
            raise BadInput(f"--cuda: [profiles.{self.name}] is a CPU profile (no cuda)")
        if self.python and not F.PY.fullmatch(self.python):
            raise BadInput(f"--python {self.python!r} is not a CPython tag; expected e.g. cp313")
        if self.torch_index and not F.INDEX.fullmatch(self.torch_index):
            raise BadInput(f"--torch-index {self.torch_index!r} is not a torch wheel index; expected cpu, cu130, …")
        new = {"torch": self.torch, "cuda": self.cuda, "python": self.python, "torch_index": self.torch_index}
        index = self.torch_index or profile.torch_index
        if self.cuda and not self.torch_index and index_vs_cuda(index, self.cuda):
            new["torch_index"] = "cu" + self.cuda.replace(".", "")  # torch's index for that CUDA
        old = {"torch": profile.abi.torch, "cuda": profile.abi.cuda, "python": profile.abi.python,
               "torch_index": profile.torch_index}
        return {k: v for k, v in new.items() if v is not None and v != old[k]}

    def moved(self, pins: pins_mod.Pins, fields: dict[str, str]) -> pins_mod.Pins:
        """``pins`` with the profile moved (in memory: its pins do not fit it yet)."""
        profile = pins.profiles[self.name]
        abi = replace(profile.abi, torch=fields.get("torch", profile.abi.torch),
                      cuda=fields.get("cuda", profile.abi.cuda), python=fields.get("python", profile.abi.python))
        new = replace(profile, abi=abi, torch_index=fields.get("torch_index", profile.torch_index))
        return replace(pins, profiles={**pins.profiles, self.name: new})


def with_profile(text: str, name: str, fields: dict[str, str]) -> str:
    """``wheels.toml`` with ``[profiles.NAME]``'s keys set; comments and order kept (tomlkit)."""
    doc = tomlkit.parse(text)
    table = doc["profiles"][name]
    for key, value in fields.items():
        table[key] = value
    return tomlkit.dumps(doc)


__all__ = ["ProfileMove", "fitting_groups", "with_profile"]
