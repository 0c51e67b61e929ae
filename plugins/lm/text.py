"""Text for language-model audits: tokenizers (plugins), the embedded corpus, JSONL loading.

The embedded corpus needs no download: the docstrings of standard-library modules, which ship
with every Python install (their exact text varies with the Python version).

    from audit_sdk.plugins.lm.text import ByteTokenizer, stdlib_corpus, text_audit_data
    chunks = stdlib_corpus(length=64)                 # list of 64-byte texts, deduplicated
    data = text_audit_data(members=chunks[:200], non_members=chunks[200:400], tokenizer="byte")

Tokenizers are named: ``byte`` (built in: UTF-8 bytes, vocabulary 256), ``module:attribute`` (an
object or class with ``encode``, ``decode`` and ``vocab_size``), or an entry point of the group
``audit_sdk.tokenizers`` that a third-party package declares; no network is ever used.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import warnings
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from audit_sdk.data import AuditData
from audit_sdk.errors import InvalidDataError, InvalidParameterError
from audit_sdk.sequence import pad_sequences

__all__ = ["ByteTokenizer", "Tokenizer", "get_tokenizer", "load_jsonl", "stdlib_corpus", "text_audit_data"]

#: entry-point group for third-party tokenizers
TOKENIZER_GROUP = "audit_sdk.tokenizers"


@runtime_checkable
class Tokenizer(Protocol):
    """What the LM tools need of a tokenizer."""

    vocab_size: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


class ByteTokenizer:
    """UTF-8 bytes as tokens: vocabulary 256, no unknown token, no download."""

    name = "byte"
    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(int(i) for i in ids if 0 <= int(i) < 256).decode("utf-8", errors="replace")


def get_tokenizer(name: str | Any) -> Tokenizer:
    """A tokenizer by name (``byte``, ``module:attribute`` or an ``audit_sdk.tokenizers`` entry point), or the object itself.

    Raises:
        InvalidParameterError: an unknown name, naming the choices.
    """
    if not isinstance(name, str):
        tok = name
    elif name == "byte":
        tok = ByteTokenizer()
    else:
        eps = {ep.name: ep for ep in metadata.entry_points(group=TOKENIZER_GROUP)}
        if name in eps:
            tok = eps[name].load()
        elif ":" in name:
            mod, _, attr = name.partition(":")
            try:
                tok = getattr(importlib.import_module(mod), attr)
            except (ImportError, AttributeError) as exc:
                raise InvalidParameterError(f"tokenizer {name!r} cannot be imported ({exc}).") from exc
        else:
            raise InvalidParameterError(
                f"unknown tokenizer {name!r}; expected 'byte', 'module:attribute' or one of the entry points {sorted(eps) or '(none installed)'}."
            )
        if inspect.isclass(tok):
            tok = tok()
    if not isinstance(tok, Tokenizer):
        raise InvalidParameterError(f"tokenizer {name!r} lacks encode / decode / vocab_size.")
    return tok


#: standard-library modules whose docstrings form the embedded corpus (pure Python, always present)
_MODULES = (
    "argparse", "ast", "base64", "bisect", "calendar", "collections", "configparser", "contextlib", "copy", "csv",
    "dataclasses", "datetime", "decimal", "difflib", "email.message", "enum", "fractions", "ftplib", "functools", "getopt",
    "gettext", "glob", "gzip", "heapq", "hmac", "html.parser", "http.client", "imaplib", "inspect", "ipaddress", "json",
    "logging", "mailbox", "mimetypes", "netrc", "numbers", "optparse", "pathlib", "pickle", "pprint", "queue", "random",
    "shlex", "shutil", "smtplib", "socket", "statistics", "string", "subprocess", "tarfile", "tempfile", "textwrap",
    "threading", "timeit", "tokenize", "traceback", "typing", "unittest.case", "urllib.parse", "urllib.request", "uuid",
    "warnings", "wave", "weakref", "xml.dom.minidom", "zipfile",
)  # fmt: skip


def _docstrings() -> list[str]:
    # reading the attributes of stdlib modules touches deprecated aliases (typing.io, ...): their
    # warnings are about those modules, not about anything the user does
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _collect_docstrings()


def _collect_docstrings() -> list[str]:
    docs: list[str] = []
    for name in _MODULES:
        try:
            mod = importlib.import_module(name)
        except ImportError:  # a trimmed Python build: use what is there
            continue
        objs: list[Any] = [mod]
        for _, obj in sorted(vars(mod).items()):
            if getattr(obj, "__module__", None) == mod.__name__ and (inspect.isclass(obj) or inspect.isfunction(obj)):
                objs.append(obj)
                if inspect.isclass(obj):
                    objs += [m for _, m in sorted(vars(obj).items()) if inspect.isfunction(m)]
        docs += [d for d in (inspect.getdoc(o) for o in objs) if d]
    return docs


def stdlib_corpus(*, length: int = 64, max_chunks: int | None = None, seed: int = 0) -> list[str]:
    """Distinct ASCII texts of exactly ``length`` characters cut from standard-library docstrings, shuffled by ``seed``.

    Whitespace runs become one space; chunks are cut at word boundaries where possible, and
    duplicates (boilerplate repeated across modules) are dropped, so a random split gives members
    and non-members of the same distribution.
    """
    text = " ".join(re.sub(r"\s+", " ", d).strip() for d in _docstrings())
    text = text.encode("ascii", errors="ignore").decode()
    chunks, seen, i = [], set(), 0
    while i + length <= len(text):
        c = text[i : i + length]
        if c not in seen:
            seen.add(c)
            chunks.append(c)
        i += length
    order = np.random.default_rng(seed).permutation(len(chunks))
    out = [chunks[j] for j in order]
    return out[:max_chunks] if max_chunks is not None else out


def encode_texts(texts: Sequence[str], tokenizer: Any = "byte", *, max_length: int | None = None) -> np.ndarray:
    """Token ids of ``texts`` as a PAD-padded int64 array (``audit_sdk.sequence``)."""
    tok = get_tokenizer(tokenizer)
    return pad_sequences([tok.encode(t) for t in texts], max_len=max_length)


def text_audit_data(
    *,
    members: Sequence[str],
    non_members: Sequence[str],
    population: Sequence[str] | None = None,
    tokenizer: Any = "byte",
    max_length: int | None = None,
    check_disjoint: bool = True,
) -> AuditData:
    """AuditData of token sequences from texts (one width for every set)."""
    sets = [list(members), list(non_members)] + ([list(population)] if population is not None else [])
    ids = encode_texts([t for s in sets for t in s], tokenizer, max_length=max_length)
    parts, start = [], 0
    for s in sets:
        parts.append((ids[start : start + len(s)], np.zeros(len(s), dtype=np.int64)))
        start += len(s)
    return AuditData(*parts, check_disjoint=check_disjoint)


def load_jsonl(path: str | Path, *, tokenizer: Any = "byte", max_length: int | None = None, text_key: str = "text") -> AuditData:
    """AuditData from a JSONL file: one object per line, ``{"text": ..., "split": "members" | "non_members" | "population"}``.

    ``"member": true / false`` is accepted instead of ``split``.

    Raises:
        InvalidDataError: a line that is not JSON, lacks the text or the split, or an empty set.
    """
    p = Path(path)
    if not p.is_file():
        raise InvalidDataError(f"JSONL file {str(p)!r} does not exist.")
    sets: dict[str, list[str]] = {"members": [], "non_members": [], "population": []}
    for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidDataError(f"{p}:{i}: not JSON ({exc.msg}).") from None
        split = row.get("split") if isinstance(row, dict) else None
        if split is None and isinstance(row, dict) and isinstance(row.get("member"), bool):
            split = "members" if row["member"] else "non_members"
        if not isinstance(row, dict) or not isinstance(row.get(text_key), str) or split not in sets:
            raise InvalidDataError(f"{p}:{i}: expected {{{text_key!r}: str, 'split': 'members' | 'non_members' | 'population'}}.")
        sets[split].append(row[text_key])
    if not sets["members"] or not sets["non_members"]:
        raise InvalidDataError(f"{p}: needs at least one member and one non-member text.")
    return text_audit_data(
        members=sets["members"],
        non_members=sets["non_members"],
        population=sets["population"] or None,
        tokenizer=tokenizer,
        max_length=max_length,
    )
