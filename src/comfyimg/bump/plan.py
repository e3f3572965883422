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
6. with ``--dry-run``, stop with the diff; else write every file (``cli`` prints the table).

Any failure raises :class:`~comfyimg.errors.UserError` before step 6 writes, so a failed
bump leaves every file byte-identical.

Which file fits is :mod:`comfyimg.bump.select`'s; a profile move (``--profile``) finds its
releases in :mod:`comfyimg.bump.profile` and then goes through the same steps 4 to 6.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import Version
from rich import box

from comfyimg import render
from comfyimg.bump.profile import ProfileMove, fitting_groups, with_profile
from comfyimg.bump.select import select_asset
from comfyimg.sources import index as index_mod
from comfyimg.sources.digests import DigestMismatch, Digests, replaced_in_place
from comfyimg.sources.github import Asset, GitHub, Release, borrowed
from comfyimg.errors import BadInput, WorkFailed
from comfyimg.fsutil import atomic_write_many, exclusive, read_text
from comfyimg.audit import coverage, record
from comfyimg.kernels import dispatch
from comfyimg.kernels import rules as kernels
from comfyimg.kernels.elf import BadKernels
from comfyimg.kernels.read import WheelKernels, read_wheel
from comfyimg.kernels.rules import Rules, Verdict
from comfyimg.output import SafeTable as Table
from comfyimg.output import Say, progress_factory
from comfyimg.pins import load as pins_mod
from comfyimg.pins.abi import parse_wheel
from comfyimg.pins.edit import diff as toml_diff
from comfyimg.pins.edit import drop_pending_notes, dumps_with_changes, reloaded
from comfyimg.untrusted import strip_credentials

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
    kernels: WheelKernels | None = None
    verdicts: dict[str, Verdict] = field(default_factory=dict)  # served arch -> verdict
    rules: Rules | None = None  # the dispatch the verdicts used

    @property
    def failing(self) -> dict[str, Verdict]:
        return {a: v for a, v in self.verdicts.items() if not v.runnable}


def choose_pins(pins: pins_mod.Pins, names: Sequence[str], verify: bool = False) -> list[pins_mod.Pin]:
    """The pins named (every pin with a source when none is). A pin without a source (a plain
    URL) is taken by name with ``--verify``: its bytes are checked, its sha256 and coverage recorded."""
    if not names:
        with_source = [p for p in pins.wheels if p.source]
        if not with_source:
            raise BadInput(f"{pins.path.name}: no [[wheel]] has a source = {{ github, release }} or "
                           "{ index, project }; nothing to bump")
        return with_source
    chosen: list[pins_mod.Pin] = []
    unknown: list[str] = []
    for name in names:
        hits = [p for p in pins.wheels
                if name == p.key or canonicalize_name(name) == canonicalize_name(p.name)]
        if not hits:
            unknown.append(name)
            continue
        for pin in hits:
            if pin.source is None and not verify:
                raise BadInput(f"{pins.path.name}:{pin.line}: {pin.key} has no source = "
                               "{ github, release } or { index, project }; bump cannot move it. "
                               f"`invoke bump --verify --name {pin.key}` downloads its URL, checks or "
                               "records its sha256 and records its kernel coverage")
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
    url = strip_credentials(asset.browser_download_url or asset.url)  # a pin never stores credentials
    changes: dict[str, object] = {}
    if url != pin.url:
        changes["url"] = url
    if sha256 != pin.sha256:
        changes["sha256"] = sha256
    if version != pin.version:
        changes["version"] = version
    if isinstance(pin.source, pins_mod.Source) and release.tag != pin.source.release:
        changes["source"] = {"github": pin.source.github, "release": release.tag}
    return changes


def read_kernels(name: str, where: str, part: Path) -> WheelKernels:
    """The compiled kernels of the downloaded wheel ``name`` (from ``where``), for its recorded
    coverage; an unreadable one fails the work."""
    try:
        return read_wheel(part, name=name)
    except BadKernels as exc:
        raise WorkFailed(f"cannot read the kernels of {name} {where}: {exc}") from None


