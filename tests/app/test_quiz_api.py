"""The JSON API: token required, never a secret in the output, and the features of the original."""

import json

import pytest

from quiz.models import Favourite
from quiz.testing import make_quiz, make_user, user

pytestmark = pytest.mark.django_db

SECRET_WORDS = ("password", "pbkdf2", "md5$", "salt", "token", "api_token")


@pytest.fixture
def token():
    return user("pepe").new_token()


def get(client, path, token, **params):
    return client.get(path, {"token": token, **params})


def assert_no_secrets(response, *tokens):
    body = response.content.decode()
    for word in SECRET_WORDS:
        assert word not in body.lower(), f"{word!r} in {body[:200]}"
    for other in tokens:
        assert other not in body


@pytest.mark.parametrize("path", ["/api/users", "/api/users/1", "/api/quizzes", "/api/quizzes/1", "/api/quizzes/random",
                                  "/api/quizzes/1/check", "/api/quizzes/random10wa", "/api/users/1/quizzes",
                                  "/api/quizzes/randomplay/new", "/api/quizzes/randomplay/next",
                                  "/api/quizzes/randomplay/check", "/api/users/tokenOwner"])
@pytest.mark.parametrize("bad", [None, "", "0123456789abcdef0123"])
def test_missing_or_bad_token_is_401_json(client, path, bad):
    response = client.get(path, {} if bad is None else {"token": bad})
    assert response.status_code == 401 and "error" in response.json()


@pytest.mark.parametrize("method", ["put", "delete"])
def test_favourites_need_a_token_too(client, method):
    response = getattr(client, method)("/api/users/tokenOwner/favourites/1")
    assert response.status_code == 401
    assert getattr(client, method)("/api/users/tokenOwner/favourites/1?token=nope").status_code == 401


def test_a_session_is_not_a_token(client):
    """Being logged in to the site does not open the API: only ?token= does."""
    from quiz.testing import login_as

    login_as(client, "pepe")
    assert client.get("/api/quizzes").status_code == 401


@pytest.mark.parametrize("path", ["/api/users", "/api/users/1", "/api/users/2", "/api/quizzes", "/api/quizzes/1",
                                  "/api/users/2/quizzes", "/api/users/tokenOwner", "/api/quizzes/random",
                                  "/api/quizzes/random10wa", "/api/quizzes/randomplay/new"])
def test_no_response_leaks_hashes_or_tokens(client, token, path):
    admin = user("admin")
    admin_token = admin.new_token()
    ana = make_user("ana")
    ana_token = ana.new_token()
    make_quiz("Ana's", "x", author=ana)
    response = get(client, path, token)
    assert response.status_code == 200
    assert_no_secrets(response, admin_token, ana_token, token, admin.password, user("pepe").password)


def test_users(client, token):
    data = get(client, "/api/users", token).json()
    assert data == [{"id": user("admin").id, "username": "admin", "isAdmin": True},
                    {"id": user("pepe").id, "username": "pepe", "isAdmin": False}]
    assert get(client, "/api/users/999999", token).status_code == 404
    assert get(client, "/api/users/tokenOwner", token).json()["username"] == "pepe"


def test_quizzes_search_pages_and_next_url(client, token):
    for i in range(12):
        make_quiz(f"Capital of nowhere {i}", "x")
    data = get(client, "/api/quizzes", token, search="capital").json()
    assert len(data["quizzes"]) == 10 and data["pageno"] == 1
    assert data["nextUrl"].startswith("/api/quizzes?") and "pageno=2" in data["nextUrl"]
    assert all("answer" not in q for q in data["quizzes"])
    second = client.get(data["nextUrl"]).json()
    assert len(second["quizzes"]) == 6 and second["nextUrl"] is None


def test_favourites_for_the_token_owner(client, token):
    assert client.put(f"/api/users/tokenOwner/favourites/2?token={token}").json() == {"quizId": 2, "favourite": True}
    assert Favourite.objects.filter(user=user("pepe"), quiz_id=2).exists()
    favourites = get(client, "/api/quizzes", token, searchfavourites="1").json()["quizzes"]
    assert [q["id"] for q in favourites] == [2] and favourites[0]["favourite"] is True
    assert get(client, "/api/quizzes/2", token).json()["favourite"] is True
    client.delete(f"/api/users/tokenOwner/favourites/2?token={token}")
    assert not Favourite.objects.exists()
    client.post(f"/api/users/tokenOwner/favourites/3?token={token}", {"_method": "PUT"})
    assert Favourite.objects.filter(quiz_id=3).exists()
    assert client.get(f"/api/users/tokenOwner/favourites/3?token={token}").status_code == 405
    assert client.put(f"/api/users/tokenOwner/favourites/999999?token={token}").status_code == 404


def test_user_quizzes_and_one_quiz(client, token):
    ana = make_user("ana")
    quiz = make_quiz("Ana's", "x", author=ana)
    data = get(client, f"/api/users/{ana.id}/quizzes", token).json()
    assert [q["question"] for q in data["quizzes"]] == ["Ana's"]
    one = get(client, f"/api/quizzes/{quiz.id}", token).json()
    assert one["author"] == {"id": ana.id, "username": "ana", "isAdmin": False}
    assert get(client, "/api/quizzes/999999", token).status_code == 404


def test_check_random_and_random10wa(client, token):
    assert get(client, "/api/quizzes/1/check", token, answer=" rome").json() == {"quizId": 1, "answer": " rome", "result": True}
    assert get(client, "/api/quizzes/1/check", token, answer="Milan").json()["result"] is False
    assert "question" in get(client, "/api/quizzes/random", token).json()
    ten = get(client, "/api/quizzes/random10wa", token).json()
    assert sorted(q["answer"] for q in ten) == ["Lisbon", "Madrid", "Paris", "Rome"]


def test_random_play_through_the_api(client, token):
    answers = {"Capital of Italy": "Rome", "Capital of Portugal": "Lisbon", "Capital of Spain": "Madrid",
               "Capital of France": "Paris"}
    step = get(client, "/api/quizzes/randomplay/new", token).json()
    for expected in range(1, 5):
        assert step["score"] == expected - 1 and not step["nomore"]
        check = get(client, "/api/quizzes/randomplay/check", token, answer=answers[step["quiz"]["question"]]).json()
        assert check["result"] is True and check["score"] == expected
        step = get(client, "/api/quizzes/randomplay/next", token).json()
    assert step == {"quiz": None, "score": 4, "nomore": True}
    step = get(client, "/api/quizzes/randomplay/new", token).json()
    wrong = get(client, "/api/quizzes/randomplay/check", token, answer="nope").json()
    assert wrong["result"] is False and wrong["score"] == 0
    assert get(client, "/api/quizzes/randomplay/check", token, answer="x").status_code == 409


def test_the_html_json_list_leaks_nothing_either(client):
    make_quiz("Ana's", "x", author=make_user("ana"))
    body = client.get("/quizzes.json").content.decode()
    assert "password" not in body and "token" not in body and json.loads(body)[-1]["author"]["username"] == "ana"
