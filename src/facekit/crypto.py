"""Encryption at rest and authentication of a database (key: FACEKIT_KEY).

- The tables and the Voyager indices of an encrypted generation live in an AES-256 zip
  (WinZip AES via pyzipper; each member has its own salt and an HMAC-SHA1 tag).
- Everything else that influences a decision (the manifest with its calibration and
  threshold, and ``CURRENT``) is authenticated with HMAC-SHA256 under a key derived from
  FACEKIT_KEY by PBKDF2-HMAC-SHA256 with a random salt stored in the manifest.

The key only ever comes from the environment (never the command line or logs).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .errors import DatabaseError, KeyRequiredError

__all__ = [
    "KEY_ENV",
    "KDF_ITERATIONS",
    "AuthKey",
    "derive",
    "new_auth",
    "zip_read",
    "zip_write",
]

KEY_ENV = "FACEKIT_KEY"
#: PBKDF2 iterations (OWASP 2023 figure for PBKDF2-HMAC-SHA256; about 0.13 s on one core).
KDF_ITERATIONS = 600_000


@dataclass(frozen=True)
class AuthKey:
    """The keys derived from FACEKIT_KEY for one salt: HMAC key and zip password."""

    mac_key: bytes
    zip_password: str

    def check(self) -> str:
        """A key-check value: tells a wrong key apart from a tampered manifest."""
        return hmac.new(self.mac_key, b"facekit key check", hashlib.sha256).hexdigest()[:16]

    def mac(self, data: bytes) -> str:
        return hmac.new(self.mac_key, data, hashlib.sha256).hexdigest()

    def verify(self, data: bytes, tag: str) -> bool:
        return hmac.compare_digest(self.mac(data), str(tag))


def derive(key: str, salt_hex: str, iterations: int = KDF_ITERATIONS) -> AuthKey:
    salt = bytes.fromhex(salt_hex)
    raw = hashlib.pbkdf2_hmac("sha256", key.encode(), salt, int(iterations), dklen=64)
    return AuthKey(raw[:32], raw[32:].hex())


def new_auth(key: str) -> tuple[AuthKey, dict[str, Any]]:
    """A fresh salt: the derived key and the manifest's ``auth`` entry (without ``mac``)."""
    salt = os.urandom(16).hex()
    ak = derive(key, salt, KDF_ITERATIONS)
    return ak, {
        "kdf": "pbkdf2-sha256",
        "iterations": KDF_ITERATIONS,
        "salt": salt,
        "check": ak.check(),
    }


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """The canonical bytes of a manifest that its MAC covers (everything but ``auth.mac``)."""
    m = dict(manifest)
    auth = dict(m.get("auth") or {})
    auth.pop("mac", None)
    m["auth"] = auth
    return json.dumps(m, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def zip_write(path: Path, members: dict[str, bytes], key: str) -> None:
    import pyzipper

    with pyzipper.AESZipFile(
        path, "w", compression=pyzipper.ZIP_DEFLATED, encryption=pyzipper.WZ_AES
    ) as zf:
        zf.setpassword(key.encode())
        zf.setencryption(pyzipper.WZ_AES, nbits=256)
        for name, data in members.items():
            # Voyager indices are float data: deflate would cost time and save nothing.
            ctype = pyzipper.ZIP_STORED if name.endswith(".voy") else pyzipper.ZIP_DEFLATED
            zf.writestr(name, data, compress_type=ctype)


def zip_read(src: Path | IO[bytes], key: str | None, db: Path) -> dict[str, bytes]:
    import pyzipper

    if not key:
        raise KeyRequiredError(f"{db}: the database is encrypted; set {KEY_ENV} to its key")
    try:
        with pyzipper.AESZipFile(src) as zf:
            zf.setpassword(key.encode())
            return {name: zf.read(name) for name in zf.namelist()}
    except RuntimeError as exc:
        if "password" in str(exc).lower():
            raise KeyRequiredError(
                f"{db}: wrong key in {KEY_ENV} for this encrypted database"
            ) from None
        raise DatabaseError(f"{db}: cannot read encrypted data ({exc})") from None
    except Exception as exc:
        raise DatabaseError(
            f"{db}: encrypted data is damaged ({' '.join(str(exc).split())})"
        ) from None
