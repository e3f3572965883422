"""Text from outside (asset names, server messages, build logs, probe output) printed as
text, and secrets never printed: one place for the terminal, Markdown and JUnit XML.

* :func:`for_terminal`: control characters (ESC, BEL, CR, …, C1, bidi overrides) become
  visible escapes like ``\\x1b``; a line that would start a GitHub Actions workflow command
  (``::``) is defused.  Newlines and tabs stay.
* :func:`one_line`: the same, with newlines and tabs escaped too (location prefixes).
* :func:`for_markdown_cell`: the same, with ``|`` escaped and newlines folded, for one cell
  of a table row.
* :func:`for_xml`: only the characters XML 1.0 allows (others dropped).
* :func:`redact`: every registered secret (:func:`add_secret`) replaced by ``***``; every
  function above redacts too.
* :func:`loads_json`: JSON from outside (API answers, probe output, image labels), its
  nesting depth checked before :func:`json.loads` and ``NaN``/``Infinity`` refused: a value
  or :class:`ValueError`, never a ``RecursionError``.
"""

from __future__ import annotations

import itertools
import json
import os
import re

_SECRETS: set[str] = set()
_XML_BAD = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_WORKFLOW_COMMAND = re.compile(r"^(\s*):(?=:)", re.M)


def add_secret(value: str | None) -> None:
    """Never print ``value`` (a token); short values are not registered (they would mask text)."""
    if value and len(value) >= 4:
        _SECRETS.add(value)


# An environment variable whose name says it holds a credential: its value is a known secret
# (:func:`register_env_secrets`) and it never reaches a build (bake/bake.py's environment()).
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|CREDENTIAL|API_?KEY|PRIVATE_KEY|AUTH", re.I)
# ``scheme://user:password@`` in any URL: the credentials are cut, whoever wrote them.
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@:]+:[^/\s@]*@")


def secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def is_secret(value: str) -> bool:
    return value in _SECRETS


def register_env_secrets(environ: dict[str, str] | None = None) -> None:
    """Every value of a credential-named environment variable (``GITHUB_TOKEN``, ``*_PASSWORD``…)
    is a known secret from the start of a command (cli.py calls this once)."""
    for name, value in (os.environ if environ is None else environ).items():
        if secret_name(name):
            add_secret(value)


def strip_credentials(url: str) -> str:
    """``https://user:password@host/x`` -> ``https://host/x``: what a pin URL stores."""
    return _URL_CREDENTIALS.sub(r"\1", url)


def redact(text: str) -> str:
    """The one redaction of every output path: known secrets become ``***``, and so does the
    ``user:password`` of any URL."""
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "***")
    return _URL_CREDENTIALS.sub(r"\1***@", text)


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else (f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")


def for_terminal(text: object) -> str:
    """``text`` as a terminal (or a CI log) shows it literally."""
    text = redact(str(text))
    text = "".join(ch if ch in "\n\t" or ch.isprintable() else _escape(ch) for ch in text)
    return _WORKFLOW_COMMAND.sub(r"\1\\x3a", text)


def one_line(text: object) -> str:
    """:func:`for_terminal` with line breaks and tabs escaped too: a location prefix
    (``FILE:LINE: field:``) or any text that must stay on its line."""
    return for_terminal(text).replace("\n", "\\n").replace("\t", "\\t")


def for_markdown_cell(text: object) -> str:
    """One cell of a Markdown table: no line breaks, ``|`` escaped, controls visible."""
    text = for_terminal(text).replace("\r\n", "\n").replace("\n", " ").replace("\t", " ")
    return text.replace("|", "\\|")


def for_xml(text: object) -> str:
    """Text that XML 1.0 can hold (JUnit reports): forbidden characters (terminal escapes,
    other controls, lone surrogates) dropped."""
    return _XML_BAD.sub("", redact(str(text)))


MAX_JSON_DEPTH = 64
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def _no_constant(name: str) -> object:
    raise ValueError(f"non-finite number {name}")


def loads_json(data: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> object:
    """Parse untrusted JSON: deeper than ``max_depth``, not UTF-8, not JSON, or holding
    ``NaN``/``Infinity``: :class:`ValueError` with a reason."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("not UTF-8") from None
    brackets = _JSON_BRACKET.findall(_JSON_STRING.sub("", data))
    depth = max(itertools.accumulate(1 if b in "[{" else -1 for b in brackets), default=0)
    if depth > max_depth:
        raise ValueError(f"nested {depth} deep, more than the {max_depth} allowed")
    try:
        return json.loads(data, parse_constant=_no_constant)
    except RecursionError:  # the count above missed a case: still one line
        raise ValueError(f"nested more than {max_depth} deep") from None
    except ValueError as exc:
        raise ValueError(f"not JSON ({exc})") from None


register_env_secrets()  # every process of the package knows its environment's credentials from the start
