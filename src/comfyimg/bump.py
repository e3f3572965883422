"""``invoke bump``: move pins to a GitHub release, picking the one asset that fits each ABI.

The flow, all of it before anything is written:

1. choose the pins (names given, or every pin with a ``source``) and group them by repo;
2. resolve each repo's release (latest, ``--pre``: newest non-draft, or ``--release TAG``);
3. for every pin and each of its targets' profile ABI, select exactly one asset
   (:func:`select_asset`; zero or several is an error listing every asset and why);
4. find each selected asset's sha256: the API ``digest``, else a ``SHA256SUMS*`` asset of
   the same release, else download and hash (``--verify``: always download, and
   disagreeing with the API or the SUMS file fails);
5. apply the changes to wheels.toml through tomlkit, re-validate, render generated files;
6. print the table (and, with ``--dry-run``, the diff and stop), then write every file.

Any failure raises :class:`~comfyimg.errors.UserError` before step 6 writes, so a failed
bump leaves every file byte-identical.
"""

from __future__ import annotations

import difflib
import json
import shlex
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import Version
from rich import box
from rich.table import Table

from . import console, coverage, kernels
from . import pins as pins_mod
from . import render
from .abi import mismatches, parse_wheel
from .console import err, out, plain
from .errors import BadInput, UserError, WorkFailed
from .fsutil import atomic_write_many
from .releases import Asset, GitHub, Progress, Release, _human, parse_sums


# --------------------------------------------------------------------------- selection


@dataclass(frozen=True)
class Rejected:
    asset: str
    reason: str


def _reject_reason(asset: Asset, pin: pins_mod.Pin, profile: pins_mod.Profile) -> str | None:
    """Why ``asset`` is not the wheel for ``pin`` in ``profile``; None when it fits."""
    if not asset.name.endswith(".whl"):
        return "not a wheel"
    try:
        wheel = parse_wheel(asset.name)
    except ValueError as exc:
        return str(exc)
    if wheel.name != canonicalize_name(pin.name):
        return f"distribution {wheel.name} ≠ {canonicalize_name(pin.name)}"
    reasons: list[str] = []
    if pin.arch and wheel.sm != pin.arch:
        reasons.append(f"built for {wheel.sm or 'every arch'}, the pin is for {pin.arch}")
    elif not pin.arch and wheel.sm:
        reasons.append(f"built for {wheel.sm} only; the pin has no arch")
    reasons += mismatches(wheel, profile.abi)
    if asset.state != "uploaded":
        reasons.append(f"upload not finished (state {asset.state!r})")
    return "; ".join(reasons) or None


def select_asset(release: Release, pin: pins_mod.Pin, profile: pins_mod.Profile,
                 target: str) -> Asset:
    """The one asset of ``release`` that fits ``pin`` in ``profile``; else an error naming every asset."""
    fits: list[Asset] = []
    rejected: list[Rejected] = []
    for asset in release.assets:
        reason = _reject_reason(asset, pin, profile)
        if reason is None:
            fits.append(asset)
        else:
            rejected.append(Rejected(asset.name, reason))
    if len(fits) == 1:
        return fits[0]
    head = (f"{pin.key}: release {release.tag} has "
            + ("no asset that fits" if not fits else f"{len(fits)} assets that fit")
            + f" {target} ({profile.abi.describe()}"
            + (f", {pin.arch}" if pin.arch else "") + ")")
    lines = [head + ("; rejected:" if not fits else "; ambiguous:")]
    lines += [f"  {a.name}: fits (ambiguous)" for a in fits]
    lines += [f"  {r.asset}: {r.reason}" for r in rejected]
    if not release.assets:
        lines.append("  (the release has no assets)")
    raise WorkFailed("\n".join(lines))


# --------------------------------------------------------------------------- digests


