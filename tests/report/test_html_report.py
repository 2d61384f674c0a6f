"""The HTML report is one self-contained page that a real browser renders: charts and totals.

Chromium (Debian's ``chromium``; scripts/test installs it under CI=true) renders
the file headless, takes a screenshot and dumps the DOM it built. Without a
browser the test skips, except under CI=true, where that is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tests.report.conftest import Books, walletd
from tests.report.test_spend_report import _history

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _chromium() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("CI=true: chromium is missing (scripts/test installs it)")
    pytest.skip("no chromium: apt-get install chromium")


def _headless(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        f"--user-data-dir={profile}", *args,
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False)


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_html_report_renders_in_headless_chromium_with_charts_and_totals(
    sqlite_books: Books, tmp_path: Path
) -> None:
    browser = _chromium()
    _history(sqlite_books)
    page = tmp_path / "report.html"
    walletd("spend-report", "--db-url", sqlite_books.url, "--format", "html", "--out", str(page),
            "--group-by", "client", "--group-by", "model", check=True)  # fmt: skip
    html = page.read_text()
    for external in ("<script", "<link", "src=", "url(", "@import"):
        assert external not in html, f"not self-contained: {external}"
    shot = tmp_path / "report.png"
    proc = _headless(browser, tmp_path / "profile", f"--screenshot={shot}",
                     "--window-size=1200,1600", page.as_uri())  # fmt: skip
    assert shot.exists(), proc.stderr[-2000:]
    assert _png_size(shot) == (1200, 1600)
    assert shot.stat().st_size > 20_000  # a blank page compresses to a few hundred bytes
    dom = _headless(browser, tmp_path / "profile", "--dump-dom", page.as_uri()).stdout
    assert len(re.findall(r'<svg[^>]*class="chart spend-over-time"', dom)) == 2  # alpha, beta
    assert re.search(r'<svg[^>]*class="chart payees"', dom)
    assert re.search(r'<svg[^>]*class="chart models"', dom)
    assert re.search(r'<svg[^>]*class="chart refusals"', dom)
    assert dom.count('class="bar"') >= 6
    totals = re.search(r'<div class="cards" id="totals">(.*?)</div></div></div>', dom)
    assert totals is not None
    for ident, amount in (("settled", "0.004000"), ("pending", "0.007500"),
                          ("refused", "0.013000"), ("confirmed", "0.003000")):  # fmt: skip
        card = re.search(rf'id="total-{ident}"><div class="n">([0-9.]+)</div>', dom)
        assert card is not None and card.group(1) == amount, ident
    assert "Ledger audit: hash chain verified" in dom
    assert "BUDGET_EXCEEDED" in dom
    assert '<tr class="total">' in dom
    keep = os.environ.get("WALLETD_TEST_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)
