"""The busiest pages render with Jinja2 and prepared queries: what a user sees stays as it was.

The list, a quiz's page and its play page use Jinja2 templates (quiz/jinja2/)
and prepared statements (quiz.queries), for speed (docs/performance.md); every
other page keeps Django's templates. These tests hold the two engines to the
same output where a user could tell them apart: the page's frame (header,
navigation, messages), escaping, the login link, and the forms' CSRF fields.
"""

import re

import pytest
from django.contrib.auth.models import AnonymousUser
from django.contrib.messages import constants
from django.contrib.messages.storage.base import Message
from django.db import connection
from django.template import engines
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext

from quiz.models import Favourite, Tip
from quiz.testing import login_as, make_quiz, make_user, user

pytestmark = pytest.mark.django_db

TRICKY = "Tom's <b>\"bold\"</b> & <script>alert(1)</script>?"


def text(response):
    return response.content.decode()


def _csrf_free(page):
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', 'name="csrfmiddlewaretoken" value="T"', page)


def _frame(engine, who, messages):
    request = RequestFactory().get("/quizzes?search=capital&pageno=2")
    request.user = who
    request._messages = messages  # what the messages context processor reads
    return _csrf_free(engines[engine].get_template("quiz/layout.html").render({}, request))


@pytest.mark.parametrize("who", ["anonymous", "a user"])
def test_the_busiest_pages_have_the_same_frame_as_every_other_page(who):
    """Header, navigation, login or logout, messages: one frame, whichever engine draws the page."""
    visitor = AnonymousUser() if who == "anonymous" else make_user("o'brien<i>")
    messages = [Message(constants.SUCCESS, 'Quiz "x" created successfully.'),
                Message(constants.ERROR, "It's <not> fine & dandy")]
    django_frame = _frame("django", visitor, list(messages))
    assert _frame("jinja2", visitor, list(messages)) == django_frame
    assert "&#x27;s &lt;not&gt; fine &amp; dandy" in django_frame
    if who == "anonymous":
        assert 'href="/session?redir=/quizzes%3Fsearch%3Dcapital%26pageno%3D2"' in django_frame
    else:
        assert "o&#x27;brien&lt;i&gt;" in django_frame and 'name="csrfmiddlewaretoken"' in django_frame


def test_questions_answers_and_tips_are_escaped_as_django_escapes_them(client):
    pepe = user("pepe")
    quiz = make_quiz(TRICKY, "It's <i>this</i>", author=pepe)
    Tip.objects.create(quiz=quiz, text="Don't <b>panic</b>", author=pepe, accepted=True)
    escaped = "Tom&#x27;s &lt;b&gt;&quot;bold&quot;&lt;/b&gt; &amp; &lt;script&gt;alert(1)&lt;/script&gt;?"
    listed = text(client.get("/quizzes", {"search": "tom"}))
    shown = text(client.get(f"/quizzes/{quiz.id}"))
    played = text(client.get(f"/quizzes/{quiz.id}/play", {"answer": '"><script>x</script>'}))
    for page in (listed, shown, played):
        assert escaped in page and "<script>alert" not in page
    assert "It&#x27;s &lt;i&gt;this&lt;/i&gt;" in shown
    assert "Don&#x27;t &lt;b&gt;panic&lt;/b&gt;" in shown and "Don&#x27;t &lt;b&gt;panic&lt;/b&gt;" in played
    assert 'value="&quot;&gt;&lt;script&gt;x&lt;/script&gt;"' in played
    assert f"<title>QUIZ &middot; {escaped}</title>" in shown


def test_the_login_link_brings_the_visitor_back_to_the_same_list_page(client):
    page = text(client.get("/quizzes", {"search": "capital of", "pageno": "1"}))
    assert 'href="/session?redir=/quizzes%3Fsearch%3Dcapital%2Bof%26pageno%3D1"' in page


def test_a_user_gets_forms_with_the_csrf_token_and_the_cookie_that_goes_with_it(client):
    login_as(client, "pepe")
    pepe = user("pepe")
    quiz = make_quiz("Pepe's own?", "yes", author=pepe)
    Favourite.objects.create(user=pepe, quiz=quiz)
    Tip.objects.create(quiz=quiz, text="pending tip", author=make_user("ana"))
    for path in ("/quizzes", f"/quizzes/{quiz.id}", f"/quizzes/{quiz.id}/play"):
        response = client.get(path)
        page = text(response)
        forms = re.findall(r'<form method="post".*?</form>', page, re.S)
        assert forms, path
        for form in forms:
            assert 'name="csrfmiddlewaretoken" value="' in form, (path, form)
        assert "csrftoken" in response.cookies, path
    shown = text(client.get(f"/quizzes/{quiz.id}"))
    assert "&#9733;" in shown and "Accept" in shown and "Reject" in shown and "pending tip" in shown
    assert re.search(rf'action="/quizzes/{quiz.id}/tips\?once=[0-9a-f]{{32}}"', shown)


def test_the_flash_message_of_a_creation_shows_on_the_quiz_page(client):
    login_as(client, "pepe")
    response = client.post("/quizzes", {"question": "Fresh 'one'?", "answer": "a"}, follow=True)
    page = text(response)
    assert '<p class="msg success">Quiz created successfully.</p>' in page
    assert "Fresh &#x27;one&#x27;?" in page
    assert "Quiz created successfully." not in text(client.get(response.redirect_chain[-1][0]))  # shown once


def _prepared():
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return sorted(row[0] for row in cursor.fetchall())


def test_the_busiest_queries_are_prepared_once_and_still_counted(client):
    with CaptureQueriesContext(connection) as first:
        client.get("/quizzes")
        client.get("/quizzes/1")
    prepared = _prepared()
    with CaptureQueriesContext(connection) as second:
        client.get("/quizzes")
        client.get("/quizzes/1")
    assert len(first.captured_queries) == len(second.captured_queries) == 3  # the list; a quiz and its tips
    assert _prepared() == prepared  # made once per connection, then reused
    for part in ("COUNT(*) OVER ()", "WHERE q.id = $1", "FROM quiz_tip t"):
        assert any(part in statement for statement in prepared), part
