"""WeChat Pay API v3's cryptography, written from the published rules with `cryptography`
(no WeChat Pay SDK: a stand-in that shared the provider's code would prove nothing).

- Requests carry `Authorization: WECHATPAY2-SHA256-RSA2048 mchid="..",nonce_str="..",
  signature="..",timestamp="..",serial_no=".."`, an RSA-SHA256 (PKCS#1 v1.5) signature by the
  merchant key over `METHOD\\nURL\\nTIMESTAMP\\nNONCE\\nBODY\\n` (URL: path and query).
- Answers and notifications carry `Wechatpay-Timestamp/-Nonce/-Signature/-Serial`, the
  platform key's signature over `TIMESTAMP\\nNONCE\\nBODY\\n`.
- A notification's `resource` is AEAD_AES_256_GCM with the 32-byte APIv3 key, a 12-character
  nonce and `associated_data`, base64 of ciphertext + tag.
"""

from __future__ import annotations

import base64
import re
import secrets
import string
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SCHEMA = "WECHATPAY2-SHA256-RSA2048"
_ALNUM = string.ascii_letters + string.digits
_PAIR = re.compile(r'\s*([a-z_]+)="([^"]*)"\s*')
AUTH_FIELDS = ("mchid", "nonce_str", "signature", "timestamp", "serial_no")


def random_text(n: int, alphabet: str = _ALNUM) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_pem(key: rsa.RSAPrivateKey) -> bytes:
    """PKCS#8, as the merchant's apiclient_key.pem is."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(key: rsa.RSAPublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def sign(key: rsa.RSAPrivateKey, message: str) -> str:
    raw = key.sign(message.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(raw).decode("ascii")


def verify(key: rsa.RSAPublicKey, message: str, signature: str) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, message.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def request_message(method: str, url: str, timestamp: str, nonce: str, body: str) -> str:
    return f"{method}\n{url}\n{timestamp}\n{nonce}\n{body}\n"


def answer_message(timestamp: str, nonce: str, body: str) -> str:
    return f"{timestamp}\n{nonce}\n{body}\n"


class BadAuthorization(ValueError):
    """An Authorization header that is not WeChat Pay's scheme."""


def parse_authorization(header: str) -> dict[str, str]:
    """The five fields of `WECHATPAY2-SHA256-RSA2048 k="v",...`; BadAuthorization if the
    schema, a field or the syntax is wrong."""
    schema, _, rest = header.partition(" ")
    if schema != SCHEMA:
        raise BadAuthorization(f"认证类型不正确: expected {SCHEMA}")
    fields: dict[str, str] = {}
    for item in rest.split(","):
        m = _PAIR.fullmatch(item)
        if m is None:
            raise BadAuthorization("Authorization 格式错误")
        fields[m.group(1)] = m.group(2)
    missing = [f for f in AUTH_FIELDS if not fields.get(f)]
    if missing:
        raise BadAuthorization(f"Authorization 缺少 {', '.join(missing)}")
    return fields


@dataclass(frozen=True)
class Sealed:
    nonce: str
    ciphertext: str  # base64 of ciphertext + tag
    associated_data: str


def seal(apiv3_key: str, plaintext: str, associated_data: str) -> Sealed:
    nonce = random_text(12)
    data = AESGCM(apiv3_key.encode("utf-8")).encrypt(
        nonce.encode("ascii"), plaintext.encode("utf-8"), associated_data.encode("utf-8")
    )
    return Sealed(nonce, base64.b64encode(data).decode("ascii"), associated_data)
