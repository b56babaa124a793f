"""Page navigation for AppTest: the dashboard's pages are functions, not files.

``app.py`` registers each page as ``st.Page(<module>.render, url_path=...)``, and
``AppTest.switch_page`` opens only pages that are files. ``goto`` asks for a page the way the
browser's navigation does, by the page hash ``st.navigation`` registered for its url_path.
"""

from __future__ import annotations

from streamlit.testing.v1 import AppTest
from streamlit.util import calc_hash


def goto(at: AppTest, url_path: str) -> AppTest:
    """Open the page at ``url_path`` ('' for Explore, 'compare', 'depth-sweep', 'learn') on the
    next run. After a run, the hash comes from the pages that run registered; before the first,
    it is the one ``st.Page`` derives from its url_path (a hash that matches no page would
    silently open the default page, so an unknown url_path fails here instead)."""
    registered = {info.get("url_pathname"): h for h, info in at._registered_pages.items()}
    if registered:
        assert url_path in registered, f"no page at {url_path!r}: {sorted(registered)}"
        at._page_hash = registered[url_path]
    else:
        assert url_path, "before the first run, Explore (the default page) is already the page"
        at._page_hash = calc_hash(url_path)
    return at
