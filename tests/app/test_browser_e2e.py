"""End to end: the real Streamlit server, driven by headless Chromium through Playwright.

Starts ``streamlit run dashboard/serve.py`` (what ``make app`` serves) on a free port with its own
cache directory, opens the Explore page with small settings, waits for the spectrum, changes the
source depth and the input transformation in the sidebar, waits for the new spectrum; then opens
the pages a new user meets (a failed request, the Depth sweep, no saved sweeps, Learn, an unknown
path) and saves screenshots of each under ``artifacts/browser/`` (or ``$REPROG_ARTIFACTS_DIR``).

Chromium comes from Debian (``make browser`` installs it as root); Playwright's own browser
download cannot work offline. Without Chromium the test is skipped and says why.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("REPROG_ARTIFACTS_DIR") or ROOT / "artifacts") / "browser"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Small but real computations: a one-epoch source model on 20 images per class, 20 fit steps.
# The pixel pair (tests/configs.PIXEL), tiny; SMALL: the pretrained default with a short fit.
PIXEL_URL = "source_family=cnn&source_size=32&target=digits&transform=fc"
FAST = (
    f"{PIXEL_URL}&steps=20&n_kernel=16&source_per_class=20&source_epochs=1&eval_every=5"
    "&target_per_class=20"
)
SMALL = "steps=20&n_kernel=16&eval_every=5&target_per_class=20"
RESULT_TIMEOUT_MS = 600_000  # a shared 2-core machine under load: a cold result can take minutes

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        reason = (
            "chromium is not installed: the browser test needs Debian's chromium "
            "(`make browser` installs it when run as root)"
        )
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "playwright is not installed (it is in requirements-dev.txt)"
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real dashboard server on 127.0.0.1 with an empty cache; yields its base URL."""
    _chromium()
    port = _free_port()
    tmp = tmp_path_factory.mktemp("e2e")
    env = {
        **os.environ,
        "REPROG_CACHE_DIR": str(tmp / "cache"),
        "REPROG_THREADS": os.environ.get("REPROG_THREADS", "2"),
        "HF_HUB_OFFLINE": "1",
        "REPROG_SWEEPS_DIR": str(tmp / "sweeps"),  # none saved: the page says so
    }
    log = open(tmp / "server.log", "w")  # closed in the finally below
    cmd = [
        sys.executable, "-m", "streamlit", "run", "dashboard/serve.py",
        "--server.headless", "true", "--server.address", "127.0.0.1",
        "--server.port", str(port), "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise RuntimeError(
                    f"the server did not start:\n{(tmp / 'server.log').read_text()[-3000:]}"
                )
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _wait_for_chart(page: Any, title: str, timeout_ms: int = RESULT_TIMEOUT_MS) -> Any:
    """The plotly chart whose title contains ``title``, once drawn."""
    chart = page.locator(".js-plotly-plot", has_text=title).first
    chart.wait_for(state="visible", timeout=timeout_ms)
    return chart


def test_explore_change_depth_and_transform(server: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            # The transform is in the URL: the test moves it from vp to fc, whatever the default.
            page.goto(f"{server}/?{FAST}&transform=vp", wait_until="domcontentloaded")

            # A cold run shows its progress and its stages as they arrive (the source card, the
            # spectrum), then the fit, whose panel names the transform.
            expect(page.get_by_text("padding visual prompt (vp) ·").first).to_be_visible(
                timeout=RESULT_TIMEOUT_MS
            )
            _wait_for_chart(page, "Eigenvalue spectrum of the target NTK")
            # The metric row is redrawn with the result: a shot taken before shows placeholders.
            expect(page.get_by_text("target acc. (fit)").first).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "explore-default.png"), full_page=True)

            # Depth 3 -> 2 with the arrow key (the slider thumb is a visually hidden range input).
            thumb = page.locator(".st-key-cfg-depth input[type='range']")
            thumb.focus()
            thumb.press("ArrowLeft")
            expect(thumb).to_have_value("2")
            page.wait_for_url("**depth=2**", timeout=30_000)

            # Transform vp -> fc through the selectbox.
            page.locator(".st-key-cfg-transform input").click()
            page.get_by_role("option", name="fully connected layer (fc)").click()
            page.wait_for_url(lambda url: "transform=vp" not in url, timeout=30_000)
            assert "depth=2" in page.url and "steps=20" in page.url

            # The new result: its fit panel names fc, and the spectrum is drawn again.
            expect(page.get_by_text("fully connected layer (fc) ·").first).to_be_visible(
                timeout=RESULT_TIMEOUT_MS
            )
            spectrum = _wait_for_chart(page, "Eigenvalue spectrum of the target NTK")
            expect(spectrum).to_contain_text("trace form")
            spectrum.screenshot(path=str(ARTIFACTS / "spectrum-depth2-fc.png"))
            # Streamlit scrolls inside its own container, so "full page" is the viewport: make it
            # tall enough for the whole Explore page.
            page.set_viewport_size({"width": 1440, "height": 3600})
            page.wait_for_timeout(1000)
            page.screenshot(path=str(ARTIFACTS / "explore-depth2-fc.png"))
        finally:
            browser.close()
    for name in ("explore-default.png", "explore-depth2-fc.png", "spectrum-depth2-fc.png"):
        assert (ARTIFACTS / name).stat().st_size > 10_000
    print(f"screenshots in {ARTIFACTS}")


