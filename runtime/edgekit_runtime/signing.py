"""Ed25519 signatures over a bundle's manifest.json, and the keys a board trusts.

The manifest lists the sha256 of every file in the bundle (and the runtime refuses files it does not list), so
a signature over manifest.json's exact bytes covers every byte a model reads. It is stored next to it as
manifest.sig: {"algorithm": "ed25519", "public_key": base64 (32 bytes), "signature": base64 (64 bytes)}.
The embedded public key only names the signer; whether it is trusted is decided by the board's keys:

  --trust PUBKEY (a .pub file, or a directory of them), and every *.pub file in $EDGEKIT_TRUST_DIR
  (default /etc/edgekit/trust, which deployment creates). With any trusted key configured, an unsigned bundle
  or one signed by another key is refused.

Keys are PEM files (openssl-compatible): `edgekit keygen KEY` writes KEY (private, mode 0600) and KEY.pub.
Public keys are parsed here without `cryptography`; it is imported (~15 ms) only to check a signature.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from pathlib import Path

from .errors import UserError

SIGNATURE = "manifest.sig"
TRUST_DIR_ENV = "EDGEKIT_TRUST_DIR"
DEFAULT_TRUST_DIR = "/etc/edgekit/trust"
# DER SubjectPublicKeyInfo of an Ed25519 key: this fixed prefix, then the 32 raw bytes
_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")


def fingerprint(raw_public_key: bytes) -> str:
    """How a key is named to people, as ssh-keygen -l does: SHA256:<base64 of the key's sha256>."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw_public_key).digest()).decode().rstrip("=")


def generate_key(out: str | Path) -> tuple[Path, Path]:
    """Write a new private key to `out` (mode 0600, never overwritten) and its public key to `out`.pub."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    out, pub = Path(out), Path(f"{out}.pub")
    for p in (out, pub):
        if p.exists():
            raise UserError(f"{p}: already exists; not overwriting a key")
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others, not even briefly
        with os.fdopen(fd, "wb") as f:
            f.write(private)
        pub.write_bytes(public)
    except OSError as e:
        raise UserError(f"{e.filename}: cannot write ({e.strerror})") from None
    return out, pub


def read_public_key(path: str | Path) -> bytes:
    """The 32 raw bytes of the Ed25519 public key in a PEM .pub file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii", errors="strict")[:4096]
        lines = [line.strip() for line in text.strip().splitlines()]
        if lines[0] != "-----BEGIN PUBLIC KEY-----" or lines[-1] != "-----END PUBLIC KEY-----":
            raise ValueError
        der = base64.b64decode("".join(lines[1:-1]), validate=True)
    except OSError as e:
        raise UserError(f"{path}: cannot read public key ({e.strerror})") from None
    except (ValueError, IndexError, UnicodeDecodeError, binascii.Error):
        raise UserError(f"{path}: not a PEM public key (expected a .pub file written by `edgekit keygen`)") from None
    if len(der) != 44 or not der.startswith(_SPKI_PREFIX):
        raise UserError(f"{path}: not an Ed25519 public key")
    return der[len(_SPKI_PREFIX):]


def _keys_in(directory: Path) -> list[bytes]:
    keys = [read_public_key(p) for p in sorted(directory.glob("*.pub")) if p.is_file()]
    if not keys:
        raise UserError(f"{directory}: trust directory holds no *.pub keys")
    return keys


def trusted_keys(paths=()) -> list[bytes] | None:
    """The raw public keys this board trusts: `paths` (--trust: .pub files or directories) and the trust
    directory. None when no key is configured at all (bundles are then checked by digests only)."""
    keys = []
    for p in map(Path, paths):
        keys += _keys_in(p) if p.is_dir() else [read_public_key(p)]
    configured = os.environ.get(TRUST_DIR_ENV)
    if configured:  # named explicitly: it must exist, or a typo would switch signature checks off
        if not Path(configured).is_dir():
            raise UserError(f"{TRUST_DIR_ENV}={configured}: no such directory")
        keys += _keys_in(Path(configured))
    elif Path(DEFAULT_TRUST_DIR).is_dir():
        keys += _keys_in(Path(DEFAULT_TRUST_DIR))
    return keys or None


def sign_manifest(manifest_bytes: bytes, private_key_path: str | Path) -> bytes:
    """The contents of manifest.sig for these manifest bytes, signed with a key written by generate_key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = Path(private_key_path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as e:
        raise UserError(f"{path}: cannot read private key ({e.strerror})") from None
    except (ValueError, TypeError) as e:
        raise UserError(f"{path}: not an unencrypted PEM private key ({str(e).splitlines()[0]})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UserError(f"{path}: not an Ed25519 private key (make one with `edgekit keygen`)")
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return (json.dumps({"algorithm": "ed25519", "public_key": base64.b64encode(raw).decode(),
                        "signature": base64.b64encode(key.sign(manifest_bytes)).decode(),
                        "signer": fingerprint(raw)}, indent=2) + "\n").encode()


def check_signature(manifest_bytes: bytes, sig_bytes: bytes | None, trust: list[bytes] | None,
                    where: str) -> str | None:
    """Check manifest.sig against the manifest and the trusted keys; return the signer's fingerprint (None when
    unsigned and nothing is trusted). Refuses an unsigned bundle or a foreign signer when keys are trusted."""
    if sig_bytes is None:
        if trust:
            raise UserError(f"{where}: {SIGNATURE}: missing; the bundle is unsigned and this board only runs "
                            "bundles signed by a trusted key")
        return None
    try:
        sig = json.loads(sig_bytes.decode("ascii")) if len(sig_bytes) < 4096 else None
        if not isinstance(sig, dict) or sig.get("algorithm") != "ed25519":
            raise ValueError
        raw = base64.b64decode(sig["public_key"], validate=True)
        signature = base64.b64decode(sig["signature"], validate=True)
        if len(raw) != 32 or len(signature) != 64:
            raise ValueError
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError, binascii.Error):
        raise UserError(f"{where}: {SIGNATURE}: not an ed25519 signature written by `edgekit bundle --sign`") from None
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    signer = fingerprint(raw)
    try:
        Ed25519PublicKey.from_public_bytes(raw).verify(signature, manifest_bytes)
    except (InvalidSignature, ValueError):
        raise UserError(f"{where}: {SIGNATURE}: signature does not match manifest.json "
                        "(modified after signing)") from None
    if trust and raw not in trust:
        raise UserError(f"{where}: {SIGNATURE}: signed by {signer}, which is not a trusted key")
    return signer
