"""The platforms of ``wheels.toml``: a profile's ``platform`` or ``platforms`` (x86-64, aarch64),
the platform of a pin without its own ``platform`` key, and the rule that a target built for
several platforms installs each of its distributions on every one of them. Part of the loader
(:mod:`comfyimg.pins.load`): each check adds its errors to the loader's :class:`Errors`."""

from __future__ import annotations

from typing import Any

from packaging.utils import canonicalize_name

from comfyimg.pins import fields as F
from comfyimg.pins.fields import matching, str_list
from comfyimg.pins.lines import Errors
from comfyimg.pins.model import DEFAULT_PLATFORM, DOCKER_PLATFORMS, Pin, Profile


def known_platform(err: Errors, where: tuple[Any, ...], field: str, value: str) -> bool:
    if value in DOCKER_PLATFORMS:
        return True
    err.add(where, field, f"{value!r} is not a platform the images are built for; expected one of "
            f"{', '.join(sorted(DOCKER_PLATFORMS))}")
    return False


def profile_platforms(err: Errors, where: tuple[Any, ...], f: str, table: dict) -> tuple[str, ...] | None:
    """``platform = "linux_x86_64"`` or ``platforms = ["linux_x86_64", "linux_aarch64"]`` (the
    first builds the targets without a suffix, each other one the ``-<arch>`` targets)."""
    if "platform" in table and "platforms" in table:
        err.add(where + ("platforms",), f + "platforms",
                "give platform (one) or platforms (several), not both")
        return None
    if "platforms" in table:
        listed = str_list(err, where, f + "platforms", table, "platforms")
        if not listed:
            return None
        known = [known_platform(err, where + ("platforms",), f + "platforms", p) for p in listed]
        return listed if all(known) and len(set(listed)) == len(listed) else None
    one, good = matching(err, where, f + "platform", table, "platform", F.PLATFORM,
                         "a wheel platform tag; expected e.g. 'linux_x86_64'")
    if not (good and one and known_platform(err, where + ("platform",), f + "platform", one)):
        return None
    return (one,)


def first_platform(err: Errors, where: tuple[Any, ...], targets: tuple[str, ...],
                    profiles: dict[str, Profile | None]) -> str | None:
    """A pin without ``platform`` is for its profile's first platform; targets of profiles whose
    first platforms differ must say which."""
    firsts = {p.all_platforms[0] for t in targets if (p := profiles.get(t.rsplit("-", 1)[-1]))}
    if len(firsts) > 1:
        err.add(where + ("targets",), "platform",
                f"missing; the targets' profiles start with different platforms ({', '.join(sorted(firsts))}): "
                "name the one this wheel is for")
        return None
    return firsts.pop() if firsts else DEFAULT_PLATFORM


def check_platforms(err: Errors, wheels: list[Pin], profiles: dict[str, Profile | None]) -> None:
    """A target built for several platforms installs the same distributions on each: a
    distribution pinned for one platform and not for another is refused (with the fix)."""
    on: dict[tuple[str, str], dict[str, Pin]] = {}  # (target, distribution) -> platform -> first pin
    for pin in wheels:
        for target in pin.targets:
            on.setdefault((target, canonicalize_name(pin.name)), {}).setdefault(pin.platform, pin)
    for (target, _), have in sorted(on.items()):
        profile = profiles.get(target.rsplit("-", 1)[-1])
        if profile is None:
            continue
        first = min(have.values(), key=lambda p: p.index)
        for platform in profile.all_platforms:
            if platform not in have:
                err.add(("wheel", first.index, "platform"), "platform",
                        f"{target} installs {first.name} on {', '.join(sorted(have))} but no pin has it for "
                        f"{platform} (profiles.{profile.name}.platforms names it); add a [[wheel]] with "
                        f'platform = "{platform}" and targets = ["{target}"], or drop {platform} from '
                        f"profiles.{profile.name}.platforms")
