"""Who may do what: every route, tried by each role (anonymous, user, author, admin).

The world: ``ana`` wrote a quiz with a picture and a tip on it; ``pepe`` is
just another user; ``admin`` is the administrator. "author" means ana, who is
also the user whose profile, favourites and token the user routes act on.
Expectations: "ok" 200, "login" a redirect to the login form, "done" a
redirect elsewhere (the action happened), or a status code.
"""

import pytest

from quiz.models import Tip
from quiz.testing import image_upload, login_as, make_quiz, make_user
from quiz.uploads import store_image

pytestmark = pytest.mark.django_db

ROLES = ["anon", "user", "author", "admin"]
LOGIN_AS = {"user": "pepe", "author": "ana", "admin": "admin"}

# (method, path template, form data, {role: expectation}); the same expectation for all if a string.
TABLE = [
    ("GET", "/", None, "ok"),
    ("GET", "/author", None, "ok"),
    ("GET", "/goback", None, "done"),
    ("GET", "/session", None, "ok"),
    ("GET", "/quizzes", None, "ok"),
    ("GET", "/quizzes.json", None, "ok"),
    ("GET", "/quizzes/{q}", None, "ok"),
    ("GET", "/quizzes/{q}.json", None, "ok"),
    ("GET", "/quizzes/{q}/play", None, "ok"),
    ("GET", "/quizzes/{q}/check?answer=x", None, "ok"),
    ("GET", "/quizzes/randomplay", None, "ok"),
    ("GET", "/quizzes/randomcheck/{q}?answer=x", None, "ok"),
    ("GET", "/uploads/{img}", None, "ok"),
    ("GET", "/healthz", None, "ok"),
    ("GET", "/quizzes/new", None, {"anon": "login", "user": "ok", "author": "ok", "admin": "ok"}),
    ("POST", "/quizzes", {"question": "Q?", "answer": "A"}, {"anon": "login", "user": "done", "author": "done", "admin": "done"}),
    ("GET", "/quizzes/{q}/edit", None, {"anon": "login", "user": 403, "author": "ok", "admin": "ok"}),
    ("PUT", "/quizzes/{q}", {"question": "Q2?", "answer": "B", "keepAttachment": "1"}, {"anon": "login", "user": 403, "author": "done", "admin": "done"}),
    ("DELETE", "/quizzes/{q}", {}, {"anon": "login", "user": 403, "author": "done", "admin": "done"}),
    ("GET", "/users/{a}/quizzes", None, {"anon": "login", "user": "ok", "author": "ok", "admin": "ok"}),
    ("POST", "/quizzes/{q}/tips", {"text": "think"}, {"anon": "login", "user": "done", "author": "done", "admin": "done"}),
    ("PUT", "/quizzes/{q}/tips/{t}/accept", {}, {"anon": "login", "user": 403, "author": "done", "admin": "done"}),
    ("DELETE", "/quizzes/{q}/tips/{t}", {}, {"anon": "login", "user": 403, "author": "done", "admin": "done"}),
    ("GET", "/quizzes/{q}/tips/{t}/edit", None, {"anon": "login", "user": 403, "author": "ok", "admin": 403}),
    ("PUT", "/quizzes/{q}/tips/{t}", {"text": "better"}, {"anon": "login", "user": 403, "author": "done", "admin": 403}),
    ("PUT", "/users/{a}/favourites/{q}", {}, {"anon": "login", "user": 403, "author": "done", "admin": "done"}),
    ("DELETE", "/users/{a}/favourites/{q}", {}, {"anon": "login", "user": 403, "author": "done", "admin": "done"}),
    ("GET", "/users", None, {"anon": "login", "user": "ok", "author": "ok", "admin": "ok"}),
    ("GET", "/users/{a}", None, {"anon": "login", "user": "ok", "author": "ok", "admin": "ok"}),
    ("GET", "/users/new", None, {"anon": "login", "user": 403, "author": 403, "admin": "ok"}),
    ("POST", "/users", {"username": "newbie", "password": "Kestrel-orbit-42", "password_confirmation": "Kestrel-orbit-42"},
     {"anon": "login", "user": 403, "author": 403, "admin": "done"}),
    ("GET", "/users/{a}/edit", None, {"anon": "login", "user": 403, "author": "ok", "admin": "ok"}),
    ("PUT", "/users/{a}", {"password": "", "password_confirmation": ""}, {"anon": "login", "user": 403, "author": "done", "admin": "done"}),
    ("DELETE", "/users/{a}", {}, {"anon": "login", "user": 403, "author": "done", "admin": "done"}),
    ("POST", "/users/{a}/token", {}, {"anon": "login", "user": 403, "author": "done", "admin": "done"}),
]

