"""The Streamlit dashboard: widgets -> ExperimentConfig -> backend -> figures. It draws only.

``app.py`` is the entry point (``make app``); ``views/`` holds one file per page; ``state.py`` and
``downloads.py`` are pure (no Streamlit) so that the URL and export logic is unit-testable;
``ui.py`` holds the Streamlit pieces every page shares (session and URL, sidebar, downloads),
``jobs.py`` the requests to the backend and their progress.
"""
