"""The voice webhook: the markup that connects a call to its media websocket, and request signatures.

Theory of operation
-------------------
A provider announces a call with an HTTP POST to the number's voice webhook
(``POST /telephony/twilio`` and so on). We verify the request's signature, then answer with
the provider's markup telling it to open a bidirectional media stream to
``wss://HOST/telephony/<provider>/stream/<token>``. The token is ours: an HMAC (with
:class:`StreamTokens`' key) of the provider, an expiry and a nonce, so only a URL we handed
out in answer to a verified webhook opens a stream, once, within ``ttl_s``. Where the
provider also signs the websocket upgrade (Twilio: ``X-Twilio-Signature`` over the
``wss://`` URL) that signature is checked too.

Signatures, as each provider documents them:

* **Twilio** ``X-Twilio-Signature``: base64 HMAC-SHA1, keyed with the auth token, of the
  full URL followed by every POST parameter, sorted by name, as ``name + value``.
* **Telnyx** ``telnyx-signature-ed25519`` and ``telnyx-timestamp``: an Ed25519 signature,
  checked with the account's public key, of ``timestamp + "|" + raw body``; the timestamp
  must be within ``tolerance_s`` of now (replays). Needs the ``cryptography`` package.
* **Plivo** ``X-Plivo-Signature-V3`` and ``X-Plivo-Signature-V3-Nonce``: base64
  HMAC-SHA256, keyed with the auth token, of ``base + "." + nonce``, where ``base`` is the
  URL without query, then ``?`` and the sorted query (``k=v`` joined by ``&``, followed by
  ``.`` when there are POST parameters), then the sorted POST parameters as ``name + value``;
  the header may hold several signatures separated by commas.

Every function here is pure: bytes and strings in, a verdict or text out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from xml.sax.saxutils import quoteattr

__all__ = [
    "StreamTokens",
    "plivo_signature",
    "plivo_xml",
    "telnyx_texml",
    "twilio_signature",
    "twiml",
    "verify_plivo",
    "verify_telnyx",
    "verify_twilio",
]

_XML = '<?xml version="1.0" encoding="UTF-8"?>'


# --- markup -----------------------------------------------------------------------------------


def _parameters(params: Mapping[str, str]) -> str:
    return "".join(f"<Parameter name={quoteattr(k)} value={quoteattr(v)}/>" for k, v in params.items())


def twiml(stream_url: str, params: Mapping[str, str]) -> str:
    """TwiML that connects the call to a bidirectional Media Stream with custom parameters.

    ``<Connect><Stream>`` is the bidirectional form; the call ends when the stream ends.
    Twilio allows no query string in the stream URL: parameters travel as ``<Parameter>``
    and come back in ``start.customParameters``.
    """
    return f"{_XML}<Response><Connect><Stream url={quoteattr(stream_url)}>{_parameters(params)}</Stream></Connect></Response>"


def telnyx_texml(stream_url: str, params: Mapping[str, str]) -> str:
    """TeXML (Telnyx's TwiML dialect) for a bidirectional RTP stream in PCMU."""
    return (f"{_XML}<Response><Connect><Stream url={quoteattr(stream_url)} bidirectionalMode=\"rtp\" "
            f"bidirectionalCodec=\"PCMU\">{_parameters(params)}</Stream></Connect></Response>")


def plivo_xml(stream_url: str, params: Mapping[str, str]) -> str:
    """Plivo XML for a bidirectional mu-law stream that keeps the call until it ends.

    ``extraHeaders`` allows only letters and digits, so parameters whose name or value has
    anything else are left out of it (the server keeps them anyway, see :class:`StreamTokens`).
    """
    extra = ",".join(f"{k}={v}" for k, v in params.items() if k.isalnum() and v.isalnum())[:512]
    attrs = 'bidirectional="true" keepCallAlive="true" contentType="audio/x-mulaw;rate=8000"'
    if extra:
        attrs += f" extraHeaders={quoteattr(extra)}"
    return f"{_XML}<Response><Stream {attrs}>{stream_url.replace('&', '&amp;')}</Stream></Response>"


# --- signatures -------------------------------------------------------------------------------


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str] | None = None) -> str:
    """The ``X-Twilio-Signature`` Twilio sends for a request to ``url`` with POST ``params``."""
    data = url + "".join(k + params[k] for k in sorted(params or {}))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_twilio(auth_token: str, url: str, params: Mapping[str, str] | None, signature: str | None) -> bool:
    """True when ``signature`` is Twilio's for this URL and these POST parameters."""
    if not signature or not auth_token:
        return False
    return hmac.compare_digest(twilio_signature(auth_token, url, params).encode(), signature.encode())


