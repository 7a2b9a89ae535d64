"""First look: every public page renders for an anonymous visitor and for pepe."""

import pytest

from quiz.testing import login_as

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/", "/author", "/session", "/quizzes", "/quizzes/1", "/quizzes/1/play",
                                  "/quizzes/1/check?answer=Rome", "/quizzes/randomplay", "/quizzes.json"])
def test_anonymous_pages_render(client, path):
    assert client.get(path).status_code == 200


@pytest.mark.parametrize("path", ["/", "/quizzes", "/quizzes/1", "/quizzes/1/play", "/quizzes/new", "/users",
                                  "/users/1", "/users/2/quizzes"])
def test_pepe_pages_render(client, path):
    login_as(client, "pepe")
    assert client.get(path).status_code == 200
