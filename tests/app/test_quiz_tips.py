"""Tips: written by users, moderated by the quiz's author or an admin, edited by their author, 50 at most."""

import pytest

from quiz.models import Tip
from quiz.testing import login_as, make_quiz, make_user, user

pytestmark = pytest.mark.django_db


def text(response):
    return response.content.decode()


@pytest.fixture
def anas_quiz():
    return make_quiz("Ana's riddle", "egg", author=make_user("ana"))


def test_a_user_writes_a_tip_that_waits_for_moderation(client, anas_quiz):
    login_as(client, "pepe")
    response = client.post(f"/quizzes/{anas_quiz.id}/tips", {"text": "It's oval"})
    assert response["Location"] == f"/quizzes/{anas_quiz.id}/play"
    tip = Tip.objects.get()
    assert (tip.author, tip.accepted, tip.text) == (user("pepe"), False, "It's oval")
    assert "It&#x27;s oval" in text(client.get(f"/quizzes/{anas_quiz.id}"))  # its author sees it
    client.post("/session", {"_method": "DELETE"})
    assert "It&#x27;s oval" not in text(client.get(f"/quizzes/{anas_quiz.id}"))  # others don't
    make_user("luis")
    login_as(client, "luis")
    assert "It&#x27;s oval" not in text(client.get(f"/quizzes/{anas_quiz.id}/play"))


def test_the_quiz_author_accepts_and_everybody_sees_it(client, anas_quiz):
    tip = Tip.objects.create(quiz=anas_quiz, author=user("pepe"), text="Chickens")
    login_as(client, "ana")
    assert "Chickens" in text(client.get(f"/quizzes/{anas_quiz.id}"))
    client.post(f"/quizzes/{anas_quiz.id}/tips/{tip.id}/accept", {"_method": "PUT"})
    tip.refresh_from_db()
    assert tip.accepted
    client.post("/session", {"_method": "DELETE"})
    assert "Chickens" in text(client.get(f"/quizzes/{anas_quiz.id}/play"))
    assert "by pepe" in text(client.get(f"/quizzes/{anas_quiz.id}/play"))


def test_an_admin_rejects_a_tip(client, anas_quiz):
    tip = Tip.objects.create(quiz=anas_quiz, author=None, text="spam")
    login_as(client, "admin")
    page = text(client.get(f"/quizzes/{anas_quiz.id}"))
    assert "spam" in page and "Anonymous" in page and "Reject" in page
    client.post(f"/quizzes/{anas_quiz.id}/tips/{tip.id}", {"_method": "DELETE"})
    assert not Tip.objects.exists()


def test_the_tip_author_edits_it_and_it_goes_back_to_moderation(client, anas_quiz):
    tip = Tip.objects.create(quiz=anas_quiz, author=user("pepe"), text="old", accepted=True)
    login_as(client, "pepe")
    page = text(client.get(f"/quizzes/{anas_quiz.id}/tips/{tip.id}/edit"))
    assert 'name="text" value="old"' in page
    client.post(f"/quizzes/{anas_quiz.id}/tips/{tip.id}", {"_method": "PUT", "text": "new"})
    tip.refresh_from_db()
    assert (tip.text, tip.accepted) == ("new", False)
    response = client.post(f"/quizzes/{anas_quiz.id}/tips/{tip.id}", {"_method": "PUT", "text": " "})
    assert response.status_code == 200 and "between 1 and 1000" in text(response)


def test_empty_tip_is_refused_with_a_message(client, anas_quiz):
    login_as(client, "pepe")
    response = client.post(f"/quizzes/{anas_quiz.id}/tips", {"text": "  "}, follow=True)
    assert "can&#x27;t be empty" in text(response)
    assert not Tip.objects.exists()


def test_fifty_tips_at_most(client, anas_quiz):
    Tip.objects.bulk_create([Tip(quiz=anas_quiz, text=f"t{i}") for i in range(50)])
    login_as(client, "pepe")
    response = client.post(f"/quizzes/{anas_quiz.id}/tips", {"text": "one more"}, follow=True)
    assert "maximum of 50 tips" in text(response)
    assert Tip.objects.count() == 50


def test_tip_routes_on_unknown_quiz_or_tip_are_404(client, anas_quiz):
    login_as(client, "admin")
    assert client.post("/quizzes/999999/tips", {"text": "x"}).status_code == 404
    assert client.post(f"/quizzes/{anas_quiz.id}/tips/999999/accept", {"_method": "PUT"}).status_code == 404
    assert client.get(f"/quizzes/{anas_quiz.id}/tips/999999/edit").status_code == 404
