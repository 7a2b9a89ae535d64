"""Creations sent twice: the one-time token of a creation form (``?once=``), and what a copy of its POST gets.

A copy of a creation's POST (the balancer retrying it on another server, a
double click) must create nothing more and be answered as the first was.
The copies sent at the same moment run in threads of their own
(quiz.testing.in_thread) on a database of this module (``once_db``), where
they commit for real, so that PostgreSQL really makes the second insert of a
token wait for the first transaction.
"""

import re
import threading
import time
from datetime import timedelta

import psycopg
import pytest
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from quiz import once
from quiz.models import Attachment, Quiz, Submission, Tip, User
from quiz.testing import committed_database, image_upload, in_thread, login_as, make_quiz, user

db = pytest.mark.django_db


def text(response):
    return response.content.decode()


def form_action(page, path):
    """Where the page's creation form posts: ``path?once=<32 hex>``."""
    found = re.findall(rf'<form method="post" action="({re.escape(path)}\?once=[0-9a-f]{{32}})"', text(page))
    assert len(found) == 1, f"no single creation form posting to {path}"
    return found[0]


def follow(client, response):
    """The page a redirect leads to, as the browser shows it next (with its messages)."""
    assert response.status_code == 302, response.status_code
    return text(client.get(response["Location"]))


# -- the forms ----------------------------------------------------------------------------

@db
def test_each_creation_form_carries_a_new_token_each_time(client):
    login_as(client, "admin")
    for page, path in [("/quizzes/new", "/quizzes"), ("/quizzes/1/play", "/quizzes/1/tips"),
                       ("/quizzes/1", "/quizzes/1/tips"), ("/users/new", "/users")]:
        first, second = form_action(client.get(page), path), form_action(client.get(page), path)
        assert first != second
    assert not Submission.objects.exists()


@db
def test_only_creation_forms_carry_a_token(client):
    login_as(client, "admin")
    admin = user("admin")
    tip = Tip.objects.create(quiz_id=1, author=admin, text="Think of wolves")
    pages = ["/quizzes", "/quizzes/1/edit", f"/users/{admin.id}", f"/users/{admin.id}/edit",
             f"/quizzes/1/tips/{tip.id}/edit"]
    for page in pages:
        assert "once=" not in text(client.get(page)), page
    assert text(client.get("/quizzes/1")).count("once=") == 1  # the new tip's form, not delete, accept or reject


@db
def test_showing_a_creation_form_writes_nothing(client, settings):
    settings.QUIZ_OPEN_REGISTER = True
    response = client.get("/users/new")
    form_action(response, "/users")
    assert "sessionid" not in response.cookies
    assert not Session.objects.exists() and not Submission.objects.exists()


@db
def test_the_forms_keep_their_fields_and_buttons(client):
    login_as(client, "admin")
    page = text(client.get("/quizzes/new"))
    assert 'name="question"' in page and 'name="answer"' in page and 'name="image"' in page
    assert '<input type="submit" value="Save">' in page
    page = text(client.get("/quizzes/1/play"))
    assert 'name="text"' in page and 'name="redir" value="/quizzes/1/play"' in page
    assert '<button type="submit">Save tip</button>' in page
    page = text(client.get("/users/new"))
    for field in ("username", "password", "password_confirmation", "image"):
        assert f'name="{field}"' in page
    assert '<input type="submit" value="Save">' in page


# -- a copy of the POST -------------------------------------------------------------------

@db
def test_a_quiz_sent_twice_with_one_token_is_created_once(client, quiz_media):
    login_as(client, "pepe")
    action = form_action(client.get("/quizzes/new"), "/quizzes")
    first = client.post(action, {"question": "Sent twice?", "answer": "once", "image": image_upload()})
    follow(client, first)
    second = client.post(action, {"question": "Sent twice?", "answer": "once", "image": image_upload()})
    quiz = Quiz.objects.get(question="Sent twice?")
    assert first["Location"] == second["Location"] == f"/quizzes/{quiz.id}"
    assert "Quiz created successfully." in follow(client, second)
    assert Attachment.objects.count() == 1
    assert [path.name for path in quiz_media.iterdir()] == [quiz.attachment.name]  # the copy's image removed
    assert Submission.objects.get().location == f"/quizzes/{quiz.id}"