@dataclass
class Digests:
    """Finds sha256s for the assets of one release, fetching SUMS files at most once."""

    client: GitHub
    release: Release
    workdir: Path
    verify: bool
    _sums: dict[str, tuple[str, str]] | None = None  # file -> (hex, sums asset name)

    def sums(self) -> dict[str, tuple[str, str]]:
        if self._sums is None:
            merged: dict[str, tuple[str, str]] = {}
            for asset in self.release.assets:
                if not asset.name.upper().startswith("SHA256SUMS"):
                    continue
                text = self.client.fetch_small(asset).decode("utf-8", "replace")
                for name, hexed in parse_sums(text).items():
                    if name in merged and merged[name][0] != hexed:
                        raise WorkFailed(
                            f"digest mismatch: {merged[name][1]} and {asset.name} of release "
                            f"{self.release.tag} disagree on {name}")
                    merged.setdefault(name, (hexed, asset.name))
            self._sums = merged
        return self._sums

    def find(self, asset: Asset, read: Callable[[str], bool] = lambda sha256: False,
             ) -> tuple[str, str, kernels.WheelKernels | None]:
        """(sha256, where it came from, the wheel's kernels when ``read(sha256)`` wants them).

        A wheel whose kernels are wanted is downloaded once, streaming; they are read from
        that one download, which is checked against the API digest as any download is."""
        if not self.verify:
            known = (asset.digest, "api") if asset.digest else self.sums().get(asset.name)
            if known and not read(known[0]):
                return known[0], known[1], None
        part = self.workdir / f"asset-{asset.id}.part"
        found = None
        try:
            got = self.client.download(asset, part, progress=progress_factory())
            if read(got.sha256):
                try:
                    found = kernels.read_wheel(part, name=asset.name)
                except kernels.BadKernels as exc:
                    raise WorkFailed(f"cannot read the kernels of {asset.name} of release "
                                     f"{self.release.tag}: {exc}") from None
        finally:
            part.unlink(missing_ok=True)  # only the hash and the kernels are kept
        agree: list[str] = []
        if asset.digest:
            if asset.digest != got.sha256:
                raise WorkFailed(
                    f"digest mismatch: {asset.name} of release {self.release.tag} hashes to "
                    f"{got.sha256}, but the API digest says {asset.digest} "
                    "(the asset was replaced or corrupted)")
            agree.append("api")
        if (self.verify or not asset.digest) and (listed := self.sums().get(asset.name)):
            if listed[0] != got.sha256:
                raise WorkFailed(
                    f"digest mismatch: {asset.name} of release {self.release.tag} hashes to "
                    f"{got.sha256}, but {listed[1]} says {listed[0]}")
            agree.append(listed[1])
        return got.sha256, "download" + (f" (= {', '.join(agree)})" if agree else ""), found


# --------------------------------------------------------------------------- progress


class _PlainProgress(Progress):
    def __init__(self, name: str, total: int) -> None:
        self.name = name
        err().print(f"downloading {name} ({_human(total) if total else 'size unknown'})")

    def advance(self, n: int) -> None:
        pass

    def done(self, size: int, seconds: float) -> None:
        rate = size / seconds if seconds > 0 else 0
        err().print(f"downloaded {self.name}: {_human(size)} in {seconds:.2f} s ({_human(rate)}/s)")


class _RichProgress(Progress):
    def __init__(self, name: str, total: int) -> None:
        from rich.progress import (BarColumn, DownloadColumn, Progress as RichBar,
                                   TextColumn, TimeRemainingColumn, TransferSpeedColumn)

        self.bar = RichBar(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                           TransferSpeedColumn(), TimeRemainingColumn(), console=err(),
                           transient=True)
        self.bar.start()
        self.name = name
        self.task = self.bar.add_task(name, total=total or None)

    def advance(self, n: int) -> None:
        self.bar.advance(self.task, n)

    def close(self) -> None:
        self.bar.stop()

    def done(self, size: int, seconds: float) -> None:
        rate = size / seconds if seconds > 0 else 0
        err().print(f"downloaded {self.name}: {_human(size)} in {seconds:.2f} s ({_human(rate)}/s)")


def progress_factory():
    return _PlainProgress if plain() else _RichProgress


# --------------------------------------------------------------------------- the command


@dataclass
class Change:
    pin: pins_mod.Pin
    release: Release
    asset: Asset
    sha256: str
    digest_source: str
    version: str
    fields: dict[str, object] = field(default_factory=dict)
    kernels: kernels.WheelKernels | None = None
    verdicts: dict[str, kernels.Verdict] = field(default_factory=dict)  # served arch -> verdict

    @property
    def failing(self) -> dict[str, kernels.Verdict]:
        return {a: v for a, v in self.verdicts.items() if not v.runnable}