def plivo_signature(auth_token: str, url: str, nonce: str, params: Mapping[str, str] | None = None) -> str:
    """The ``X-Plivo-Signature-V3`` Plivo sends for a POST to ``url`` with ``params`` (GET: no params)."""
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    query = sorted(parse_qsl(parts.query, keep_blank_values=True))
    query_text = "&".join(f"{k}={v}" for k, v in query)
    params = params or {}
    if query_text or params:
        base += "?" + query_text
    if query_text and params:
        base += "."
    base += "".join(k + params[k] for k in sorted(params))
    digest = hmac.new(auth_token.encode(), f"{base}.{nonce}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_plivo(auth_token: str, url: str, params: Mapping[str, str] | None, nonce: str | None,
                 signature: str | None) -> bool:
    """True when one of the comma-separated ``signature`` s is Plivo's V3 signature of this request."""
    if not (auth_token and nonce and signature):
        return False
    expected = plivo_signature(auth_token, url, nonce, params).encode()
    return any(hmac.compare_digest(expected, s.strip().encode()) for s in signature.split(","))


def verify_telnyx(public_key_b64: str, body: bytes, timestamp: str | None, signature_b64: str | None, *,
                  now: float | None = None, tolerance_s: float = 300.0) -> bool:
    """True when ``signature_b64`` is Telnyx's Ed25519 signature of ``timestamp|body``, recent enough.

    Raises RuntimeError naming the fix when the ``cryptography`` package is missing.
    """
    if not (public_key_b64 and timestamp and signature_b64):
        return False
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        raise RuntimeError("verifying Telnyx signatures needs the cryptography package: "
                           "pip install 'voxpipe[telephony]' (or pip install cryptography)") from None
    try:
        ts = int(timestamp)
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64, validate=True))
        sig = base64.b64decode(signature_b64, validate=True)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    try:
        key.verify(sig, f"{timestamp}|".encode() + body)
    except InvalidSignature:
        return False
    return True


# --- stream tokens ----------------------------------------------------------------------------


class StreamTokens:
    """Signed, expiring, single-use path tokens for the media websocket of a verified webhook.

    ``key`` must be the same in every worker behind one load balancer (set
    ``VOXPIPE_TELEPHONY_SECRET``); the default is random per process. The facts of the call
    given at issue time (``params``) are kept until the stream opens or the token expires, at
    most ``max_pending`` of them; a token checked in another worker is valid but has no facts
    (then the provider's ``start`` message is the only source).
    """

    def __init__(self, key: bytes | None = None, *, ttl_s: float = 60.0, max_pending: int = 1024) -> None:
        self.key = key or secrets.token_bytes(32)
        self.ttl_s = ttl_s
        self.max_pending = max_pending
        self._pending: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._used: OrderedDict[str, float] = OrderedDict()

    def _sign(self, provider: str, expiry: int, nonce: str) -> str:
        mac = hmac.new(self.key, f"{provider}|{expiry}|{nonce}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac[:18]).decode("ascii")

    def issue(self, provider: str, facts: dict[str, Any], *, now: float | None = None) -> str:
        """A new token for ``provider``; ``facts`` come back from :meth:`redeem`."""
        now = time.time() if now is None else now
        expiry = int(now + self.ttl_s)
        nonce = secrets.token_urlsafe(9)
        token = f"{expiry}.{nonce}.{self._sign(provider, expiry, nonce)}"
        self._pending[nonce] = (expiry, facts)
        while len(self._pending) > self.max_pending:
            self._pending.popitem(last=False)
        return token

    def redeem(self, provider: str, token: str, *, now: float | None = None) -> dict[str, Any] | None:
        """The facts of a valid, unexpired, unused token (``{}`` if issued elsewhere); None when refused."""
        now = time.time() if now is None else now
        try:
            expiry_text, nonce, mac = token.split(".")
            expiry = int(expiry_text)
        except ValueError:
            return None
        if not hmac.compare_digest(self._sign(provider, expiry, nonce).encode(), mac.encode()):
            return None
        if expiry < now or nonce in self._used:
            return None
        self._used[nonce] = expiry
        while self._used and next(iter(self._used.values())) < now:
            self._used.popitem(last=False)
        while len(self._used) > 16 * self.max_pending:
            self._used.popitem(last=False)
        entry = self._pending.pop(nonce, None)
        return dict(entry[1]) if entry is not None else {}