CASES = [
    pytest.param(method, path, data, role, rule if isinstance(rule, (str, int)) else rule[role],
                 id=f"{method} {path} as {role}")
    for method, path, data, rule in TABLE
    for role in ROLES
]


@pytest.fixture
def world():
    ana = make_user("ana")
    picture = store_image(image_upload())
    quiz = make_quiz("Capital of Peru", "Lima", author=ana, attachment=picture)
    tip = Tip.objects.create(quiz=quiz, author=ana, text="It starts with L")
    return {"q": quiz.id, "t": tip.id, "a": ana.id, "img": picture.name}


def send(client, method, path, data):
    if method == "GET":
        return client.get(path)
    form = dict(data or {})
    if method in ("PUT", "DELETE"):
        form["_method"] = method  # the HTML way: POST with a method override
    return client.post(path, form)


@pytest.mark.parametrize("method, path, data, role, expected", CASES)
def test_route_role(client, world, method, path, data, role, expected):
    if role != "anon":
        login_as(client, LOGIN_AS[role])
    response = send(client, method, path.format(**world), data)
    if expected == "ok":
        assert response.status_code == 200
    elif expected == "login":
        assert response.status_code == 302
        assert response["Location"].startswith("/session")
    elif expected == "done":
        assert response.status_code == 302
        assert not response["Location"].startswith("/session?")
    else:
        assert response.status_code == expected


def test_the_table_covers_every_route():
    """A new HTML route must get a row here: every pattern of the URLconf is hit by the table."""
    from django.urls import resolve

    from quiz.urls import urlpatterns

    ids = {"q": 1, "t": 1, "a": 1, "img": "0" * 32 + ".png"}
    paths = [path.format(**ids).split("?")[0] for _, path, _, _ in TABLE]
    covered = {resolve(path).route for path in paths if path != "/healthz"}  # /healthz is middleware
    routes = {str(p.pattern) for p in urlpatterns}
    missing = {r for r in routes if not r.startswith("api/") and r != "static/<str:name>"} - covered
    assert not missing, f"routes without an authorization row: {sorted(missing)}"


@pytest.mark.parametrize("path", [
    "/quizzes/999999", "/quizzes/999999/play", "/quizzes/999999/check?answer=x", "/quizzes/randomcheck/999999",
    "/quizzes/99999999999999999999999", "/uploads/0123456789abcdef0123456789abcdef.png", "/uploads/../etc.png",
    "/nothing-here",
])
def test_unknown_ids_are_404_for_anybody(client, path):
    assert client.get(path).status_code == 404


@pytest.mark.parametrize("path", [
    "/quizzes/999999/edit", "/users/999999", "/users/999999/edit", "/users/999999/quizzes",
])
def test_unknown_ids_are_404_for_users(client, path):
    login_as(client, "pepe")
    assert client.get(path).status_code == 404


def test_moderating_a_tip_through_another_quiz_is_404(client, world):
    """The original let a quiz author accept any tip by putting it under their own quiz's URL."""
    pepe_quiz = make_quiz("Pepe's", "x", author=make_user("luis"))
    login_as(client, "luis")
    path = f"/quizzes/{pepe_quiz.id}/tips/{world['t']}/accept"
    assert client.post(path, {"_method": "PUT"}).status_code == 404
    assert client.post(f"/quizzes/{pepe_quiz.id}/tips/{world['t']}", {"_method": "DELETE"}).status_code == 404
    assert Tip.objects.get(pk=world["t"]).accepted is False