def parse_names(names: Sequence[str] | None, remainder: str = "") -> list[str]:
    """``--name a --name b,c`` and ``-- a b`` → ``[a, b, c]``."""
    out_names: list[str] = []
    for raw in list(names or ()) + shlex.split(remainder or ""):
        out_names += [n.strip() for n in raw.split(",") if n.strip()]
    return out_names


def choose_pins(pins: pins_mod.Pins, names: Sequence[str]) -> list[pins_mod.Pin]:
    if not names:
        chosen = [p for p in pins.wheels if p.source]
        if not chosen:
            raise BadInput(f"{pins.path.name}: no [[wheel]] has a source = {{ github, release }}; "
                           "nothing to bump")
        return chosen
    chosen: list[pins_mod.Pin] = []
    unknown: list[str] = []
    for name in names:
        hits = [p for p in pins.wheels
                if name == p.key or canonicalize_name(name) == canonicalize_name(p.name)]
        if not hits:
            unknown.append(name)
            continue
        for pin in hits:
            if pin.source is None:
                raise BadInput(f"{pins.path.name}:{pin.line}: {pin.key} has no source = "
                               "{ github, release }; bump cannot move it")
            if pin not in chosen:
                chosen.append(pin)
    if unknown:
        known = sorted({p.name for p in pins.wheels} | {p.key for p in pins.wheels})
        raise BadInput(f"unknown pin name(s): {', '.join(unknown)}; known: {', '.join(known)}")
    return chosen


def _new_version(pin: pins_mod.Pin, asset: Asset) -> str:
    wheel = parse_wheel(asset.name)
    return str(wheel.version) if Version(pin.version).local else wheel.version.public


def _fields(pin: pins_mod.Pin, release: Release, asset: Asset, sha256: str,
            version: str) -> dict[str, object]:
    url = asset.browser_download_url or asset.url
    changes: dict[str, object] = {}
    if url != pin.url:
        changes["url"] = url
    if sha256 != pin.sha256:
        changes["sha256"] = sha256
    if version != pin.version:
        changes["version"] = version
    assert pin.source is not None
    if release.tag != pin.source.release:
        changes["source"] = {"github": pin.source.github, "release": release.tag}
    return changes


def plan(pins: pins_mod.Pins, chosen: list[pins_mod.Pin], client: GitHub, *,
         release: str | None, pre: bool, verify: bool, workdir: Path) -> list[Change]:
    by_repo: dict[str, list[pins_mod.Pin]] = {}
    for pin in chosen:
        assert pin.source is not None
        by_repo.setdefault(pin.source.github, []).append(pin)
    changes: list[Change] = []
    for repo, repo_pins in by_repo.items():
        if release:
            rel = client.release_by_tag(repo, release)
            if rel.draft and not pre:
                raise BadInput(f"{repo}: release {release} is a draft; pass --pre to use it")
            if rel.prerelease and not pre:
                raise BadInput(f"{repo}: release {release} is a prerelease; pass --pre to use it")
        else:
            rel = client.latest_release(repo, pre=pre)
        # Select every asset of this release first: all or nothing.
        picked: list[tuple[pins_mod.Pin, Asset]] = []
        for pin in repo_pins:
            chosen_asset: Asset | None = None
            for target in pin.targets:
                profile = pins.profile_for(target)
                asset = select_asset(rel, pin, profile, target)
                if chosen_asset is not None and asset.name != chosen_asset.name:
                    raise WorkFailed(f"{pin.key}: its targets want different assets of "
                                     f"{rel.tag}: {chosen_asset.name} and {asset.name}; "
                                     "split the pin per profile")
                chosen_asset = asset
            assert chosen_asset is not None
            picked.append((pin, chosen_asset))
        digests = Digests(client, rel, workdir, verify)
        for pin, asset in picked:
            served = coverage.serves(pins, pin)

            def wants(sha256: str, pin: pins_mod.Pin = pin, served: tuple[str, ...] = served) -> bool:
                # Record coverage for a new wheel (or one never read) that must serve a GPU.
                return bool(served) and (verify or pin.coverage is None or pin.coverage.sha256 != sha256)

            sha256, source, found = digests.find(asset, wants)
            version = _new_version(pin, asset)
            fields = _fields(pin, rel, asset, sha256, version)
            change = Change(pin, rel, asset, sha256, source, version, fields, found)
            if found is not None:
                rules = kernels.rules_for(pin.name, version)
                change.verdicts = kernels.judge_all(found.modules, served, rules)
                recorded = coverage.record_fields(found)
                old = pin.coverage
                if old is None or old.sha256 != found.sha256 or old.tool != found.tool or \
                        old.modules != found.modules:
                    fields.update(recorded)
            changes.append(change)
    return changes


