"""The built docs site (``make docs``, run by ``make test`` before pytest) works offline and from
disk: no page loads anything from the network, search answers on a ``file://`` page in a real
browser, and the notebooks are pages that show their outputs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "build" / "site"
CHROMIUM = "/usr/bin/chromium"

#: an attribute or CSS url() that points off the machine (http://, https:// or protocol-relative)
_REMOTE = re.compile(r"""(?:\b(?:src|href)\s*=\s*["']|url\(\s*["']?)((?:https?:)?//[^"')\s]+)""", re.I)
#: links a reader may follow are fine; what the page *loads* is not
_LOADED = re.compile(r"""<(?:script|img|iframe|source|audio|video)\b[^>]*\bsrc\s*=\s*["']((?:https?:)?//[^"']+)"""
                     r"""|<link\b[^>]*\bhref\s*=\s*["']((?:https?:)?//[^"']+)""", re.I)


@pytest.fixture(scope="module")
def site() -> Path:
    if not (SITE / "index.html").exists():
        pytest.fail("build/site is missing: run `make docs` first (make test does)")
    return SITE


#: script loaders that build a remote URL in JavaScript (nbconvert's widget renderer, fonts)
_CDN = re.compile(r"https?://(?:unpkg\.com|cdn\.jsdelivr\.net|cdnjs\.cloudflare\.com|fonts\.googleapis\.com)[^\s\"']*")


def test_no_page_loads_anything_from_the_network(site):
    loaded = {}
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8", errors="replace")
        for match in _LOADED.finditer(text):
            loaded.setdefault(match.group(1) or match.group(2), page.relative_to(site))
        for match in _CDN.finditer(text):
            # nbconvert's page template imports mermaid only for a page with mermaid diagrams
            if "/mermaid" in match.group(0) and 'class="jp-Mermaid' not in text:
                continue
            loaded.setdefault(match.group(0), page.relative_to(site))
    for sheet in site.rglob("*.css"):
        for match in _REMOTE.finditer(sheet.read_text(encoding="utf-8", errors="replace")):
            if match.group(0).lower().startswith("url("):
                loaded.setdefault(match.group(1), sheet.relative_to(site))
    assert not loaded, f"pages load from the network (the site must work offline): {loaded}"


def test_notebooks_are_pages_with_their_outputs(site):
    tour = (site / "notebooks" / "01-tour.html").read_text(encoding="utf-8")
    assert "in the child: {&#39;alice&#39;: 3, &#39;bob&#39;: 5, &#39;carol&#39;: 7}" in tour or \
        "in the child: {'alice': 3, 'bob': 5, 'carol': 7}" in tour
    assert re.search(r"counter \(id \d+, pid \d+\) exited 0", tour), "late --bg output is missing from the page"
    fork = (site / "notebooks" / "08-fork-by-hand.html").read_text(encoding="utf-8")
    assert "child, after dup2:" in fork and "<svg" in fork  # output and the fd-table diagram
    assert (site / "notebooks" / "solutions" / "08-fork-by-hand-solutions.html").exists()


def test_search_works_from_disk(site):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make chromium` installs it")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            remote = []
            page.on("request", lambda r: remote.append(r.url) if r.url.startswith(("http:", "https:")) else None)
            page.goto((site / "notebooks" / "01-tour.html").as_uri())
            page.locator("label.md-search__icon, .md-search__input").first.click()
            page.locator("input.md-search__input").press_sequentially("zombie", delay=30)
            page.wait_for_selector(".md-search-result__item", timeout=30_000)
            titles = page.locator(".md-search-result__item h1, .md-search-result__item h2").all_inner_texts()
        finally:
            browser.close()
    assert any("zombie" in title.lower() for title in titles), titles
    assert not remote, f"the page asked the network for {remote}"
