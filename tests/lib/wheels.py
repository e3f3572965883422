"""Build real, installable wheels for tests: a valid zip with ``METADATA``, ``WHEEL`` and a
``RECORD`` whose hashes and sizes are right.

    build_wheel(tmp, "sageattention", "2.2.0",
                filename="sageattention-2.2.0-290.129-cp312-cp312-linux_x86_64.whl",
                files={"sageattention/__init__.py": "def sageattn(*a, **k): ...\\n"})

The file name decides the tags and the build tag written into ``WHEEL`` (so decoys with
other CUDA/torch/Python/platform tags are self-consistent); without one it is
``{name}-{version}-py3-none-any.whl``.  ``files`` maps archive paths to ``str``/``bytes``
(default: an empty ``{module}/__init__.py``).  Deterministic: the same arguments give
byte-identical wheels.
"""

from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

from packaging.utils import parse_wheel_filename

_EPOCH = (2020, 1, 1, 0, 0, 0)


def _dist_part(name: str) -> str:
    """Name as it appears in wheel and dist-info names (PEP 427 escaping)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(
    directory: Path | str,
    name: str,
    version: str,
    filename: str | None = None,
    files: Mapping[str, str | bytes] | None = None,
    *,
    tags: list[str] | None = None,
    metadata: Mapping[str, str] | None = None,
    requires: list[str] | None = None,
    compression: int = zipfile.ZIP_DEFLATED,
) -> Path:
    """Write a wheel into ``directory`` and return its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    build: str | None = None
    if filename is None:
        filename = f"{_dist_part(name)}-{version}-py3-none-any.whl"
    _, _, build_tag, parsed_tags = parse_wheel_filename(filename)
    if build_tag:
        build = f"{build_tag[0]}{build_tag[1]}"
    tag_lines = tags or sorted(str(t) for t in parsed_tags)
    if files is None:
        files = {f"{_dist_part(name)}/__init__.py": ""}
    dist_info = f"{_dist_part(name)}-{version}.dist-info"
    purelib = all(t.endswith("-none-any") for t in tag_lines)

    meta_lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    for key, value in (metadata or {}).items():
        meta_lines.append(f"{key}: {value}")
    for req in requires or ():
        meta_lines.append(f"Requires-Dist: {req}")
    wheel_lines = ["Wheel-Version: 1.0", "Generator: tests.lib.wheels",
                   f"Root-Is-Purelib: {'true' if purelib else 'false'}"]
    if build:
        wheel_lines.append(f"Build: {build}")
    wheel_lines += [f"Tag: {t}" for t in tag_lines]

    entries: list[tuple[str, bytes]] = []
    for arcname, content in files.items():
        data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
        entries.append((arcname, data))
    entries.append((f"{dist_info}/METADATA", ("\n".join(meta_lines) + "\n").encode()))
    entries.append((f"{dist_info}/WHEEL", ("\n".join(wheel_lines) + "\n").encode()))
    record = [f"{arc},{record_hash(data)},{len(data)}" for arc, data in entries]
    record.append(f"{dist_info}/RECORD,,")
    entries.append((f"{dist_info}/RECORD", ("\n".join(record) + "\n").encode()))

    path = directory / filename
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for arcname, data in entries:
            info = zipfile.ZipInfo(arcname, date_time=_EPOCH)
            info.compress_type = compression
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return path


def sha256_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