def _url_release(pin: pins_mod.Pin) -> Release:
    """A plain URL pin as a release of one asset; no digest: its bytes are always downloaded."""
    asset = Asset(id=pin.index + 1, name=pin.filename, size=0, digest=None, url=pin.url,
                  browser_download_url=pin.url, content_type="", state="uploaded")
    return Release(id=0, tag=f"URL {pin.url}", name=pin.key, draft=False, prerelease=False,
                   published_at=None, assets=(asset,))


def _groups(pins: pins_mod.Pins, chosen: list[pins_mod.Pin], client: GitHub, *, release: str | None,
            pre: bool) -> Iterator[tuple[Release, bool, list[pins_mod.Pin]]]:
    """(the release or page to pick from, pick the newest?, its pins) for every source of
    ``chosen``, one at a time: a failure in the first source stops before the next is asked."""
    keyed: dict[object, list[pins_mod.Pin]] = {}
    for pin in chosen:
        keyed.setdefault(pin.source or ("url", pin.index), []).append(pin)
    for key, group in keyed.items():
        if isinstance(key, pins_mod.IndexSource):
            if release:
                raise BadInput(f"{pins.path.name}:{group[0].line}: {group[0].key} comes from an index; "
                               "--release names a GitHub release")
            files = index_mod.project_files(client.http, key.index, key.project)
            yield index_mod.as_release(files, key.index, key.project), True, group
        elif isinstance(key, pins_mod.Source):
            yield _github_release(client, key.github, release, pre), False, group
        else:
            yield _url_release(group[0]), False, group


def _github_release(client: GitHub, repo: str, release: str | None, pre: bool) -> Release:
    if not release:
        return client.latest_release(repo, pre=pre)
    rel = client.release_by_tag(repo, release)
    if rel.draft and not pre:
        raise BadInput(f"{repo}: release {release} is a draft; pass --pre to use it")
    if rel.prerelease and not pre:
        raise BadInput(f"{repo}: release {release} is a prerelease; pass --pre to use it")
    return rel


def plan(pins: pins_mod.Pins, chosen: list[pins_mod.Pin], client: GitHub, *,
         release: str | None, pre: bool, verify: bool, workdir: Path,
         groups: list[tuple[Release, bool, list[pins_mod.Pin]]] | None = None) -> list[Change]:
    """The change of every pin of ``chosen``: its asset, sha256 and coverage (``groups``: the
    releases already chosen per pin, as :func:`fitting_groups` finds them for a profile move)."""
    changes: list[Change] = []
    sources = groups if groups is not None else _groups(pins, chosen, client, release=release, pre=pre)
    for rel, newest, group_pins in sources:
        # Select every asset of this release first: all or nothing.
        picked: list[tuple[pins_mod.Pin, Asset]] = []
        for pin in group_pins:
            chosen_asset: Asset | None = None
            for target in pin.targets:
                profile = pins.profile_for(target)
                asset = select_asset(rel, pin, profile, target, newest=newest, pre=pre or not newest)
                if chosen_asset is not None and asset.name != chosen_asset.name:
                    raise WorkFailed(f"{pin.key}: its targets want different assets of "
                                     f"{rel.tag}: {chosen_asset.name} and {asset.name}; "
                                     "split the pin per profile")
                chosen_asset = asset
            assert chosen_asset is not None
            picked.append((pin, chosen_asset))
        digests = Digests(client, rel, workdir, verify, progress_factory())
        mismatched: list[str] = []
        for pin, asset in picked:
            served = coverage.serves(pins, pin)

            def wants(sha256: str, pin: pins_mod.Pin = pin, served: tuple[str, ...] = served) -> bool:
                # Record coverage for a new wheel (or one never read) that must serve a GPU, and,
                # with --verify, of a known attention package that serves none (its facts then
                # come from the wheel, not its recipe: `invoke audit` says where it runs).
                new = verify or pin.coverage is None or pin.coverage.sha256 != sha256
                known = kernels.rules_for(pin.name, pin.version) is not None
                return new and (bool(served) or (verify and known))

            try:
                sha256, source, found = digests.find(asset, wants, partial(read_kernels, asset.name, f"of release {rel.tag}"))
            except DigestMismatch as exc:  # name every tampered wheel, not just the first
                mismatched.append(str(exc))
                continue
            version = _new_version(pin, asset)
            fields = _fields(pin, rel, asset, sha256, version)
            change = Change(pin, rel, asset, sha256, source, version, fields, found)
            if found is not None:
                how = found.dispatch.get(pin.name.lower().replace("-", "_"))
                rules = dispatch.rules(pin.name, version, how)
                change.verdicts = kernels.judge_all(found.modules, served, rules)
                change.rules = rules
                recorded = record.record_fields(found, pin.name)
                old = pin.coverage
                if old is None or old.sha256 != found.sha256 or old.tool != found.tool or \
                        old.modules != found.modules or old.dispatch != _as_loaded(how):
                    fields.update(recorded)
            changes.append(change)
        if mismatched:
            raise WorkFailed("\n".join(mismatched))
    return changes


