"""ASGI middleware: what every request passes before any route sees it.

Order, outermost first: security headers → CORS → the guard (API key, checked from
the headers before one byte of the body is read; a cap on concurrent uploads) → the
body limit (size and a deadline for slow senders). `header_timeout_protocol` closes
connections that do not finish their request headers in time (uvicorn has no such
timeout of its own) and refuses oversized headers."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
from pathlib import Path

from fastapi.responses import JSONResponse

from .chat import MAX_BODY_BYTES as CHAT_MAX_BODY_BYTES

STATIC = Path(__file__).parent / "static"


def error(status: int, message: str, kind: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "status": status}}, status_code=status, headers=headers)


# a 413 for a body too large is sent after the body is drained (read and dropped, never kept) up to this many
# bytes: a client that sends its whole body before reading the reply (Python's urllib, which also asks the server
# to close) otherwise finds the connection reset under its last bytes and never sees the 413. The key's 401 and
# the uploads' 429 still read nothing (a client without the key gets no say over the server's reading)
DRAIN_MAX = 64 * 1024 * 1024
DRAIN_TIMEOUT_S = 30.0


async def refuse_unread(response, scope, receive, send, declared: int | None = None) -> None:
    """Send `response` to a request whose body was not read: drop the body first, as it arrives, unless the
    client waits for "100 Continue" (curl for large bodies: it then never sends the body), or says it sends
    more than DRAIN_MAX, or is slower than DRAIN_TIMEOUT_S: then the connection is closed after the reply."""
    headers = dict(scope.get("headers") or [])
    waits = headers.get(b"expect", b"").lower() == b"100-continue"
    if declared is None:
        size = headers.get(b"content-length")
        declared = int(size) if size is not None and size.isdigit() else None
    if not waits and (declared is None or 0 < declared <= DRAIN_MAX):
        seen = 0
        try:
            async with asyncio.timeout(DRAIN_TIMEOUT_S):
                while seen <= DRAIN_MAX:
                    msg = await receive()
                    if msg["type"] != "http.request":
                        return  # the client went away: nobody to answer
                    seen += len(msg.get("body", b""))
                    if not msg.get("more_body", False):
                        break
        except TimeoutError:
            pass
    await response(scope, receive, send)


def _path(scope) -> str:
    return scope.get("path", "").rstrip("/") or "/"


def is_upload(scope) -> bool:
    return _path(scope) == "/documents" and scope.get("method") == "POST"


# ------------------------------------------------------------------ guard
OPEN_PATHS = ("/healthz",)
PAGE_SHELLS = ("/", "/favicon.ico")  # static shells that hold no data: the page asks for the key itself


def access(scope, settings) -> str | None:
    """'write', 'read' or None (open) for a request."""
    path, method = _path(scope), scope.get("method", "GET")
    if method == "OPTIONS" or path in OPEN_PATHS:
        return None
    if path.startswith("/documents") and method not in ("GET", "HEAD"):
        return "write"
    if not settings.require_key_for_reads:
        return None
    if path in PAGE_SHELLS or path.startswith("/view/") or path.startswith("/static-offline-docs/"):
        return None
    return "read"  # the API, and /docs, /redoc, /openapi.json


def presented_key(headers: dict[bytes, bytes]) -> bytes | None:
    key = headers.get(b"x-api-key")
    auth = headers.get(b"authorization", b"")
    if key is None and auth[:7].lower() == b"bearer ":
        key = auth[7:].strip()
    return key


class Guard:
    """The API key, from the headers, before the body is read; at most N uploads at once."""

    def __init__(self, app, settings, state):
        self.app, self.settings, self.state = app, settings, state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        need = access(scope, self.settings)
        if need is not None:
            refused = self.refuse(need, dict(scope.get("headers") or []))
            if refused is not None:
                return await refused(scope, receive, send)
        if not is_upload(scope):
            return await self.app(scope, receive, send)
        if self.state.uploads >= self.settings.max_concurrent_uploads:
            return await error(429, f"{self.state.uploads} uploads are being indexed; try again shortly "
                               "(QA_MAX_CONCURRENT_UPLOADS)", "too_many_uploads", {"Retry-After": "5"})(scope, receive, send)
        self.state.uploads += 1
        try:
            return await self.app(scope, receive, send)
        finally:
            self.state.uploads -= 1

    def refuse(self, need: str, headers: dict[bytes, bytes]):
        key = self.settings.api_key
        if not key:
            if need == "write":
                return error(403, "adding and removing documents is disabled: start the server with QA_API_KEY set", "Forbidden")
            return error(403, "QA_REQUIRE_KEY_FOR_READS is set but QA_API_KEY is not", "Forbidden")
        given = presented_key(headers)
        challenge = {"WWW-Authenticate": "Bearer"}
        if given is None:
            return error(401, "this endpoint needs the API key (header X-API-Key or Authorization: Bearer)", "Unauthorized",
                         challenge)
        if not hmac.compare_digest(given, key.encode("ascii")):
            return error(401, "wrong API key", "Unauthorized", challenge)
        return None


# ------------------------------------------------------------- body limit
def replaying(body: bytes, receive):
    """An ASGI `receive` that hands the app a body already read, in one message, then defers to `receive`."""
    replayed = False

    async def replay():
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class BodyLimit:
    """Refuse request bodies over the limit, whether or not they declare a Content-Length
    (a chunked body is counted as it arrives), and bodies that arrive too slowly (408)."""

    def __init__(self, app, limit: int, upload_limit: int, timeout: float = 60.0):
        self.app, self.default_limit, self.upload_limit, self.timeout = app, limit, upload_limit, timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        upload = is_upload(scope)
        limit = self.upload_limit + 64 * 1024 if upload else self.default_limit  # room for the multipart framing
        what = "upload" if upload else "request body"
        message = f"{what} too large (limit {limit if not upload else self.upload_limit} bytes)"
        if _path(scope) == "/v1/chat/completions":
            # frontends send the whole chat and tool definitions each turn; only the last turns are read
            limit = max(self.default_limit, CHAT_MAX_BODY_BYTES)
            message = f"chat request too large (limit {limit} bytes): start a new chat"
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and not declared.isdigit():
            return await error(400, "Content-Length is not a number", "bad_request", {"Connection": "close"})(scope, receive, send)
        if declared is not None and int(declared) > limit:
            return await refuse_unread(error(413, message, "payload_too_large"), scope, receive, send, int(declared))
        # buffer the body (bounded by the limit) so an oversized one is refused before the app sees it;
        # one deadline for the whole body (asyncio.timeout, not a wait_for task per message)
        chunks, seen, more = [], 0, True
        try:
            async with asyncio.timeout(self.timeout):
                while more:
                    msg = await receive()
                    if msg["type"] != "http.request":
                        return  # the client went away
                    chunks.append(msg.get("body", b""))
                    seen += len(chunks[-1])
                    more = msg.get("more_body", False)
                    if seen > limit:
                        break
        except TimeoutError:
            return await error(408, f"the request body did not arrive within {self.timeout:g} s", "request_timeout",
                               {"Connection": "close"})(scope, receive, send)
        if seen > limit:
            # the rest of a body sent without a length (chunked) is dropped as it arrives, as above
            return await refuse_unread(error(413, message, "payload_too_large"), scope, receive, send) if more \
                else await error(413, message, "payload_too_large")(scope, receive, send)
        return await self.app(scope, replaying(b"".join(chunks), receive), send)


# ------------------------------------------------------------------ HEAD
class HeadAsGet:
    """HEAD is answered as GET without the body (RFC 9110: the same headers, Content-Length included), so
    uptime monitors and link checkers that send HEAD to /healthz or / get 200, not 405."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "HEAD":
            return await self.app(scope, receive, send)

        async def headers_only(message):
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return  # the rest of a streamed body is not sent either
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        return await self.app({**scope, "method": "GET"}, receive, headers_only)


