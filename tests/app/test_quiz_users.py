"""Users: the list, profiles, registration, editing, deleting and API tokens."""

import pytest

from quiz.models import Quiz, User
from quiz.testing import image_upload, login_as, make_quiz, make_user, user

pytestmark = pytest.mark.django_db

STRONG = "Kestrel-orbit-42"  # passes every password validator


def text(response):
    return response.content.decode()


def test_user_list_marks_the_admin(client):
    login_as(client, "pepe")
    page = text(client.get("/users"))
    assert "admin</a> (admin)" in page and "pepe</a></li>" in page


def test_user_list_has_pages_of_ten(client):
    User.objects.bulk_create([User(username=f"u{i:02d}") for i in range(15)])
    login_as(client, "pepe")
    assert text(client.get("/users")).count("<li>") == 10
    assert text(client.get("/users", {"pageno": 2})).count("<li>") == 7


def test_the_token_is_shown_to_its_owner_and_admins_only(client):
    pepe = user("pepe")
    pepe.new_token()
    login_as(client, "pepe")
    assert pepe.api_token in text(client.get(f"/users/{pepe.id}"))
    make_user("ana")
    login_as(client, "ana")
    page = text(client.get(f"/users/{pepe.id}"))
    assert pepe.api_token not in page and "Administrator" in page
    login_as(client, "admin")
    assert pepe.api_token in text(client.get(f"/users/{pepe.id}"))


def test_new_token(client):
    login_as(client, "pepe")
    pepe = user("pepe")
    client.post(f"/users/{pepe.id}/token")
    first = user("pepe").api_token
    assert len(first) == 20 and int(first, 16) >= 0
    client.post(f"/users/{pepe.id}/token")
    assert user("pepe").api_token != first


def test_admin_creates_a_user_with_a_photo(client):
    login_as(client, "admin")
    response = client.post("/users", {"username": "maria", "password": STRONG, "password_confirmation": STRONG,
                                      "image": image_upload()})
    maria = user("maria")
    assert response["Location"] == f"/users/{maria.id}"
    assert maria.check_password(STRONG) and not maria.is_admin and maria.photo.mime == "image/png"
    assert maria.photo.url in text(client.get(f"/users/{maria.id}"))


@pytest.mark.parametrize("form, message", [
    ({"username": "pepe", "password": STRONG, "password_confirmation": STRONG}, "already exists"),
    ({"username": "", "password": STRONG, "password_confirmation": STRONG}, "The username must"),
    ({"username": "bad name!", "password": STRONG, "password_confirmation": STRONG}, "The username must"),
    ({"username": "x", "password": "", "password_confirmation": ""}, "can&#x27;t be empty"),
    ({"username": "x", "password": STRONG, "password_confirmation": "b"}, "don&#x27;t match"),
    ({"username": "x", "password": STRONG, "password_confirmation": STRONG, "image": "not a file"}, None),
])
def test_bad_registration_reshows_the_form(client, form, message):
    login_as(client, "admin")
    response = client.post("/users", form)
    if message is None:  # a text value where a file was expected is simply no photo
        assert response.status_code == 302
        return
    assert response.status_code == 200 and message in text(response)


def test_open_registration(client, settings):
    settings.QUIZ_OPEN_REGISTER = True
    assert client.get("/users/new").status_code == 200
    response = client.post("/users", {"username": "newbie", "password": STRONG, "password_confirmation": STRONG})
    assert response["Location"] == "/session"
    login_as(client, "newbie", STRONG)


def test_registration_is_closed_by_default(client):
    assert client.get("/users/new")["Location"].startswith("/session")
    client.post("/users", {"username": "sneaky", "password": STRONG, "password_confirmation": STRONG})
    assert not User.objects.filter(username="sneaky").exists()


def test_edit_blank_password_keeps_it_and_username_is_immutable(client):
    login_as(client, "pepe")
    pepe = user("pepe")
    client.post(f"/users/{pepe.id}", {"_method": "PUT", "username": "pablo", "password": "", "password_confirmation": ""})
    pepe.refresh_from_db()
    assert pepe.username == "pepe" and pepe.check_password("5678")
    client.post(f"/users/{pepe.id}", {"_method": "PUT", "password": STRONG, "password_confirmation": STRONG})
    pepe.refresh_from_db()
    assert pepe.check_password(STRONG)
    assert client.get("/users").status_code == 200  # changing one's password keeps one logged in
    response = client.post(f"/users/{pepe.id}", {"_method": "PUT", "password": "a", "password_confirmation": "b"})
    assert response.status_code == 200 and "don&#x27;t match" in text(response)


@pytest.mark.parametrize("password, message", [
    ("Ab1-xyz", "too short. It must contain at least 8 characters"),
    ("password123", "too common"),
    ("83920174655", "entirely numeric"),
    ("maria.lopez", "too similar to the username"),
])
def test_a_weak_password_is_refused_at_sign_up_with_the_validators_message(client, password, message):
    login_as(client, "admin")
    response = client.post("/users", {"username": "maria.lopez", "password": password,
                                      "password_confirmation": password})
    assert response.status_code == 200 and message in text(response)
    assert 'value="maria.lopez"' in text(response)  # the form again, the name kept
    assert not User.objects.filter(username="maria.lopez").exists()


def test_a_weak_password_is_refused_when_changing_it_and_the_old_one_stays(client):
    login_as(client, "pepe")
    pepe = user("pepe")
    response = client.post(f"/users/{pepe.id}", {"_method": "PUT", "password": "pepe", "password_confirmation": "pepe"})
    page = text(response)
    assert response.status_code == 200 and "too similar to the username" in page and "too short" in page
    response = client.post(f"/users/{pepe.id}", {"_method": "PUT", "password": "12345678",
                                                 "password_confirmation": "12345678"})
    assert response.status_code == 200 and "too common" in text(response) and "entirely numeric" in text(response)
    pepe.refresh_from_db()
    assert pepe.check_password("5678")  # the demo user made by the seed keeps its password until changed well


def test_open_registration_refuses_a_weak_password_too(client, settings):
    settings.QUIZ_OPEN_REGISTER = True
    response = client.post("/users", {"username": "newbie", "password": "qwerty", "password_confirmation": "qwerty"})
    assert response.status_code == 200 and "too short" in text(response) and "too common" in text(response)
    assert not User.objects.filter(username="newbie").exists()


def test_deleting_oneself_logs_out_and_keeps_quizzes_as_anonymous(client):
    ana = make_user("ana")
    quiz = make_quiz("Ana's", "x", author=ana)
    login_as(client, "ana")
    response = client.post(f"/users/{ana.id}", {"_method": "DELETE"})
    assert response["Location"] == "/"
    assert not User.objects.filter(username="ana").exists()
    assert Quiz.objects.get(pk=quiz.id).author is None
    assert client.get("/users")["Location"].startswith("/session")


def test_the_login_form_has_the_original_fields(client):
    page = text(client.get("/session", {"redir": "/quizzes"}))
    for needle in ('id="login" name="login"', 'id="password" name="password"', 'type="hidden" name="redir" value="/quizzes"',
                   'name="commit" value="Login"'):
        assert needle in page


def test_layout_nav_for_users_and_anonymous(client):
    page = text(client.get("/"))
    for label in ("Home", "Quizzes", "Play", "Author", "Login"):
        assert f">{label}</a>" in page
    assert "My Quizzes" not in page and ">Users<" not in page
    login_as(client, "pepe")
    page = text(client.get("/"))
    assert "My Quizzes" in page and ">Users<" in page and ">pepe<" in page and "Logout" in page