def _as_loaded(how: dispatch.Found | None) -> dispatch.Found | None:
    """``how`` as wheels.toml gives it back (the loader does not know the package)."""
    if isinstance(how, dispatch.WheelDispatch):
        return replace(how, package="")
    if isinstance(how, dispatch.FromTable):
        return dispatch.FromTable("", how.why)
    return None


def _old_ref(pin: pins_mod.Pin) -> str | None:
    """Where the pin says its wheel comes from: the release tag, the index page, or None (a URL)."""
    if isinstance(pin.source, pins_mod.Source):
        return pin.source.release
    if isinstance(pin.source, pins_mod.IndexSource):
        return f"index page {index_mod.page_url(pin.source.index, pin.source.project)}"
    return None


def _moves(ch: Change) -> bool:
    """Does the change move the pin to another wheel (not just record the one it names)?"""
    url = strip_credentials(ch.asset.browser_download_url or ch.asset.url)
    if isinstance(ch.pin.source, pins_mod.Source):
        return not (ch.release.tag == ch.pin.source.release and ch.asset.name == ch.pin.filename)
    return url != ch.pin.url


def _cannot(pins: pins_mod.Pins, ch: Change, arch: str, v: Verdict) -> str:
    """One line: the image, the arch, the pin and wheel, the module, and the edit that fixes it."""
    return (f"{coverage.images_of(pins, ch.pin)} on {coverage.gpu(arch, ch.pin.platform)}: {ch.pin.key} {ch.version} ({ch.asset.name} "
            f"of {ch.release.tag}) cannot run: {coverage.brief(v, ch.rules)}; fix: {coverage.fix_for(pins, ch.pin, arch)}")


def _refuse_uncovered(pins: pins_mod.Pins, changes: list[Change], say: Say) -> None:
    """A pin moving to a wheel that cannot run on an arch it serves: a table of what fails, and
    exit 1. Recording the wheel a pin already names records the truth, with a warning
    (``invoke check`` and ``invoke bake`` then refuse it, naming the arch)."""
    for ch in changes:
        if not _moves(ch):
            for arch, v in ch.failing.items():  # recorded as read; check and bake refuse it until fixed
                say(f"warning: {_cannot(pins, ch, arch, v)} (recorded as read; `invoke check` and "
                    "`invoke bake` refuse it until then)")
    failing = [(ch, arch, v) for ch in changes if _moves(ch) for arch, v in ch.failing.items()]
    if not failing:
        return
    table = Table(box=box.SIMPLE, show_edge=False, pad_edge=False,
                  title="kernel coverage: these pins cannot run on GPUs they serve")
    for col in ("package", "arch", "wheel", "carries", "missing"):
        table.add_column(col, overflow="fold")
    for ch, arch, v in failing:
        carries = "; ".join(f"{m.name}: {m.carries()}" for m in ch.kernels.modules) if ch.kernels else ""
        missing = "; ".join(f"{m.module} ({m.needs})" for m in v.missing) or v.why
        table.add_row(ch.pin.key, arch, ch.asset.name, carries or "no compiled modules", missing)
    lines = [_cannot(pins, ch, arch, v) for ch, arch, v in failing]
    raise WorkFailed("\n".join(lines) + "\nnothing written", shown=[table])


