"""What ``make app`` serves: the dashboard (``app.py``) as a Streamlit ``App``, with one addition.

A page address is one path segment (``/compare``, ``/learn``); an unknown one shows Streamlit's
"Page not found". An address with a slash inside (``/a/b``, ``/<script>…</script>``) got an empty
page instead: the browser code looks for the server under the address's folders and never finds
it. ``OneSegmentPages`` redirects such an address to a one-segment one (slashes become ``-``),
which then meets the same "Page not found" as any other unknown page. Streamlit's own routes
(any path with a ``_stcore``, ``static``, ``media``, ``component`` or ``app`` segment) and every
request that is not a browser's page navigation pass untouched.

``streamlit run dashboard/app.py`` still works (tests, development); it only lacks the redirect.
"""

from __future__ import annotations

from urllib.parse import quote

import streamlit as st
from starlette.middleware import Middleware
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

RESERVED = frozenset({"_stcore", "static", "media", "component", "app", "-"})


class OneSegmentPages:
    """Redirect a page request whose path has several segments to a one-segment path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") in ("GET", "HEAD"):
            parts = [p for p in str(scope.get("path", "")).split("/") if p]
            accept = dict(scope.get("headers") or []).get(b"accept", b"")
            # Only a page the browser navigates to (it asks for HTML). The browser code probes
            # /<page>/_stcore/health to find the server: that must stay a plain 404.
            if len(parts) > 1 and b"text/html" in accept and not RESERVED.intersection(parts):
                target = "/" + quote("-".join(parts), safe="")
                await RedirectResponse(target, status_code=307)(scope, receive, send)
                return
        await self.app(scope, receive, send)


app = st.App("app.py", middleware=[Middleware(OneSegmentPages)])