@db
def test_a_tip_sent_twice_with_one_token_is_written_once(client):
    quiz = make_quiz("Who howls?", "wolves")
    login_as(client, "pepe")
    action = form_action(client.get(f"/quizzes/{quiz.id}"), f"/quizzes/{quiz.id}/tips")
    first = client.post(action, {"text": "At the moon", "redir": f"/quizzes/{quiz.id}"})
    follow(client, first)
    second = client.post(action, {"text": "At the moon", "redir": f"/quizzes/{quiz.id}"})
    assert first["Location"] == second["Location"] == f"/quizzes/{quiz.id}"
    assert "Tip created successfully." in follow(client, second)
    assert Tip.objects.filter(quiz=quiz).count() == 1


@db
def test_a_user_sent_twice_with_one_token_is_created_once(client, quiz_media):
    login_as(client, "admin")
    action = form_action(client.get("/users/new"), "/users")
    form = {"username": "maria", "password": "Kestrel-orbit-42", "password_confirmation": "Kestrel-orbit-42"}
    first = client.post(action, {**form, "image": image_upload()})
    follow(client, first)
    second = client.post(action, {**form, "image": image_upload()})
    maria = user("maria")
    assert first["Location"] == second["Location"] == f"/users/{maria.id}"
    page = follow(client, second)
    assert 'User &quot;maria&quot; created successfully.' in page and "already exists" not in page
    assert [path.name for path in quiz_media.iterdir()] == [maria.photo.name]


@db
def test_a_registration_sent_twice_goes_to_the_login_both_times(client, settings):
    settings.QUIZ_OPEN_REGISTER = True
    action = form_action(client.get("/users/new"), "/users")
    form = {"username": "newbie", "password": "Kestrel-orbit-42", "password_confirmation": "Kestrel-orbit-42"}
    first, second = client.post(action, form), client.post(action, form)
    assert first["Location"] == second["Location"] == "/session"
    assert User.objects.filter(username="newbie").count() == 1


@db
def test_a_copy_of_the_days_fiftieth_quiz_is_answered_as_the_first_not_refused(client):
    login_as(client, "pepe")
    Quiz.objects.bulk_create([Quiz(question=f"q{i}", answer="a", author=user("pepe")) for i in range(49)])
    action = form_action(client.get("/quizzes/new"), "/quizzes")
    first = client.post(action, {"question": "The fiftieth", "answer": "a"})
    follow(client, first)
    second = client.post(action, {"question": "The fiftieth", "answer": "a"})
    assert second["Location"] == first["Location"]
    assert "at most 50" not in follow(client, second)
    assert Quiz.objects.filter(author=user("pepe")).count() == 50


@db
def test_a_copy_of_a_quizs_fiftieth_tip_is_answered_as_the_first_not_refused(client):
    quiz = make_quiz("Popular?", "yes")
    Tip.objects.bulk_create([Tip(quiz=quiz, text=f"t{i}") for i in range(49)])
    login_as(client, "pepe")
    action = form_action(client.get(f"/quizzes/{quiz.id}/play"), f"/quizzes/{quiz.id}/tips")
    first = client.post(action, {"text": "The fiftieth", "redir": f"/quizzes/{quiz.id}/play"})
    follow(client, first)
    second = client.post(action, {"text": "The fiftieth", "redir": f"/quizzes/{quiz.id}/play"})
    assert second["Location"] == first["Location"]
    page = follow(client, second)
    assert "Tip created successfully." in page and "maximum of 50 tips" not in page
    assert Tip.objects.filter(quiz=quiz).count() == 50


