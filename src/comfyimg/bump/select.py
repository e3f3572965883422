"""Which file of a release (or an index page) is the wheel for a pin in a profile: exactly one
fits (:func:`select_asset`), else an error naming every file and why it does not fit."""

from __future__ import annotations

from dataclasses import dataclass

from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from comfyimg.errors import WorkFailed
from comfyimg.pins import load as pins_mod
from comfyimg.pins.abi import InvalidWheelName, fit, parse_wheel
from comfyimg.sources.github import Asset, Release


@dataclass(frozen=True)
class Rejected:
    asset: str
    reason: str


def reject_reason(asset: Asset, pin: pins_mod.Pin, profile: pins_mod.Profile,
                   pre: bool = True) -> str | None:
    """Why ``asset`` is not the wheel for ``pin`` in ``profile``; None when it fits."""
    if not asset.name.endswith(".whl"):
        return "not a wheel"
    try:
        wheel = parse_wheel(asset.name)
    except InvalidWheelName as exc:
        return str(exc)
    if wheel.name != canonicalize_name(pin.name):
        return f"distribution {wheel.name} ≠ {canonicalize_name(pin.name)}"
    reasons = fit(wheel, profile.abi_for(pin.platform), pin.arch)
    if asset.state == "yanked":
        reasons.append("yanked (PEP 592)")
    elif asset.state != "uploaded":
        reasons.append(f"upload not finished (state {asset.state!r})")
    if not pre and wheel.version.is_prerelease:
        reasons.append(f"{wheel.version} is a prerelease (pass --pre to take it)")
    return "; ".join(reasons) or None


def _newest(fits: list[Asset]) -> list[Asset]:
    """The fitting files of the highest version (then build tag): an index lists every version."""
    def key(a: Asset) -> tuple[Version, tuple[int, str] | tuple[()]]:
        _, version, build, _ = parse_wheel_filename(a.name)
        return version, build
    top = max(key(a) for a in fits)
    return [a for a in fits if key(a) == top]


def select_asset(release: Release, pin: pins_mod.Pin, profile: pins_mod.Profile,
                 target: str, *, newest: bool = False, pre: bool = True) -> Asset:
    """The one asset of ``release`` that fits ``pin`` in ``profile``; else an error naming every asset.
    ``newest`` (an index page): of several that fit, the one of the highest version."""
    fits: list[Asset] = []
    rejected: list[Rejected] = []
    for asset in release.assets:
        reason = reject_reason(asset, pin, profile, pre)
        if reason is None:
            fits.append(asset)
        else:
            rejected.append(Rejected(asset.name, reason))
    if newest and len(fits) > 1:
        older = fits
        fits = _newest(fits)
        rejected += [Rejected(a.name, "fits, but a newer version does") for a in older if a not in fits]
    if len(fits) == 1:
        return fits[0]
    head = (f"{pin.key}: release {release.tag} has "
            + ("no asset that fits" if not fits else f"{len(fits)} assets that fit")
            + f" {target} ({profile.abi_for(pin.platform).describe()}"
            + (f", {pin.arch}" if pin.arch else "") + ")")
    lines = [head + ("; rejected:" if not fits else "; ambiguous:")]
    lines += [f"  {a.name}: fits (ambiguous)" for a in fits]
    lines += [f"  {r.asset}: {r.reason}" for r in rejected]
    if not release.assets:
        lines.append("  (the release has no assets)")
    raise WorkFailed("\n".join(lines))


__all__ = ["Rejected", "reject_reason", "select_asset"]
