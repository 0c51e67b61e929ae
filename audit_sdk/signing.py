"""Files only this user's runs wrote: an HMAC over the content with a per-user key (a leaf module).

Some model families have no safe serialisation in their library (a scikit-learn forest is saved
with pickle), and unpickling a file runs code: a cache directory someone else can write to must
never be unpickled as is. ``write_signed`` prefixes the content with an HMAC-SHA256 under a
32-byte key kept in the user's configuration folder (mode 0600); ``read_signed`` returns the
content only when the tag verifies, before anything parses it. A planted or altered file is
refused with ``InvalidDataError`` (the reference cache then deletes it and trains the model again).

The key lives at ``$AUDIT_SDK_KEY_FILE``, else ``$XDG_CONFIG_HOME/audit-sdk/cache.key``, else
``~/.config/audit-sdk/cache.key``, and is created on first use. Machines that share a cache (a Ray
cluster) must share the key too: point ``AUDIT_SDK_KEY_FILE`` at the same file on each.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from .errors import InvalidDataError
from .fileio import write_bytes_atomic

__all__ = ["key_path", "read_signed", "write_signed"]

_MAGIC = b"audit-sdk-signed-v1\n"
_TAG = hashlib.sha256().digest_size
_KEY_BYTES = 32


def key_path() -> Path:
    """Where this user's signing key lives (see the module docstring)."""
    env = os.environ.get("AUDIT_SDK_KEY_FILE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "audit-sdk" / "cache.key"


def _key() -> bytes:
    path = key_path()
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_bytes(_KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # fails if another process made the key first: then everyone reads that one
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    key = path.read_bytes()
    if len(key) != _KEY_BYTES:
        raise InvalidDataError(
            f"signing key {path} holds {len(key)} bytes, not {_KEY_BYTES}; delete it (a new one is made) or fix AUDIT_SDK_KEY_FILE."
        )
    return key


def write_signed(path: str | Path, payload: bytes) -> Path:
    """Write ``payload`` to ``path`` atomically, tagged with this user's key; return the path."""
    tag = hmac.new(_key(), payload, hashlib.sha256).digest()
    return write_bytes_atomic(path, _MAGIC + tag + payload)


def read_signed(path: str | Path) -> bytes:
    """The payload of a file ``write_signed`` wrote with this user's key.

    Raises:
        InvalidDataError: the file is not signed, or not with this key, or was altered: nothing of
            it must be parsed.
    """
    data = Path(path).read_bytes()
    head = len(_MAGIC)
    if not data.startswith(_MAGIC) or len(data) < head + _TAG:
        raise InvalidDataError(f"{path} is not a file audit-sdk signed; refusing to read it (it may be planted).")
    tag, payload = data[head : head + _TAG], data[head + _TAG :]
    if not hmac.compare_digest(tag, hmac.new(_key(), payload, hashlib.sha256).digest()):
        raise InvalidDataError(
            f"{path} was not written by this user's runs (signature mismatch: altered, or signed with another "
            f"key than {key_path()}); refusing to read it."
        )
    return payload
