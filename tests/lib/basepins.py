"""One numbered wheels.toml (BASE) and the edits the unit tests make to it, line by line;
the bake file whose targets it names (BAKE)."""

from __future__ import annotations

HASH = "a" * 64
BAKE = """
target "core-cuda" {}
target "complete-cuda" {}
target "complete-rocm" {}
target "core-cpu" {}
"""
BASE_LINES = [
    "# test pins",                                                   # 1
    "[profiles.cuda]",                                               # 2
    'python = "cp312"',                                              # 3
    'platform = "linux_x86_64"',                                     # 4
    'torch = "2.9.0"',                                               # 5
    'torch_index = "cu128"   # keep this comment',                   # 6
    'cuda = "12.9"',                                                 # 7
    'archs = ["sm80", "sm90"]',                                      # 8
    "",                                                              # 9
    "[profiles.cpu]",                                                # 10
    'python = "cp312"',                                              # 11
    'platform = "linux_x86_64"',                                     # 12
    'torch = "2.9.0"',                                               # 13
    'torch_index = "cpu"',                                           # 14
    "",                                                              # 15
    "# SageAttention 2",                                             # 16
    "[[wheel]]",                                                     # 17
    'name = "sageattention"',                                        # 18
    'version = "2.2.0"',                                             # 19
    'url = "https://example.invalid/v1/sageattention-2.2.0-290.129-cp312-cp312-linux_x86_64.whl"',  # 20
    f'sha256 = "{HASH}"',                                            # 21
    'source = { github = "pixeloven/SageAttention", release = "v1" }',  # 22
    'targets = ["complete-cuda"]',                                   # 23
    'provides = ["sageattention"]',                                  # 24
    "",                                                              # 25
    "[[wheel]]",                                                     # 26
    'name = "sageattn3"',                                            # 27
    'version = "1.0.0"',                                             # 28
    'url = "https://example.invalid/v1/sageattn3-1.0.0-290.129-cp312-cp312-linux_x86_64.whl"',  # 29
    'targets = ["complete-cuda"]   # no sha256: recorded as missing',  # 30
    'provides = ["sageattn3", "fp4attn_cuda"]',                      # 31
    "",                                                              # 32
    "[[wheel]]",                                                     # 33
    'name = "sageattention"',                                        # 34
    'version = "2.2.0+cu129.torch2.9.0.sm90"',                       # 35
    'url = "https://example.invalid/v1/sageattention-2.2.0%2Bcu129.torch2.9.0.sm90-cp312-cp312-linux_x86_64.whl"',  # 36
    f'sha256 = "{"b" * 64}"',                                        # 37
    'arch = "sm90"',                                                 # 38
    'targets = ["complete-cuda"]',                                   # 39
    'provides = ["sageattention"]',                                  # 40
]
BASE = "\n".join(BASE_LINES) + "\n"


def edit(changes: dict[int, str | None]) -> str:
    lines = [changes.get(no, line) for no, line in enumerate(BASE_LINES, 1)]
    return "\n".join(line for line in lines if line is not None) + "\n"


def sub(line: int, old: str, new: str) -> dict[int, str]:
    assert old in BASE_LINES[line - 1]
    return {line: BASE_LINES[line - 1].replace(old, new)}
