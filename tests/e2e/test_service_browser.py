"""A person at the machine uses the deployed service in Chromium, through the firewall.

The browser opens 127.0.0.1:<port>, the lab's loopback forward, which enters
the lab as an outside client: every request crosses the firewall and the load
balancer. The person logs in, creates a quiz with an image, and reloads its
page until each of the three servers has served the image.
"""

import io
import os
import shutil
import time

import pytest


CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (namespaces, mounts)"),
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason="Chromium is not installed"),
]


@pytest.fixture(scope="module")
def url(deployed):
    _, result, _ = deployed
    return result.url.rstrip("/")


def png_bytes():
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (30, 120, 200)).save(buffer, "PNG")
    return buffer.getvalue()


def test_image_uploaded_in_the_browser_is_served_by_every_server(url, tmp_path):
    from playwright.sync_api import sync_playwright

    image = tmp_path / "capital.png"
    image.write_bytes(png_bytes())
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-background-networking", "--disable-gpu",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page()
            page.set_default_timeout(15000)
            page.goto(url + "/session")
            page.fill("#login", "pepe")
            page.fill("#password", "5678")
            page.click("input[name=commit]")
            page.goto(url + "/quizzes/new")
            page.fill("[name=question]", "Capital of Lab?")
            page.fill("[name=answer]", "Namespace")
            page.set_input_files("[name=image]", str(image))
            page.locator("form[enctype='multipart/form-data'] [type=submit]").first.click()
            page.wait_for_url("**/quizzes/*")
            quiz_page = page.url

            cdp = page.context.new_cdp_session(page)
            cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
            served = set()
            page.on("response", lambda r: "/uploads/" in r.url and r.status == 200
                    and served.add(r.headers.get("x-server")))
            deadline = time.monotonic() + 60
            for attempt in range(30):
                # The quiz page shows the picture...
                page.goto(quiz_page)
                page.wait_for_load_state("load")
                image_url = page.evaluate(
                    "() => [...document.images].map(i => i.src).find(s => s.includes('/uploads/'))")
                width = page.evaluate(
                    "() => Math.max(0, ...[...document.images]"
                    ".filter(i => i.src.includes('/uploads/')).map(i => i.naturalWidth))")
                assert width == 40
                # ...and the person opens the picture itself. Chromium would answer a
                # repeated URL from its memory cache, so each visit asks for it anew.
                page.goto(f"{image_url}?visit={attempt}")
                if served >= {"s1", "s2", "s3"} or time.monotonic() > deadline:
                    break
            assert served == {"s1", "s2", "s3"}
        finally:
            browser.close()