def _moves(ch: Change) -> bool:
    """Does the change move the pin to another wheel (not just record the one it names)?"""
    same = ch.pin.source and ch.release.tag == ch.pin.source.release and ch.asset.name == ch.pin.filename
    return not same


def _refuse_uncovered(changes: list[Change]) -> None:
    """A pin moving to a wheel that cannot run on an arch it serves: a table of what fails, and
    exit 1. Recording the wheel a pin already names records the truth, with a warning
    (``invoke check`` and ``invoke bake`` then refuse it, naming the arch)."""
    for ch in changes:
        if not _moves(ch):
            for arch, v in ch.failing.items():
                err().print(f"warning: {ch.pin.key}: {ch.asset.name} cannot run on {arch}, which it serves: "
                            f"{v.why}; recorded as read. `invoke check` and `invoke bake` refuse it until "
                            "its serves is narrowed or it moves to a wheel that covers " + arch)
    failing = [(ch, arch, v) for ch in changes if _moves(ch) for arch, v in ch.failing.items()]
    if not failing:
        return
    table = console.table(fancy=box.SIMPLE, show_edge=False, pad_edge=False,
                          title="kernel coverage: these pins cannot run on GPUs they serve")
    for col in ("package", "arch", "wheel", "carries", "missing"):
        table.add_column(col, overflow="fold")
    for ch, arch, v in failing:
        carries = "; ".join(f"{m.name}: {m.carries()}" for m in ch.kernels.modules) if ch.kernels else ""
        missing = "; ".join(f"{m.module} ({m.needs})" for m in v.missing) or v.why
        table.add_row(ch.pin.key, arch, ch.asset.name, carries or "no compiled modules", missing)
    err().print(table)
    lines = [f"{ch.pin.key}: {ch.asset.name} of {ch.release.tag} cannot run on {arch}, which it serves: "
             f"{v.why}" for ch, arch, v in failing]
    raise WorkFailed("\n".join(lines) + "\nnothing written; to serve fewer GPUs, set serves in wheels.toml")


def _table(changes: list[Change]) -> Table:
    table = console.table(fancy=box.SIMPLE, show_edge=False, pad_edge=False)
    for col in ("package", "old", "new", "sha256", "digest from", "kernels for"):
        table.add_column(col, overflow="fold")
    for ch in changes:
        old_rel = ch.pin.source.release if ch.pin.source else "?"
        old = f"{old_rel}\n{ch.pin.filename}"
        new = f"{ch.release.tag}\n{ch.asset.name}" if ch.fields else "(unchanged)"
        runs = " ".join(a if v.runnable else f"NOT {a}" for a, v in ch.verdicts.items())
        table.add_row(ch.pin.key, old, new, ch.sha256[:12], ch.digest_source,
                      runs or ("(recorded)" if ch.pin.coverage else "-"))
    return table


def as_json(changes: list[Change], *, dry_run: bool, wrote: list[str], diff: str = "") -> dict[str, object]:
    """``invoke bump --json``: what the table shows, for scripts (the bump workflow's PR)."""
    return {
        "changed": any(ch.fields for ch in changes),
        "dry_run": dry_run,
        "wrote": wrote,
        **({"diff": diff} if diff else {}),
        "pins": [{
            "pin": ch.pin.key, "name": ch.pin.name, "arch": ch.pin.arch, "changed": bool(ch.fields),
            "old": {"release": ch.pin.source.release if ch.pin.source else None, "file": ch.pin.filename,
                    "version": ch.pin.version, "sha256": ch.pin.sha256},
            "new": {"release": ch.release.tag, "file": ch.asset.name, "version": ch.version,
                    "sha256": ch.sha256, "digest_from": ch.digest_source},
            "fields": sorted(ch.fields),
            "kernels_for": {a: v.runnable for a, v in ch.verdicts.items()},  # served arch -> runnable
        } for ch in changes],
    }


