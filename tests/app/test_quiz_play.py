"""Playing: check one answer, and the random game with its score, as an anonymous visitor."""

import re

import pytest

from quiz.models import Quiz

pytestmark = pytest.mark.django_db


def text(response):
    return response.content.decode()


def score(response):
    return int(re.search(r'<span id="score">(\d+)</span>', text(response)).group(1))


def shown_quiz(response):
    return Quiz.objects.get(pk=int(re.search(r'action="/quizzes/randomcheck/(\d+)"', text(response)).group(1)))


def test_play_form_is_a_get_form_prefilled_from_the_query(client):
    page = text(client.get("/quizzes/1/play", {"answer": "Milan"}))
    assert 'action="/quizzes/1/check"' in page and 'method="get"' in page
    assert 'name="answer" value="Milan"' in page


@pytest.mark.parametrize("answer, verdict", [("Rome", "right"), ("  rOME ", "right"), ("Milan", "wrong"), ("", "wrong")])
def test_check_ignores_case_and_surrounding_spaces(client, answer, verdict):
    page = text(client.get("/quizzes/1/check", {"answer": answer}))
    assert f"The answer {answer} is {verdict}" in page
    assert ("Try again" in page) == (verdict == "wrong")


def test_random_play_to_the_end(client):
    response = client.get("/quizzes/randomplay")
    assert score(response) == 0
    seen = set()
    for expected in range(1, 5):
        quiz = shown_quiz(response)
        assert quiz.id not in seen
        seen.add(quiz.id)
        result = client.get(f"/quizzes/randomcheck/{quiz.id}", {"answer": quiz.answer})
        assert "is right" in text(result) and score(result) == expected
        response = client.get("/quizzes/randomplay")
    assert "No more quizzes" in text(response) and score(response) == 4
    assert score(client.get("/quizzes/randomplay")) == 0  # the game restarted


def test_a_wrong_answer_ends_the_game(client):
    client.get("/quizzes/randomcheck/1", {"answer": "Rome"})
    assert score(client.get("/quizzes/randomcheck/2", {"answer": "Lisbon"})) == 2
    wrong = client.get("/quizzes/randomcheck/3", {"answer": "Paris"})
    assert "is wrong" in text(wrong) and score(wrong) == 2
    assert score(client.get("/quizzes/randomplay")) == 0


def test_a_quiz_counts_once(client):
    client.get("/quizzes/randomcheck/1", {"answer": "Rome"})
    assert score(client.get("/quizzes/randomcheck/1", {"answer": "Rome"})) == 1


def test_randomcheck_works_without_a_game(client):
    response = client.get("/quizzes/randomcheck/4", {"answer": "paris"})
    assert response.status_code == 200 and score(response) == 1


def test_no_quizzes_at_all_is_the_end_page(client):
    Quiz.objects.all().delete()
    response = client.get("/quizzes/randomplay")
    assert response.status_code == 200 and "No more quizzes" in text(response) and score(response) == 0