@db
def test_a_refused_form_sent_again_is_refused_again_and_its_new_form_has_a_new_token(client):
    login_as(client, "pepe")
    action = form_action(client.get("/quizzes/new"), "/quizzes")
    refused = client.post(action, {"question": "", "answer": "a"})
    again = client.post(action, {"question": "", "answer": "a"})
    for response in (refused, again):
        assert response.status_code == 200 and "can&#x27;t be empty" in text(response)
    assert form_action(refused, "/quizzes") != action
    assert not Submission.objects.exists()
    saved = client.post(action, {"question": "Fixed?", "answer": "a"})  # a token nothing used is still good
    assert saved["Location"] == f"/quizzes/{Quiz.objects.get(question='Fixed?').id}"


@db
def test_posts_without_a_token_work_as_before(client):
    login_as(client, "admin")
    for _ in range(2):
        assert client.post("/quizzes", {"question": "No token?", "answer": "a"}).status_code == 302
        assert client.post("/quizzes/1/tips", {"text": "No token"}).status_code == 302
    registration = {"username": "plain", "password": "Kestrel-orbit-42", "password_confirmation": "Kestrel-orbit-42"}
    assert client.post("/users", registration).status_code == 302
    assert Quiz.objects.filter(question="No token?").count() == 2
    assert Tip.objects.filter(text="No token").count() == 2
    assert User.objects.filter(username="plain").exists()
    assert not Submission.objects.exists()


@db
@pytest.mark.parametrize("query", ["once=", "once=3f9c", "once=" + "3F9C" * 8, "once=" + "3f9c" * 8 + "0",
                                   "once=" + "g" * 32, "once=" + "3f9c" * 8 + "&once=" + "9c3f" * 8])
def test_a_malformed_token_is_refused_and_creates_nothing(client, query):
    login_as(client, "admin")
    for path, form in [("/quizzes", {"question": "Malformed?", "answer": "a"}),
                       ("/quizzes/1/tips", {"text": "Malformed"}),
                       ("/users", {"username": "malformed", "password": "Kestrel-orbit-42", "password_confirmation": "Kestrel-orbit-42"})]:
        response = client.post(f"{path}?{query}", form)
        assert response.status_code == 400
        assert "malformed 'once' token" in text(response) and "Reload the form" in text(response)
    assert not Quiz.objects.filter(question="Malformed?").exists()
    assert not Tip.objects.filter(text="Malformed").exists() and not User.objects.filter(username="malformed").exists()


@db
def test_the_token_costs_a_creation_one_insert(client, monkeypatch):
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now)  # same second: no last-seen rewrite between the requests
    login_as(client, "pepe")

    def statements(path, question):
        with CaptureQueriesContext(connection) as queries:
            assert client.post(path, {"question": question, "answer": "a"}).status_code == 302
        return [query["sql"] for query in queries.captured_queries]

    def savepoints(statements):
        return [sql for sql in statements if sql.startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))]

    plain = statements("/quizzes", "Plain?")
    with_token = statements(f"/quizzes?once={once.new_token()}", "With a token?")
    assert len(with_token) - len(savepoints(with_token)) == len(plain) - len(savepoints(plain)) + 1
    assert [sql for sql in with_token if "quiz_submission" in sql][0].startswith('INSERT INTO "quiz_submission"')
    assert len(savepoints(with_token)) == len(savepoints(plain)) + 2  # around the insert, to tell its failure apart


# -- old tokens ------------------------------------------------------------------------------

def old_tokens(count):
    """``count`` tokens recorded a day and a minute ago."""
    tokens = [once.new_token() for _ in range(count)]
    Submission.objects.bulk_create([Submission(token=token, location="/quizzes/1") for token in tokens])
    Submission.objects.filter(token__in=tokens).update(created=timezone.now() - timedelta(days=1, minutes=1))
    return tokens


