"""Bad input never makes a 500: odd characters, huge numbers, wrong methods, proxies' headers."""

import pytest
from django.test import RequestFactory

from quiz.testing import login_as, make_user, user

pytestmark = pytest.mark.django_db

NASTY = ["\x00", "a\x00b", "x" * 5000, "%", "_", "\\", "(", "[", "*", "'; DROP TABLE quiz_quiz; --", "ñandú 🦆"]


@pytest.mark.parametrize("value", NASTY)
def test_nasty_query_strings(client, value):
    for path in ("/quizzes", "/quizzes.json", "/quizzes/1/play", "/quizzes/1/check", "/quizzes/randomcheck/1",
                 "/session"):
        response = client.get(path, {"search": value, "pageno": value, "answer": value, "redir": value})
        assert response.status_code == 200, path


@pytest.mark.parametrize("pageno", ["0", "-3", "99999999999999999999999", "1e9", " 2 "])
def test_odd_page_numbers(client, pageno):
    assert client.get("/quizzes", {"pageno": pageno}).status_code == 200


@pytest.mark.parametrize("value", NASTY)
def test_nasty_form_input_is_refused_or_stored_never_a_500(client, value):
    response = client.post("/session", {"login": value, "password": value})
    assert response.status_code == 200
    login_as(client, "pepe")
    pepe = user("pepe")
    for path, form in (("/quizzes", {"question": value, "answer": value}),
                       ("/quizzes/1/tips", {"text": value}),
                       (f"/users/{pepe.id}", {"_method": "PUT", "password": value, "password_confirmation": value})):
        assert client.post(path, form).status_code in (200, 302), path


@pytest.mark.parametrize("redir", ["/x\r\nSet-Cookie: a=b", "/a\x00b", "//evil.example", "javascript:alert(1)", "\t/x"])
def test_odd_redirect_targets_go_home(client, redir):
    response = client.post("/session", {"login": "pepe", "password": "5678", "redir": redir})
    assert response.status_code == 302 and response["Location"] == "/"
    response = client.post("/quizzes/1/tips", {"text": "hi", "redir": redir})
    assert response.status_code == 302 and response["Location"] == "/quizzes/1/play"


def test_nul_characters_are_refused_with_a_message(client):
    login_as(client, "pepe")
    response = client.post("/quizzes", {"question": "a\x00b", "answer": "x"})
    assert response.status_code == 200 and "not allowed" in response.content.decode()


@pytest.mark.parametrize("value", NASTY)
def test_nasty_registration(client, value):
    login_as(client, "admin")
    response = client.post("/users", {"username": value, "password": "Kestrel-orbit-42", "password_confirmation": "Kestrel-orbit-42"})
    assert response.status_code in (200, 302)  # refused with a message, or a valid odd name such as "_"


def test_wrong_methods_are_405(client):
    assert client.post("/healthz").status_code == 405
    assert client.delete("/quizzes/new").status_code in (302, 405)
    login_as(client, "pepe")
    assert client.post("/quizzes/1/play").status_code == 405 or client.post("/quizzes/1/play").status_code == 200
    assert client.get(f"/users/{user('pepe').id}/token").status_code == 405
    assert client.get("/quizzes/1/tips").status_code == 405
    assert client.post("/quizzes.json").status_code == 405
    assert client.post("/quizzes/1", {"_method": "PATCH"}).status_code == 405


def test_the_proxy_headers_we_trust_and_the_ones_we_do_not():
    factory = RequestFactory()
    assert factory.get("/", HTTP_X_FORWARDED_PROTO="https").is_secure()
    assert not factory.get("/").is_secure()
    assert factory.get("/", HTTP_HOST="127.0.0.1", HTTP_X_FORWARDED_HOST="evil.example").get_host() == "127.0.0.1"


def test_static_files_set_no_cookie(client):
    response = client.get("/static/style.css")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/css")
    assert not response.cookies
    assert client.get("/static/../settings.py").status_code == 404
    assert client.get("/static/nope.css").status_code == 404


def test_a_deleted_users_session_is_simply_anonymous(client):
    make_user("ana")
    login_as(client, "ana")
    user("ana").delete()
    assert client.get("/users")["Location"].startswith("/session")
