"""The report's HTML opens in headless Chromium with the map picture shown (no root, no lab)."""

import shutil

import pytest

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Chromium is not installed")


def test_the_report_opens_with_the_map_drawn(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not shutil.which("dot"):
        pytest.skip("graphviz is not installed")
    from quizstack import report
    from quizstack.topology import load_scenario

    report.write(load_scenario("pfinal"), tmp_path)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-background-networking", "--disable-gpu",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page()
            page.set_default_timeout(15000)
            page.goto((tmp_path / "report.html").as_uri())
            assert page.locator("h1").inner_text().startswith("QUIZ on scenario pfinal")
            picture = page.locator("img[src='map.svg']")
            picture.wait_for()
            # Drawn: the browser loaded and decoded the SVG, and it has a size on the page.
            assert page.evaluate("(img) => img.complete && img.naturalWidth > 0", picture.element_handle())
            box = picture.bounding_box()
            assert box and box["width"] > 100 and box["height"] > 50
            assert page.locator("h3#lb").count() == 1
        finally:
            browser.close()