@db
def test_old_tokens_are_purged_a_bounded_batch_at_a_time_after_a_creation(client, monkeypatch,
                                                                          django_capture_on_commit_callbacks):
    monkeypatch.setattr(once, "PURGE_EVERY", 1)  # every time, instead of about one creation in a hundred
    monkeypatch.setattr(once, "PURGE_BATCH", 2)
    old = old_tokens(3)
    recent = Submission.objects.create(token=once.new_token(), location="/quizzes/2")
    login_as(client, "pepe")
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/quizzes?once={once.new_token()}", {"question": "Purges?", "answer": "a"})
    assert Submission.objects.filter(token__in=old).count() == 1
    assert Submission.objects.filter(pk=recent.pk).exists()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/quizzes/1/tips?once={once.new_token()}", {"text": "Purges too"})
    assert not Submission.objects.filter(token__in=old).exists()
    assert Submission.objects.count() == 3  # the recent one and the two just recorded


@db
def test_a_failed_purge_does_not_fail_the_creation_it_follows(client, monkeypatch, django_capture_on_commit_callbacks):
    def fails():
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(once, "PURGE_EVERY", 1)
    monkeypatch.setattr(once, "purge", fails)
    login_as(client, "pepe")
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post(f"/quizzes?once={once.new_token()}", {"question": "Saved anyway?", "answer": "a"})
    assert callbacks  # the purge was tried
    assert response.status_code == 302 and Quiz.objects.filter(question="Saved anyway?").exists()


@db
def test_a_purge_is_one_statement(monkeypatch):
    old_tokens(5)
    monkeypatch.setattr(once, "PURGE_BATCH", 3)
    with CaptureQueriesContext(connection) as queries:
        once.purge()
    assert len(queries.captured_queries) == 1 and queries.captured_queries[0]["sql"].startswith("DELETE")
    assert Submission.objects.count() == 2


@db
def test_reading_pages_never_purges(client, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr(once, "PURGE_EVERY", 1)
    old = old_tokens(2)
    login_as(client, "pepe")
    with django_capture_on_commit_callbacks(execute=True):
        for page in ("/quizzes", "/quizzes/new", "/quizzes/1", "/quizzes/1/play", "/users/new"):
            client.get(page)
    assert Submission.objects.filter(token__in=old).count() == 2


# -- copies sent at the same moment, each on a server (a connection) of its own ---------------------

@pytest.fixture(scope="module")
def once_db(quiz_postgres, django_db_blocker):
    """A migrated, seeded database of this module's own; its settings for in_thread."""
    return committed_database(quiz_postgres, django_db_blocker, "quiz_once")


@pytest.fixture
def db_access(django_db_blocker):
    """Database access for the requests' threads, outside any test transaction."""
    with django_db_blocker.unblock():
        yield


def at_once(once_db, quiz_postgres, *posts):
    """Run each ``post(client)`` on a logged-in client of its own thread, all arriving together; their answers.

    The token table is locked meanwhile, so each request stops at the latest
    at the token's insert, with its object made; once all are waiting, the
    lock goes and they race for the token.
    """
    answers = [None] * len(posts)

    def run(index, post):
        def request():
            client = Client()
            login_as(client, "admin")
            return post(client)
        answers[index] = in_thread(request, once_db)

    def waiting(watch):
        return watch.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
                             [once_db["NAME"]]).fetchone()[0]

    threads = [threading.Thread(target=run, args=(index, post)) for index, post in enumerate(posts)]
    url = quiz_postgres.url(once_db["NAME"])
    with psycopg.connect(url) as lock, psycopg.connect(url, autocommit=True) as watch:
        lock.execute("LOCK TABLE quiz_submission IN SHARE MODE")  # held until the commit below
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while waiting(watch) < len(posts):
            assert time.monotonic() < deadline, "the requests never reached the token"
            time.sleep(0.01)  # poll interval
        lock.commit()
    for thread in threads:
        thread.join(30)
    return answers


