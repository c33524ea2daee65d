"""The HTML leaderboard in a real browser: Debian's chromium driven by Playwright (no download).

Checks that the page renders, the metric switcher changes the shown matrix, clicking a column
header sorts the rows, every image decodes, and a screenshot is not blank. Without
/usr/bin/chromium the test skips, except under CI=true where it fails (CI must install it:
``apt-get install -y chromium``).
"""

from __future__ import annotations

import importlib.util
import io
import os
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"]

pytestmark = pytest.mark.browser


def _records_helper():
    """tests/test_leaderboard.py's record builder (loaded by path: tests/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "_leaderboard_records", Path(__file__).with_name("test_leaderboard.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def page_and_values(tmp_path_factory):
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} missing under CI: `apt-get install -y chromium`")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright  # a test dependency: missing = failure

    from bench.leaderboard import render

    helper = _records_helper()
    root = tmp_path_factory.mktemp("results")
    values = helper.write_board_dir(root)
    out = root.parent / "board.html"
    render(root, fmt="html", metric="auroc", out=out)
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium_profile")), executable_path=str(CHROMIUM),
            headless=True, args=ARGS, viewport={"width": 1280, "height": 900})
        try:
            # Any request leaving the file would mean the page is not self-contained.
            external: list[str] = []

            def guard(route) -> None:
                if route.request.url.startswith(("file:", "data:")):
                    route.continue_()
                else:
                    external.append(route.request.url)
                    route.abort()

            ctx.route("**/*", guard)
            page = ctx.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(out.as_uri())
            page.wait_for_load_state("load")
            yield page, values, helper, errors, external
        finally:
            ctx.close()


def _visible_matrix_text(page) -> str:
    return page.locator("table.matrix:visible").first.inner_text()


def test_page_renders_without_errors(page_and_values):
    page, _, _, errors, external = page_and_values
    assert page.title() == "shiftbench leaderboard"
    assert page.locator("table.matrix:visible").count() == 1
    assert page.locator("table.matrix:visible").first.get_attribute("id") == "matrix-0-auroc"
    assert errors == [] and external == []


def test_metric_switcher_changes_the_table(page_and_values):
    page, values, helper, _, _ = page_and_values
    before = _visible_matrix_text(page)
    page.select_option("select#metric", "fpr95")
    after = _visible_matrix_text(page)
    assert after != before
    assert page.locator("table.matrix:visible").first.get_attribute("id") == "matrix-0-fpr95"
    want = np.array([values[("msp", "svhn", s)]["fpr95"] for s in (0, 1)])
    assert f"{100 * want.mean():.1f}±{100 * want.std(ddof=1):.1f}" in after
    page.select_option("select#metric", "auroc")
    assert _visible_matrix_text(page) == before


def test_clicking_a_header_sorts_rows(page_and_values):
    page, values, helper, _, _ = page_and_values
    page.select_option("select#metric", "auroc")
    table = page.locator("table.matrix:visible").first
    header = table.locator('th[data-col="svhn"]')

    def detectors() -> list[str]:
        return [t.strip() for t in table.locator("tbody tr td:first-child").all_inner_texts()]

    def svhn_mean(det: str) -> float:
        return float(np.mean([values[(det, "svhn", s)]["auroc"] for s in (0, 1)]))

    header.click()  # first click: best (highest AUROC) first
    assert detectors() == sorted(helper.DETECTORS, key=svhn_mean, reverse=True)
    header.click()  # second click reverses
    assert detectors() == sorted(helper.DETECTORS, key=svhn_mean)
    table.locator('th[data-col="detector"]').click()
    assert detectors() == sorted(helper.DETECTORS)


def test_images_load_and_screenshot_is_not_blank(page_and_values):
    page, _, _, _, _ = page_and_values
    widths = page.eval_on_selector_all(
        "img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : -1)")
    assert len(widths) >= 10
    assert all(w > 0 for w in widths), widths
    from PIL import Image

    shot = np.asarray(Image.open(io.BytesIO(page.screenshot(full_page=False))).convert("RGB"),
                      dtype=np.float64)
    assert shot.shape[0] > 100 and shot.shape[1] > 100
    assert shot.var() > 0
    # ... and not a single colour apart from a few pixels: the tables are drawn
    assert len(np.unique(shot.reshape(-1, 3), axis=0)) > 20


@pytest.mark.parametrize("width", [1280, 800])
def test_matrix_fits_the_page_width(page_and_values, width):
    # the visible matrix (6 shift columns with spec headers such as gaussian_noise(severity=1))
    # needs no sideways scrolling even in an 800 px window: headers wrap at their parts, cells
    # between value and interval, and the page itself never scrolls sideways
    page, *_ = page_and_values
    page.set_viewport_size({"width": width, "height": 900})
    try:
        page.select_option("#metric", "auroc")
        sizes = page.eval_on_selector(
            "table.matrix:visible",
            "t => [t.scrollWidth, t.parentElement.clientWidth,"
            " document.documentElement.scrollWidth, window.innerWidth]")
        table_w, box_w, page_w, view_w = sizes
        assert table_w <= box_w, sizes
        assert page_w <= view_w, sizes
        clipped = page.eval_on_selector_all(
            "table.matrix:visible th",
            "ths => ths.filter(h => h.scrollWidth > h.clientWidth + 1).map(h => h.textContent)")
        assert clipped == []
    finally:
        page.set_viewport_size({"width": 1280, "height": 900})