def table(changes: list[Change]) -> Table:
    """The bump table: each pin's old and new wheel, its digest's source, the archs it runs on."""
    table = Table(box=box.SIMPLE, show_edge=False, pad_edge=False)
    for col in ("package", "old", "new", "sha256", "digest from", "kernels for"):
        table.add_column(col, overflow="fold")
    for ch in changes:
        old_rel = _old_ref(ch.pin) or "URL"
        old = f"{old_rel}\n{ch.pin.filename}"
        new = f"{ch.release.tag}\n{ch.asset.name}" if ch.fields else "(unchanged)"
        runs = " ".join(a if v.runnable else f"NOT {a}" for a, v in ch.verdicts.items())
        table.add_row(ch.pin.key, old, new, ch.sha256[:12], ch.digest_source,
                      runs or ("(recorded)" if ch.pin.coverage else "-"))
    return table


def as_json(changes: list[Change], *, dry_run: bool, wrote: list[str], diff: str = "",
            profile: dict[str, tuple[str | None, str]] | None = None) -> dict[str, object]:
    """``invoke bump --json``: what the table shows, for scripts (the bump workflow's PR)."""
    return {
        "changed": any(ch.fields for ch in changes) or bool(profile),
        "dry_run": dry_run,
        "wrote": wrote,
        **({"diff": diff} if diff else {}),
        **({"profile": {k: {"old": old, "new": new} for k, (old, new) in profile.items()}} if profile else {}),
        "pins": [{
            "pin": ch.pin.key, "name": ch.pin.name, "arch": ch.pin.arch, "changed": bool(ch.fields),
            "old": {"release": _old_ref(ch.pin), "file": ch.pin.filename,
                    "version": ch.pin.version, "sha256": ch.pin.sha256},
            "new": {"release": ch.release.tag, "file": ch.asset.name, "version": ch.version,
                    "sha256": ch.sha256, "digest_from": ch.digest_source},
            "fields": sorted(ch.fields),
            "kernels_for": {a: v.runnable for a, v in ch.verdicts.items()},  # served arch -> runnable
        } for ch in changes],
    }


@dataclass
class Bumped:
    """What a bump did or would do; ``cli`` prints it (a table and lines, or ``--json``)."""

    changes: list[Change]
    edits: int = 0  # pins whose fields change
    dry_run: bool = False
    diff: str = ""  # --dry-run: the wheels.toml diff
    wrote: list[str] = field(default_factory=list)
    seconds: float = 0.0
    profile: dict[str, tuple[str | None, str]] = field(default_factory=dict)  # --profile: key -> (old, new)


def bump(root: Path, names: Sequence[str] = (), *, say: Say, release: str | None = None, pre: bool = False,
         dry_run: bool = False, verify: bool = False, accept_new_bytes: bool = False,
         client: GitHub | None = None, profile: ProfileMove | None = None) -> Bumped:
    """The command; returns what it did or raises :class:`UserError` (nothing written on failure);
    ``say`` gets the warnings as they come. One bump at a time per checkout: a second one fails
    at once (the lock on wheels.toml). ``profile``: move that profile and every pin of it
    together, each pin to the newest file that fits the moved profile, in one edit."""
    with exclusive(root / "wheels.toml", "invoke bump"):
        return _bump(root, names, say=say, release=release, pre=pre, dry_run=dry_run, verify=verify,
                     accept_new_bytes=accept_new_bytes, client=client, move=profile)


