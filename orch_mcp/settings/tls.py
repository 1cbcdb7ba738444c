"""TLS settings for rediss:// URLs: the CA, client certificate and key files checked before any connection is made."""

from __future__ import annotations

import os
import ssl
from typing import Literal
from urllib.parse import urlsplit

from .base import ValueProblem


def is_tls_url(url: str | None) -> bool:
    """True for a URL whose scheme asks for TLS: rediss://, and the rediss+… forms of other topologies."""
    return bool(url) and urlsplit(url or "").scheme.startswith("rediss")


TLSVerify = Literal["required", "optional", "none"]


#: The TLS settings (RedisSettings fields), and their variables for messages.
TLS_FIELDS = ("tls_ca_cert", "tls_cert", "tls_key", "tls_verify")
TLS_VARIABLES = "REDIS_TLS_CA_CERT, REDIS_TLS_CERT, REDIS_TLS_KEY and REDIS_TLS_VERIFY"


def readable_file(path: str | None) -> str | None:
    """The absolute path of a file that can be read (processes started elsewhere get the same file)."""
    if path is None:
        return None
    path = os.path.expanduser(path)
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as exc:
        raise ValueProblem(f"cannot be read ({exc.strerror or exc}); give the path of a PEM file") from None
    return os.path.abspath(path)


def ca_file(path: str | None) -> str | None:
    """The absolute path of a readable PEM file holding at least one CA certificate."""
    path = readable_file(path)
    if path is None:
        return None
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
    except ssl.SSLError:
        raise ValueProblem("holds no PEM certificate; give the CA certificate that signed the server's") from None
    return path


def tls_problem(url: str | None, ca_cert: str | None, cert: str | None, key: str | None, verify: str) -> str | None:
    """What is wrong with the TLS settings taken together (None if they can be used with `url`)."""
    if not is_tls_url(url):
        if ca_cert or cert or key or verify != "required":
            return (
                f"the TLS settings ({TLS_VARIABLES}, or the --tls-* flags) need a rediss:// URL: connect with "
                "rediss://host:port/db, or unset them"
            )
        return None
    if key and not cert:
        return "REDIS_TLS_KEY (--tls-key) needs REDIS_TLS_CERT (--tls-cert), the client certificate it belongs to"
    if cert:
        asked = []

        def passphrase() -> bytes:
            asked.append(True)
            return b""

        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert, key, password=passphrase)
        except ssl.SSLError as exc:
            if asked:
                return (
                    f"the TLS key {key or cert} is encrypted with a passphrase: give REDIS_TLS_KEY (--tls-key) an "
                    "unencrypted key file, readable by you only"
                )
            return (
                f"the TLS client certificate {cert} and key {key or '(in the same file)'} cannot be used together "
                f"({exc.reason or exc}): set REDIS_TLS_CERT and REDIS_TLS_KEY (--tls-cert, --tls-key) to a PEM "
                "certificate and its private key"
            )
    return None
