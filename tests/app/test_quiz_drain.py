"""A server being drained by a deployment: not ready for the balancers, still answering."""

import pytest

from quiz import middleware

pytestmark = pytest.mark.django_db


def test_the_drain_file_makes_healthz_say_not_ready_and_pages_still_answer(client, tmp_path, monkeypatch):
    flag = tmp_path / "draining"
    monkeypatch.setattr(middleware, "DRAIN_FILE", str(flag))
    assert client.get("/healthz").status_code == 200
    flag.write_text("")
    draining = client.get("/healthz")
    assert draining.status_code == 503 and b"draining" in draining.content
    # Requests already sent its way (in flight, or before the balancer noticed) are served.
    assert client.get("/quizzes").status_code == 200
    flag.unlink()
    assert client.get("/healthz").status_code == 200
