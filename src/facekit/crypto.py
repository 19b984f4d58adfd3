"""Encryption at rest of a database's tables: an AES-256 zip (WinZip AES) keyed by FACEKIT_KEY.

The key only ever comes from the environment (never the command line or logs).
"""

from __future__ import annotations

from pathlib import Path

from .errors import DatabaseError, KeyRequiredError

__all__ = ["KEY_ENV", "zip_read", "zip_write"]

KEY_ENV = "FACEKIT_KEY"


def zip_write(path: Path, members: dict[str, bytes], key: str) -> None:
    import pyzipper

    with pyzipper.AESZipFile(
        path, "w", compression=pyzipper.ZIP_DEFLATED, encryption=pyzipper.WZ_AES
    ) as zf:
        zf.setpassword(key.encode())
        zf.setencryption(pyzipper.WZ_AES, nbits=256)
        for name, data in members.items():
            zf.writestr(name, data)


def zip_read(path: Path, key: str | None, db: Path) -> dict[str, bytes]:
    import pyzipper

    if not key:
        raise KeyRequiredError(f"{db}: the database is encrypted; set {KEY_ENV} to its key")
    try:
        with pyzipper.AESZipFile(path) as zf:
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
