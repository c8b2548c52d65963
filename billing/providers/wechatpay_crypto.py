"""WeChat Pay API v3 signatures and notification decryption, done by the `wechatpayv3` SDK's
own functions (wechatpayv3.utils), in public-key mode: one platform public key, named by its
id (`PUB_KEY_ID_...`), instead of downloaded platform certificates.

We call the SDK's functions rather than `Core`'s methods on purpose: `Core._verify_signature`
answers an unknown `Wechatpay-Serial` by downloading certificates with blocking `requests`
(`_update_certificates`), which would block the event loop, and a serial we do not know must
simply be refused in public-key mode. `Core.request` is blocking `requests` too; the HTTP is
aiohttp in wechatpay_provider.py.
"""

from __future__ import annotations

import binascii
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wechatpayv3.utils import (  # type: ignore[import-untyped]
    aes_decrypt,
    build_authorization,
    load_private_key,
    load_public_key,
    rsa_verify,
)

SCHEMA = "WECHATPAY2-SHA256-RSA2048"
APIV3_KEY_BYTES = 32


class KeyFileError(ValueError):
    """A key file that cannot be used; the message is one line naming the problem."""


def _read_pem(path: Path, what: str) -> str:
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise KeyFileError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise KeyFileError(f"cannot read {what} {path} ({type(e).__name__})") from None
    if "-----BEGIN" not in text:
        raise KeyFileError(f"{what} {path} is not a PEM file")
    return text


def read_private_key(path: Path) -> Any:
    """The merchant's API private key (apiclient_key.pem, PKCS#8 PEM), loaded the way the SDK
    loads it; KeyFileError with a one-line reason otherwise."""
    text = _read_pem(path, "private key file")
    try:
        key = load_private_key(text)
    except Exception:  # noqa: BLE001 - the SDK raises a bare Exception for every failure
        raise KeyFileError(
            f"private key file {path} is not a PKCS#8 PEM private key (BEGIN PRIVATE KEY)"
        ) from None
    if getattr(key, "key_size", 0) < 2048:
        raise KeyFileError(f"private key file {path} is not an RSA key of 2048 bits or more")
    return key


def read_public_key(path: Path) -> Any:
    """The WeChat Pay platform public key (pub_key.pem); KeyFileError otherwise."""
    text = _read_pem(path, "public key file")
    try:
        key = load_public_key(text)
    except Exception:  # noqa: BLE001 - the SDK raises a bare Exception for every failure
        raise KeyFileError(
            f"public key file {path} is not a PEM public key (BEGIN PUBLIC KEY)"
        ) from None
    if getattr(key, "key_size", 0) < 2048:
        raise KeyFileError(f"public key file {path} is not an RSA key of 2048 bits or more")
    return key


@dataclass(frozen=True)
class MerchantKeys:
    mchid: str
    cert_serial_no: str  # the serial of the merchant API certificate (signs requests)
    private_key: Any  # cryptography RSAPrivateKey
    platform_key_id: str  # Wechatpay-Serial of what WeChat Pay signs
    platform_key: Any  # cryptography RSAPublicKey
    apiv3_key: str  # 32 bytes: decrypts notifications

    def authorization(self, method: str, path: str, body: str) -> str:
        """The `Authorization` header of one request: the SDK signs
        `METHOD\\nPATH?QUERY\\nTIMESTAMP\\nNONCE\\nBODY\\n` with the merchant key."""
        return str(
            build_authorization(
                path, method, self.mchid, self.cert_serial_no, self.private_key, data=body
            )
        )

    def verifies(self, serial: str, timestamp: str, nonce: str, body: str, signature: str) -> bool:
        """True if `signature` is the platform key's over `timestamp\\nnonce\\nbody\\n`
        (responses and notifications alike). A serial other than our key's id never is."""
        if serial != self.platform_key_id:
            return False
        try:
            return bool(rsa_verify(timestamp, nonce, body, signature, self.platform_key))
        except (ValueError, TypeError):
            return False

    def decrypt(self, resource: dict[str, Any]) -> dict[str, Any]:
        """A notification's `resource` (AEAD_AES_256_GCM with the APIv3 key) as its JSON
        object. ValueError with a one-line reason when it cannot be read."""
        algorithm = resource.get("algorithm")
        if algorithm != "AEAD_AES_256_GCM":
            raise ValueError(f"resource algorithm is {str(algorithm)[:40]!r}, not AEAD_AES_256_GCM")
        nonce, ciphertext = resource.get("nonce"), resource.get("ciphertext")
        associated = resource.get("associated_data") or ""
        if not all(isinstance(v, str) for v in (nonce, ciphertext, associated)):
            raise ValueError("resource nonce, ciphertext or associated_data is not text")
        if not nonce or not ciphertext:
            raise ValueError("resource has no nonce or ciphertext")
        try:
            text = aes_decrypt(nonce, ciphertext, associated, self.apiv3_key)
        except (ValueError, TypeError, binascii.Error, UnicodeError) as e:
            raise ValueError(f"resource cannot be decrypted ({type(e).__name__})") from None
        if text is None:  # the SDK's answer to a failed tag check
            raise ValueError("resource does not decrypt with the APIv3 key (tag mismatch)")
        try:
            data = json.loads(text)
        except ValueError:
            raise ValueError("decrypted resource is not JSON") from None
        if not isinstance(data, dict):
            raise ValueError("decrypted resource is not a JSON object")
        return data


def load_keys(
    *,
    mchid: str,
    cert_serial_no: str,
    private_key_path: Path,
    platform_public_key_path: Path,
    platform_public_key_id: str,
    apiv3_key: str,
) -> MerchantKeys:
    """Every key of a [wechatpay] section, checked; KeyFileError names the first problem."""
    if len(apiv3_key.encode("utf-8")) != APIV3_KEY_BYTES:
        raise KeyFileError(f"the APIv3 key must be exactly {APIV3_KEY_BYTES} bytes")
    return MerchantKeys(
        mchid=mchid,
        cert_serial_no=cert_serial_no,
        private_key=read_private_key(private_key_path),
        platform_key_id=platform_public_key_id,
        platform_key=read_public_key(platform_public_key_path),
        apiv3_key=apiv3_key,
    )
