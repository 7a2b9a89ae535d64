"""A person uses QUIZ in a real browser: headless Chromium against gunicorn and PostgreSQL.

pepe logs in, writes a question with a picture, sees the picture, plays the
question (a right and a wrong answer), stars it, then plays the random game
to its end.
"""

import os
import re

import pytest

from quiz.testing import png_bytes

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-gpu", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ANSWERS = {"Capital of Italy": "Rome", "Capital of Portugal": "Lisbon", "Capital of Spain": "Madrid",
           "Capital of France": "Paris", "Capital of Peru": "Lima"}


@pytest.fixture(scope="module")
def quiz_browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright python package is not installed")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def quiz_page(quiz_browser):
    context = quiz_browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15000)
    yield page
    context.close()


def test_pepe_writes_a_quiz_with_a_picture_and_plays(quiz_server, quiz_page, tmp_path):
    page = quiz_page
    picture = str(tmp_path / "peru.png")
    with open(picture, "wb") as f:
        f.write(png_bytes(size=(40, 30), color=(20, 120, 200)))

    # Log in as pepe.
    page.goto(quiz_server + "/session")
    page.fill("#login", "pepe")
    page.fill("#password", "5678")
    page.click("input[name=commit]")
    assert page.text_content("#username") == "pepe"

    # Create a question with an image.
    page.goto(quiz_server + "/quizzes")
    page.click("text=Create New Question")
    page.fill("#question", "Capital of Peru")
    page.fill("#answer", "Lima")
    page.set_input_files("#image", picture)
    page.click("input[type=submit][value=Save]")
    page.wait_for_url(re.compile(r"/quizzes/\d+$"))
    assert "Quiz created successfully." in page.text_content(".messages")
    quiz_url = page.url

    # The picture is on the quiz page, and really loads.
    image = page.locator("img#attachment")
    image.wait_for()
    assert image.evaluate("img => img.complete && img.naturalWidth") == 40

    # Play it: a right answer, then a wrong one.
    page.click("main a.button:has-text('Play')")
    page.fill("#answer", " lima ")
    page.click("input[type=submit][value=Check]")
    assert "is right" in page.text_content("#result")
    page.goto(quiz_url + "/play")
    page.fill("#answer", "Cusco")
    page.click("input[type=submit][value=Check]")
    assert "The answer Cusco is wrong" in page.text_content("#result")
    page.click("text=Try again")
    assert page.input_value("#answer") == "Cusco"

    # Star the new quiz from the list: the script toggles it without reloading the page.
    page.goto(quiz_server + "/quizzes")
    star = page.locator("button.star").last
    assert star.text_content() == "\u2606"
    star.click()
    page.wait_for_selector("button.star.on")
    page.goto(quiz_server + "/quizzes?searchfavourites=1")
    assert page.locator("td.q a").all_text_contents() == ["Capital of Peru"]

    # Random play until the end page.
    page.goto(quiz_server + "/quizzes/randomplay")
    assert page.text_content("#score") == "0"
    for round_number in range(1, 11):  # 5 quizzes; bounded in case something loops
        question = page.text_content("h1")
        page.fill("#answer", ANSWERS[question])
        page.click("input[type=submit][value=Check]")
        assert "is right" in page.text_content("#result")
        assert page.text_content("#score") == str(round_number)
        page.click("#next")
        if page.locator("#nomore").count():
            break
    assert page.text_content("#nomore") == "No more quizzes"
    assert page.text_content("#score") == str(len(ANSWERS))