# -------------------------------------------------------- security headers
def _inline_hashes(*files: Path) -> str:
    out = []
    for f in files:
        try:
            html = f.read_text(encoding="utf-8")
        except OSError:
            continue
        for body in re.findall(r"<script>(.*?)</script>", html, re.S):
            out.append("'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'")
    return " ".join(out)


def page_policy(script: str) -> str:
    return (f"default-src 'self'; script-src 'self' {script}; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "connect-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'")


API_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"


class SecurityHeaders:
    """nosniff, no framing, no referrer on every response; a CSP: the pages may run only
    their own scripts (by hash), the API's JSON nothing at all."""

    def __init__(self, app):
        self.app = app
        self.pages = page_policy(_inline_hashes(STATIC / "index.html", STATIC / "document.html"))
        self.docs = page_policy("'unsafe-inline'")  # Swagger UI / ReDoc pages of fastapi-offline start with inline code

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = _path(scope)

        async def with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                ctype = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                if ctype.startswith(b"text/html"):
                    policy = self.docs if path in ("/docs", "/redoc") or path.startswith("/docs/") else self.pages
                else:
                    policy = API_POLICY
                headers += [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                            (b"referrer-policy", b"no-referrer"), (b"content-security-policy", policy.encode())]
                message = {**message, "headers": headers}
            await send(message)

        return await self.app(scope, receive, with_headers)


# ------------------------------------------------------- header timeout
MAX_HEADER_BYTES = 16 * 1024  # request line and headers together, as h11's default event size


def header_timeout_protocol(seconds: float, max_header_bytes: int = MAX_HEADER_BYTES):
    """uvicorn's httptools protocol (the C parser; uvicorn's h11 costs ~0.3 ms more per request
    here, issue 14) with what it lacks against slow and bloated clients: a deadline for a
    request's headers (a connection that opens and sends nothing, or sends its headers a byte
    at a time, is closed) and a cap on their size (400 with a JSON error, as h11's own cap gave 400)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class GuardedHttpTools(HttpToolsProtocol):
        _header_timer = None
        _header_bytes = 0

        def _arm(self):
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(seconds, self._header_timeout)

        def _disarm(self):
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_timeout(self):
            self._header_timer = None
            if self.cycle is None or self.cycle.response_complete:
                self.transport.close()

        def connection_made(self, transport):
            super().connection_made(transport)
            self._arm()  # the first request's headers must arrive in time

        def on_message_begin(self):
            self._arm()  # a (next) request has begun: its headers must arrive in time
            super().on_message_begin()

        def data_received(self, data):
            waiting = self._header_timer is not None
            if waiting:
                self._header_bytes += len(data)
            super().data_received(data)
            # still waiting for the end of the headers after this data: all of it was header bytes
            if waiting and self._header_timer is not None and self._header_bytes > max_header_bytes \
                    and not self.transport.is_closing():
                self._refuse_headers()

        def _refuse_headers(self):
            """400 with the service's JSON error body (uvicorn's own 400 is plain text), then close."""
            body = json.dumps({"error": {"message": f"request headers too large (limit {max_header_bytes} bytes)",
                                         "type": "headers_too_large", "status": 400}}).encode()
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
                                 b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))
            self.transport.close()

        def on_headers_complete(self):
            self._header_bytes = 0
            self._disarm()  # headers complete: the body has its own deadline (BodyLimit)
            super().on_headers_complete()

        def connection_lost(self, exc):
            self._disarm()
            super().connection_lost(exc)

    return GuardedHttpTools
