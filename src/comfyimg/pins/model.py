"""The pins as typed, immutable values: profiles (an image ABI), wheels (:class:`Pin`) with
their source and recorded kernel coverage, and the whole file (:class:`Pins`).
:mod:`comfyimg.pins.load` makes them from ``wheels.toml``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from packaging.utils import canonicalize_name

from comfyimg.kernels.dispatch import FromTable, WheelDispatch
from comfyimg.kernels.rules import Module
from comfyimg.pins.abi import ImageABI
from comfyimg.pins.comfyui import ComfyUI
from comfyimg.pins.fields import wheel_filename


DEFAULT_PLATFORM = "linux_x86_64"
# The wheel platforms an image can be built for, and the Docker platform that builds each.
DOCKER_PLATFORMS = {"linux_x86_64": "linux/amd64", "linux_aarch64": "linux/arm64"}


def docker_arch(platform: str) -> str:
    """``linux_aarch64`` → ``arm64``: the suffix of the targets built for it."""
    return DOCKER_PLATFORMS[platform].split("/", 1)[1]


@dataclass(frozen=True)
class Profile:
    """The ABI shared by every image of one profile (``cuda``: runtime-cuda → core-cuda → complete-cuda)."""

    name: str
    abi: ImageABI  # on its first platform
    torch_index: str
    line: int
    platforms: tuple[str, ...] = ()  # wheel platform tags, first = the targets without a suffix

    @property
    def all_platforms(self) -> tuple[str, ...]:
        return self.platforms or (self.abi.platform,)

    def abi_for(self, platform: str | None) -> ImageABI:
        """The ABI an image of this profile offers on ``platform`` (None: the first one)."""
        if platform is None or platform == self.abi.platform:
            return self.abi
        return replace(self.abi, platform=platform)


@dataclass(frozen=True)
class Source:
    github: str  # "owner/repo"
    release: str  # tag name


@dataclass(frozen=True)
class IndexSource:
    """A PEP 503/691 simple index: ``invoke bump`` picks the newest fitting file of ``project``."""

    index: str  # "https://…/simple"
    project: str


@dataclass(frozen=True)
class Coverage:
    """The compiled modules of the pinned wheel and their GPU code, as recorded by ``invoke bump``."""

    tool: str  # "cuobjdump 13.5.37"
    sha256: str  # of the wheel it was read from
    modules: tuple[Module, ...]
    line: int
    # Where the dispatch (which kernel on which arch) came from: read from the wheel's Python,
    # or the table (with why); None: not recorded (wheels.toml written before it was), unknown.
    dispatch: WheelDispatch | FromTable | None = None


@dataclass(frozen=True)
class Pin:
    index: int  # position in the [[wheel]] array, for saving
    name: str
    version: str
    url: str
    sha256: str | None
    source: Source | IndexSource | None
    targets: tuple[str, ...]
    provides: tuple[str, ...]
    arch: str | None
    line: int
    serves: tuple[str, ...] | None = None  # GPU archs it must run on; None: the default
    coverage: Coverage | None = None
    platform: str = DEFAULT_PLATFORM  # the wheel platform it is for: its `platform` key, else its profile's first

    @property
    def filename(self) -> str:
        return wheel_filename(self.url)

    @property
    def key(self) -> str:
        """A short unique label: ``sageattention``, ``sageattention[sm90]``,
        ``sageattention[linux_aarch64]`` (a platform other than x86-64 is named)."""
        parts = [p for p in (self.arch, None if self.platform == DEFAULT_PLATFORM else self.platform) if p]
        return f"{self.name}[{','.join(parts)}]" if parts else self.name


@dataclass(frozen=True)
class Pins:
    path: Path
    profiles: Mapping[str, Profile]
    wheels: tuple[Pin, ...]
    comfyui: ComfyUI | None = None  # [comfyui]: the ComfyUI release the core images check out

    def profile_for(self, target: str) -> Profile:
        return self.profiles[target.rsplit("-", 1)[-1]]

    def targets(self) -> list[str]:
        return sorted({t for pin in self.wheels for t in pin.targets})

    def platform_of(self, target: str, platform: str | None) -> str:
        return platform or self.profile_for(target).all_platforms[0]

    def for_target(self, target: str, arch: str | None = None, platform: str | None = None) -> list[Pin]:
        """The pins installed in ``target`` built for ``platform`` (default: its profile's first);
        with ``arch``, a per-arch pin replaces the arch-independent pin of the same distribution."""
        on = self.platform_of(target, platform)
        pins = [p for p in self.wheels if target in p.targets and p.arch in (None, arch) and p.platform == on]
        own = {canonicalize_name(p.name) for p in pins if p.arch}
        pins = [p for p in pins if p.arch or canonicalize_name(p.name) not in own]
        return sorted(pins, key=lambda p: (canonicalize_name(p.name), p.arch or ""))

    def arch_only(self, target: str, platform: str | None = None) -> dict[str, list[Pin]]:
        """Distributions ``target`` has per-arch pins for but no pin without an arch: the
        image built without an arch gets none of them."""
        on = self.platform_of(target, platform)
        base = {canonicalize_name(p.name) for p in self.for_target(target, platform=on)}
        only: dict[str, list[Pin]] = {}
        for pin in self.wheels:
            if target in pin.targets and pin.arch and pin.platform == on and canonicalize_name(pin.name) not in base:
                only.setdefault(pin.name, []).append(pin)
        return only

    def archs_for(self, target: str, platform: str | None = None) -> list[str]:
        on = self.platform_of(target, platform) if target in self.targets() else platform
        return sorted({p.arch for p in self.wheels if target in p.targets and p.arch
                       and (on is None or p.platform == on)})

    def image_name(self, target: str, arch: str | None = None, platform: str | None = None) -> str:
        """The bake target that builds ``target`` for ``arch`` on ``platform``: ``complete-cuda``,
        ``complete-cuda-sm90``, ``complete-cuda-arm64``, ``complete-cuda-sm90-arm64`` (a profile's
        first platform has no suffix)."""
        name = f"{target}-{arch}" if arch else target
        if platform and platform != self.platform_of(target, None):
            name += f"-{docker_arch(platform)}"
        return name

    def platforms_for(self, target: str) -> tuple[str, ...]:
        """The wheel platforms ``target`` is built for: its profile's."""
        return self.profile_for(target).all_platforms

    def unhashed(self, targets: list[str] | None = None) -> list[Pin]:
        return [
            p for p in self.wheels
            if p.sha256 is None and (targets is None or set(p.targets) & set(targets))
        ]


def record_hash_command(pin: Pin) -> str:
    """The one command that records a missing sha256 (run where GitHub is reachable)."""
    name = f"'{pin.key}'" if "[" in pin.key else pin.key  # [smXX] is a shell glob
    release = pin.source.release if isinstance(pin.source, Source) else None  # an index or a URL has none
    return f"invoke bump{f' --release {release}' if release else ''} --verify --name {name}"