def test_the_default_pages_show_the_pretrained_model(server: str) -> None:
    """The default Explore and Compare, with a short fit: the ImageNet model reprogrammed to
    MNIST, and the same model with random weights beside it (screenshots to look at)."""
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(f"{server}/?{SMALL}", wait_until="domcontentloaded")
            _wait_for_chart(page, "Reprogramming fit")
            # (the source card is a data grid drawn on a canvas: its text is not in the page)
            expect(page.get_by_text("source top-1").first).to_be_visible()
            expect(page.get_by_text("kernel regression").first).to_be_visible()
            _tall(page, "explore-pretrained.png", 4400)
            page.goto(f"{server}/compare?{SMALL}", wait_until="domcontentloaded")
            # Both columns computed: the verdict on the statistics is drawn, then the overlay.
            verdict = page.get_by_text("Ranked by the gain over their own baseline").first
            expect(verdict).to_be_visible(timeout=RESULT_TIMEOUT_MS)
            spectra = _wait_for_chart(page, "spectra, overlaid")
            expect(spectra).to_contain_text("weights random")
            _tall(page, "compare-pretrained-vs-random.png", 4000)
        finally:
            browser.close()
    for name in ("explore-pretrained.png", "compare-pretrained-vs-random.png"):
        assert (ARTIFACTS / name).stat().st_size > 10_000


def _tall(page: Any, name: str, height: int = 3000) -> None:
    """Streamlit scrolls inside its own container: a tall viewport shows the whole page."""
    page.set_viewport_size({"width": 1440, "height": height})
    page.wait_for_timeout(1500)
    page.screenshot(path=str(ARTIFACTS / name))
    page.set_viewport_size({"width": 1440, "height": 1000})


def test_what_a_new_user_meets(server: str) -> None:
    """The pages a new user opens, each saved as a screenshot to look at: a failed request (its
    error, no 'Computing' box), the Depth sweep (computed on a click), saved sweeps when there
    are none (no server path), the Learn page and an unknown path with a script tag in it."""
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})

            # A request that fails (no local copy of CIFAR-10): the error replaces the progress.
            page.goto(f"{server}/?{FAST}&source_data=cifar10&seed=11")
            expect(page.get_by_text("could not be computed").first).to_be_visible(
                timeout=RESULT_TIMEOUT_MS
            )
            page.wait_for_timeout(2500)  # a frozen box would still be there now
            expect(page.get_by_text("Computing: the source model")).to_have_count(0)
            expect(page.locator("[data-testid='stProgress']")).to_have_count(0)
            page.screenshot(path=str(ARTIFACTS / "failed-request.png"))

            # Saved sweeps when there are none: a relative name, never the server's path.
            page.goto(f"{server}/depth-sweep?source=saved")
            expect(page.get_by_text("No saved sweeps in").first).to_be_visible(timeout=60_000)
            text = page.locator("[data-testid='stMain']").inner_text()
            assert str(ROOT) not in text and "/tmp" not in text, text
            page.screenshot(path=str(ARTIFACTS / "saved-sweep-empty.png"))

            page.goto(f"{server}/learn")
            _wait_for_chart(page, "squared loss during gradient descent")
            _wait_for_chart(page, "relative error vs width")
            _tall(page, "learn.png", 4200)

            # An unknown path with a script tag (and so a slash) in it: "Page not found", like
            # any other unknown path, never an empty page.
            page.goto(f"{server}/<script>alert(1)</script>")
            expect(page.get_by_text("Page not found").first).to_be_visible(timeout=60_000)
            page.wait_for_timeout(1000)
            page.screenshot(path=str(ARTIFACTS / "unknown-script-path.png"))

            # Depth sweep: two vp points (fast), computed on a click.
            page.goto(f"{server}/depth-sweep?{FAST}&transforms=vp&depths=1,2")
            button = page.get_by_role("button", name="missing points")
            button.wait_for(timeout=180_000)
            button.click()
            expect(page.get_by_text("2 of 2 points ready")).to_be_visible(timeout=RESULT_TIMEOUT_MS)
            _wait_for_chart(page, "Target accuracy against source depth")
            _wait_for_chart(page, "against target accuracy")
            _tall(page, "depth-sweep.png", 3400)
        finally:
            browser.close()
    for name in ("failed-request.png", "depth-sweep.png", "saved-sweep-empty.png", "learn.png"):
        assert (ARTIFACTS / name).stat().st_size > 10_000