def _bump(root: Path, names: Sequence[str], *, say: Say, release: str | None, pre: bool, dry_run: bool,
          verify: bool, accept_new_bytes: bool, client: GitHub | None, move: ProfileMove | None) -> Bumped:
    started = time.monotonic()
    path = root / "wheels.toml"
    bake_targets = render.targets(root / render.BAKE_FILE)
    text = read_text(path)  # read once: what is parsed is what the edit starts from
    pins = pins_mod.loads(text, path, bake_targets=bake_targets)
    profile_fields: dict[str, str] = {}
    old_profile: dict[str, str | None] = {}
    if move is not None:
        if names or release:
            raise BadInput("--profile moves every pin of the profile to the newest file that fits; "
                           "it takes no pin names and no --release")
        profile_fields = move.fields(pins)
        before = pins.profiles[move.name]
        old_profile = {"torch": before.abi.torch, "cuda": before.abi.cuda, "python": before.abi.python,
                       "torch_index": before.torch_index}
        chosen = [p for p in pins.wheels if any(pins.profile_for(t).name == move.name for t in p.targets)]
        pins = move.moved(pins, profile_fields)
    else:
        chosen = choose_pins(pins, names, verify)
    with borrowed(client, notice=say) as github, tempfile.TemporaryDirectory(prefix="comfyimg-bump-") as tmp:
        groups = fitting_groups(pins, chosen, github, pre) if move is not None else None
        changes = plan(pins, chosen, github, release=release, pre=pre, verify=verify, workdir=Path(tmp),
                       groups=groups)

    _refuse_uncovered(pins, changes, say)
    replaced = [ch for ch in changes
                if replaced_in_place(ch.pin.url, ch.pin.sha256, str(ch.fields.get("url", ch.pin.url)), ch.sha256)]
    lines = [f"{ch.pin.key}: {ch.asset.name} was replaced under the same URL in release "
             f"{ch.release.tag}: pinned sha256 {ch.pin.sha256}, now {ch.sha256}" for ch in replaced]
    if lines and not accept_new_bytes:  # the supply-chain event hashes exist to catch
        raise WorkFailed("\n".join(lines + ["Nothing was written. If the new bytes are the ones you "
                                             "trust, run again with --accept-new-bytes"]))
    for line in lines:
        say(f"warning: {line}; accepted (--accept-new-bytes)")

    done = Bumped(changes, dry_run=dry_run, profile={k: (old_profile[k], v) for k, v in profile_fields.items()})
    edits = {ch.pin.index: ch.fields for ch in changes if ch.fields}
    if not edits and not profile_fields:
        return done

    # Validate and render everything before writing anything.
    new_text = dumps_with_changes(text, edits) if edits else text
    for ch in sorted(changes, key=lambda c: -c.pin.index):  # a recorded sha256: its "not recorded yet" note goes
        if ch.pin.sha256 is None and "sha256" in ch.fields:
            new_text = drop_pending_notes(new_text, ("wheel", ch.pin.index))
    if move is not None and profile_fields:  # the profile and its pins in one edit
        new_text = with_profile(new_text, move.name, profile_fields)
    new_pins = reloaded(new_text, path, bake_targets=bake_targets, failed=f"the bumped {path.name} would not be valid")
    staged: dict[Path, bytes | str] = {path: new_text, **render.changed(new_pins, root)}
    done.edits = len(edits)
    if dry_run:
        done.diff = toml_diff(text, new_text, path.name)
        return done
    if read_text(path) != text:  # an editor saved it meanwhile (editors do not take the lock)
        raise WorkFailed(f"{path.name}: changed since invoke bump read it; nothing was written, so that "
                         "edit is kept. Run invoke bump again")
    atomic_write_many(staged, verbatim={path})
    render.write(new_pins, root)  # removes stale generated files; the rest is already current
    done.wrote = sorted(str(p.relative_to(root)) for p in staged)
    done.seconds = time.monotonic() - started
    return done


__all__ = ["Bumped", "Change", "bump", "choose_pins", "plan"]
