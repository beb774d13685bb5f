"""What every browser test and benchmark shares: Debian's Chromium (never a downloaded browser), a real
`streamlit run` on a free loopback port, and a Playwright page."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.fixtures_app import free_port, stop_process

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def chromium_or_skip() -> str:
    """The browser's path; a missing one fails under CI=true (CI runs every test) and skips elsewhere."""
    if not Path(CHROMIUM).exists():
        why = f"{CHROMIUM} is missing: `make test` installs it (as root), or `sudo apt-get install chromium`"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(why)
        pytest.skip(why)
    return CHROMIUM


@contextlib.contextmanager
def streamlit_server(script: str, env: dict, log_path: Path, start_timeout_s: float = 60):
    """`streamlit run script` (relative to the repository) with ``env``; yields (url, process)."""
    port = free_port()
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", script, "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout_s
        while not _healthy(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("streamlit did not start:\n" + Path(log_path).read_text()[-3000:])
            time.sleep(0.25)
        yield url, proc
    finally:
        stop_process(proc)
        log.close()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def chromium_page(path: str = CHROMIUM, width: int = 1280, height: int = 800):
    """A fresh headless Chromium page of ``width`` x ``height``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": width, "height": height})
        pg = context.new_page()
        pg.set_default_timeout(30_000)
        try:
            yield pg
        finally:
            context.close()
            browser.close()