def bump(root: Path, names: Sequence[str] = (), *, release: str | None = None, pre: bool = False,
         dry_run: bool = False, verify: bool = False, client: GitHub | None = None,
         json_out: bool = False) -> int:
    """The command; returns 0 or raises :class:`UserError` (nothing written on failure)."""
    started = time.monotonic()
    path = root / "wheels.toml"
    pins = pins_mod.load(path)
    text = pins_mod.read_text(path)
    chosen = choose_pins(pins, names)
    own_client = client is None
    client = client or GitHub.from_env()
    try:
        with tempfile.TemporaryDirectory(prefix="comfyimg-bump-") as tmp:
            changes = plan(pins, chosen, client, release=release, pre=pre, verify=verify,
                           workdir=Path(tmp))
    finally:
        if own_client:
            client.close()

    _refuse_uncovered(changes)
    for ch in changes:
        if ch.pin.sha256 and "url" not in ch.fields and "sha256" in ch.fields:
            err().print(f"warning: {ch.pin.key}: {ch.asset.name} was replaced in place under "
                        f"release {ch.release.tag}: sha256 {ch.pin.sha256[:12]} → {ch.sha256[:12]}")

    edits = {ch.pin.index: ch.fields for ch in changes if ch.fields}
    if not edits and json_out:
        print(json.dumps(as_json(changes, dry_run=dry_run, wrote=[]), indent=2))
        return 0
    if not edits:
        out().print(_table(changes))
        out().print(f"up to date: {', '.join(sorted({c.pin.key for c in changes}))} "
                    f"already at {', '.join(sorted({c.release.tag for c in changes}))}")
        return 0

    # Validate and render everything before writing anything.
    new_text = pins_mod.dumps_with_changes(text, edits)
    try:
        new_pins = pins_mod.loads(new_text, path)
    except BadInput as exc:
        raise WorkFailed(f"the bumped {path.name} would not be valid:\n{exc}") from None
    files = render.render(new_pins)

    if not json_out:
        out().print(_table(changes))
    if dry_run:
        diff = "".join(difflib.unified_diff(text.splitlines(keepends=True), new_text.splitlines(keepends=True),
                                            f"a/{path.name}", f"b/{path.name}"))
        if json_out:
            print(json.dumps(as_json(changes, dry_run=True, wrote=[], diff=diff), indent=2))
            return 0
        out().print(diff, end="", soft_wrap=True)
        out().print(f"dry run: {len(edits)} pin(s) would change; nothing written")
        return 0

    staged: dict[Path, bytes | str] = {path: new_text}
    for rel, content in files.items():
        if not render.is_current(root / rel, content):
            staged[root / rel] = content
    atomic_write_many(staged)
    render.write(new_pins, root)  # removes stale generated files; the rest is already current
    wrote = sorted(str(p.relative_to(root)) for p in staged)
    if json_out:
        print(json.dumps(as_json(changes, dry_run=False, wrote=wrote), indent=2))
        return 0
    out().print(f"bumped {len(edits)} pin(s) in {time.monotonic() - started:.2f} s; "
                f"wrote {', '.join(wrote)}")
    return 0


def run_cli(root: Path, names: Sequence[str] | None, remainder: str, **kwargs: object) -> int:
    """Entry for tasks.py: names from ``--name`` (repeatable, comma-separated) and after ``--``."""
    try:
        parsed = parse_names(names, remainder)
    except ValueError as exc:
        raise BadInput(f"cannot parse pin names: {exc}") from None
    if not parsed and (names or (remainder or "").strip()):  # `--name ""` must not mean "all"
        raise BadInput("the pin names given are empty; name a pin (e.g. --name sageattention), "
                       "or give none to bump every pin with a source")
    return bump(root, parsed, **kwargs)  # type: ignore[arg-type]


__all__ = ["Change", "bump", "choose_pins", "parse_names", "plan", "run_cli", "select_asset",
           "UserError"]
