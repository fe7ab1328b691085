"""Who may act: the operator's token, a session after logging in with it, and a per-session
form token against cross-site requests.

Reading pages needs nothing (the dashboard binds to 127.0.0.1 unless told otherwise); every
action (resume, cancel, retry, fork) needs either ``Authorization: Bearer <token>`` (scripts;
no cookie, so no cross-site risk) or the session cookie set by logging in with the token *and*
the form's ``csrf`` field, an HMAC of the session that another site cannot read. A request
whose ``Origin`` names another host is refused either way."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request

COOKIE = "flowcraft_ui_session"
SESSION_LIMIT = 1000


class Guard:
    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("the dashboard's token must not be empty")
        self.token = token
        self._key = secrets.token_bytes(32)
        self._sessions: dict[str, None] = {}

    def login(self, given: str) -> str | None:
        """A new session id if ``given`` is the token, else None."""
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return None
        session = secrets.token_urlsafe(24)
        self._sessions[session] = None
        while len(self._sessions) > SESSION_LIMIT:
            self._sessions.pop(next(iter(self._sessions)))
        return session

    def logout(self, request: Request) -> None:
        self._sessions.pop(request.cookies.get(COOKIE, ""), None)

    def session(self, request: Request) -> str | None:
        session = request.cookies.get(COOKIE)
        return session if session in self._sessions else None

    def csrf(self, session: str | None) -> str:
        if session is None:
            return ""
        return hmac.new(self._key, session.encode(), hashlib.sha256).hexdigest()

    def refusal(self, request: Request, form_csrf: str | None) -> str | None:
        """Why this action request is refused, or None if it may act."""
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
            return f"a request from another site ({origin}) may not act"
        auth = request.headers.get("authorization", "")
        if auth.startswith("Bearer "):
            if hmac.compare_digest(auth[7:].encode(), self.token.encode()):
                return None
            return "the bearer token is wrong"
        session = self.session(request)
        if session is None:
            return "an action needs the dashboard's token: log in with it first"
        if not form_csrf or not hmac.compare_digest(form_csrf, self.csrf(session)):
            return "the form's cross-site token is missing or wrong: reload the page"
        return None