def count_in(once_db, queryset):
    return in_thread(lambda: queryset().count(), once_db)


def test_two_copies_of_a_quiz_at_once_create_one(db_access, once_db, quiz_postgres, quiz_media):
    action = f"/quizzes?once={once.new_token()}"

    def post(client):
        return client.post(action, {"question": "Both at once?", "answer": "a", "image": image_upload()})

    first, second = at_once(once_db, quiz_postgres, post, post)
    assert first.status_code == second.status_code == 302
    assert first["Location"] == second["Location"]
    assert count_in(once_db, lambda: Quiz.objects.filter(question="Both at once?")) == 1
    quiz_id = int(first["Location"].rsplit("/", 1)[1])
    stored = in_thread(lambda: Quiz.objects.get(pk=quiz_id).attachment.name, once_db)
    assert [path.name for path in quiz_media.iterdir()] == [stored]


def test_two_copies_of_a_user_at_once_create_one(db_access, once_db, quiz_postgres):
    """The second waits on the username, not the token: it is answered as the first all the same."""
    action = f"/users?once={once.new_token()}"

    def post(client):
        return client.post(action, {"username": "twin", "password": "Kestrel-orbit-42", "password_confirmation": "Kestrel-orbit-42"})

    first, second = at_once(once_db, quiz_postgres, post, post)
    assert first.status_code == second.status_code == 302
    assert count_in(once_db, lambda: User.objects.filter(username="twin")) == 1
    twin = in_thread(lambda: user("twin").id, once_db)
    assert first["Location"] == second["Location"] == f"/users/{twin}"


def test_two_people_taking_one_name_at_once_get_it_and_already_exists(db_access, once_db, quiz_postgres):
    """Without a copy in play, the same race is the ordinary refusal (it was a 500)."""
    def post(client):
        return client.post(f"/users?once={once.new_token()}",
                           {"username": "rival", "password": "Kestrel-orbit-42", "password_confirmation": "Kestrel-orbit-42"})

    answers = at_once(once_db, quiz_postgres, post, post)
    assert sorted(answer.status_code for answer in answers) == [200, 302]
    refused = next(answer for answer in answers if answer.status_code == 200)
    assert "User &quot;rival&quot; already exists." in text(refused)
    assert count_in(once_db, lambda: User.objects.filter(username="rival")) == 1



def test_a_copy_that_comes_while_the_first_is_still_open_waits_for_it_within_bounds(db_access, once_db, quiz_postgres,
                                                                                    quiz_media, settings):
    """The first server hung between recording the token and its commit: the copy waits on the token,
    at most QUIZ_DB_WAIT_LIMIT, then is a 503 that kept nothing; sent again once the first is
    through, it is answered as the first."""
    settings.QUIZ_DB_WAIT_LIMIT = 1
    token = once.new_token()

    def copy():
        client = Client()
        login_as(client, "admin")
        started = time.monotonic()
        answer = client.post(f"/quizzes?once={token}", {"question": "Held open?", "answer": "a",
                                                        "image": image_upload()})
        return answer, time.monotonic() - started

    with psycopg.connect(quiz_postgres.url(once_db["NAME"])) as first:
        first.execute("INSERT INTO quiz_submission (token, location, message, created) "
                      "VALUES (%s, '/quizzes/1', 'Quiz created successfully.', now())", [token])
        waited, took = in_thread(copy, once_db)
        first.commit()
    assert waited.status_code == 503 and "Your change was not saved" in text(waited)
    assert 1 <= took < 3
    assert count_in(once_db, lambda: Quiz.objects.filter(question="Held open?")) == 0
    assert list(quiz_media.iterdir()) == []
    again, _ = in_thread(copy, once_db)
    assert again.status_code == 302 and again["Location"] == "/quizzes/1"
    assert count_in(once_db, lambda: Quiz.objects.filter(question="Held open?")) == 0
    assert list(quiz_media.iterdir()) == []
