"""The chaos load generator against a real QUIZ: gunicorn on 127.0.0.1 over the tests' PostgreSQL.

What an experiment relies on: on a healthy service every request of the load
succeeds; every write it reports as acknowledged is there (``verify`` finds
none missing, the image bytes stored are the ones sent, every server serves
them); a write lost behind the service's back is reported; and the generator
stops by itself within its bounds, or at once on SIGTERM, with its last line.
"""

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from types import SimpleNamespace

import psycopg
import pytest

from quiz.testing import free_port

LOAD = [sys.executable, "-m", "quizstack.chaos.load"]


def _app_env(database_url, media_root):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "QUIZ_", "DATABASE_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="quiz.settings",
        DJANGO_SECRET_KEY="chaos-tests-only",
        DATABASE_URL=database_url,
        QUIZ_MEDIA_ROOT=str(media_root),
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        # The load logs users in; a fast hasher keeps the test quick (tests only).
        QUIZ_PASSWORD_HASHERS="django.contrib.auth.hashers.MD5PasswordHasher",
        # The load logs in as the demo's admin/1234 (quiz.seed).
        QUIZ_DEMO_USERS="1",
    )
    return env


def _wait_healthy(proc, base, log):
    deadline, last = time.monotonic() + 30, "nothing yet"
    while True:
        if proc.poll() is not None:
            log.seek(0)
            pytest.fail(f"gunicorn exited with {proc.returncode}: {log.read().decode(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        if time.monotonic() > deadline:
            pytest.fail(f"gunicorn on {base} not healthy after 30 s: {last}")
        time.sleep(0.1)  # poll interval


@pytest.fixture(scope="module")
def quiz_app(quiz_postgres, tmp_path_factory):
    """QUIZ served by gunicorn from a migrated, seeded database of its own and a media root."""
    media = tmp_path_factory.mktemp("chaos-media")
    url = quiz_postgres.create_database("quiz_chaos")
    env = _app_env(url, media)
    for command in (["migrate", "--noinput"], ["seed"]):
        result = subprocess.run([sys.executable, "-m", "django", *command], env=env,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
    base = f"http://127.0.0.1:{free_port()}"
    log = open(media.parent / "gunicorn.log", "w+b")
    proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "quiz.wsgi:application",
                             "--bind", base.removeprefix("http://"), "--workers", "3"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(proc, base, log)
        yield SimpleNamespace(base=base, media=media, database_url=url)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def load(*args, stdin=None, timeout=60):
    result = subprocess.run([*LOAD, *args], input=stdin, capture_output=True, text=True, timeout=timeout)
    return result


def lines_of(stdout):
    return [json.loads(line) for line in stdout.splitlines()]


@pytest.fixture(scope="module")
def load_run(quiz_app):
    """Three seconds of load with many writes; its output, split by kind of line."""
    started = time.monotonic()
    result = load("run", "--base", quiz_app.base, "--seconds", "3", "--rate", "30", "--workers", "3",
                  "--writes", "0.4", "--seed", "7", "--name", "t1", "--admin", "admin:1234")
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-2000:]
    lines = lines_of(result.stdout)
    return SimpleNamespace(
        lines=lines, took=took, stdout=result.stdout,
        requests=[line for line in lines if "kind" in line],
        acks=[line for line in lines if "ack" in line],
        done=lines[-1],
    )


def test_load_on_a_healthy_service_succeeds_and_every_acknowledged_write_is_there(quiz_app, load_run):
    requests, acks = load_run.requests, load_run.acks
    assert load_run.done["done"] is True
    assert load_run.done["requests"] == len(requests)
    failed = [record for record in requests if not record["ok"]]
    assert failed == []
    assert all(record["status"] is not None and record["err"] is None for record in requests)
    kinds = {record["kind"] for record in requests}
    assert {"setup", "login", "list", "form", "create", "tip"} <= kinds
    quizzes = [ack for ack in acks if ack["ack"] == "quiz"]
    tips = [ack for ack in acks if ack["ack"] == "tip"]
    assert len(quizzes) >= 2 and tips
    assert len({ack["question"] for ack in quizzes}) == len(quizzes)
    assert all(2_000 < ack["size"] < 40_000 for ack in quizzes)

    # Each creation was posted to its form's own action, so it carried the form's one-time token.
    with psycopg.connect(quiz_app.database_url) as conn:
        recorded = [row[0] for row in conn.execute("SELECT location FROM quiz_submission")]
    assert {f"/quizzes/{ack['id']}" for ack in quizzes} <= set(recorded)
    assert sum(re.fullmatch(r"/quizzes/\d+/play", location) is not None for location in recorded) == len(tips)

    verified = load("verify", "--base", quiz_app.base, "--admin", "admin:1234", stdin=load_run.stdout)
    assert verified.returncode == 0, verified.stderr
    report = json.loads(verified.stdout)
    assert report["checked"] == len(acks)
    assert report["missing"] == []
    assert set(report["images"]) == {str(ack["id"]) for ack in quizzes}

    for ack in quizzes:
        stored = (quiz_app.media / report["images"][str(ack["id"])]).read_bytes()
        assert len(stored) == ack["size"]
        assert hashlib.sha256(stored).hexdigest() == ack["sha256"]

    names = "".join(name + "\n" for name in report["images"].values())
    fetched = load("fetch", "--server", f"s1={quiz_app.base}", stdin=names)
    assert fetched.returncode == 0, fetched.stderr
    served = json.loads(fetched.stdout)["s1"]
    assert sorted(served.values()) == sorted(ack["sha256"] for ack in quizzes)


def test_verify_reports_a_write_lost_behind_the_service_and_fetch_a_lost_image(quiz_app, load_run):
    quizzes = [ack for ack in load_run.acks if ack["ack"] == "quiz"]
    lost, damaged = quizzes[0], quizzes[1]
    before = json.loads(load("verify", "--base", quiz_app.base, "--admin", "admin:1234",
                             stdin=load_run.stdout).stdout)
    assert before["missing"] == []
    with psycopg.connect(quiz_app.database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM quiz_tip WHERE quiz_id = %s", [lost["id"]])
        conn.execute("DELETE FROM quiz_quiz WHERE id = %s", [lost["id"]])
    damaged_name = before["images"][str(damaged["id"])]
    (quiz_app.media / damaged_name).unlink()

    after = json.loads(load("verify", "--base", quiz_app.base, "--admin", "admin:1234",
                            stdin=load_run.stdout).stdout)
    lost_tips = [ack for ack in load_run.acks if ack["ack"] == "tip" and ack["quiz"] == lost["id"]]
    assert after["checked"] == len(load_run.acks)
    assert {"ack": "quiz", "id": lost["id"], "question": lost["question"], "why": "HTTP 404"} in after["missing"]
    assert len(after["missing"]) == 1 + len(lost_tips)
    assert all(item["quiz"] == lost["id"] for item in after["missing"] if item["ack"] == "tip")
    assert str(lost["id"]) not in after["images"]

    fetched = json.loads(load("fetch", "--server", f"s1={quiz_app.base}",
                              stdin="".join(name + "\n" for name in before["images"].values())).stdout)
    assert fetched["s1"][damaged_name] is None
    assert sum(value is not None for value in fetched["s1"].values()) == len(before["images"]) - 1


def test_verify_out_of_time_counts_what_it_did_not_check_as_missing(quiz_app, load_run):
    hurried = json.loads(load("verify", "--base", quiz_app.base, "--admin", "admin:1234", "--budget", "0.001",
                              stdin=load_run.stdout).stdout)
    assert hurried["checked"] == len(hurried["missing"]) == len(load_run.acks)
    assert all(item["why"] == "not checked: verify's 0.001 s were spent" for item in hurried["missing"])


def _paced(requests):
    return [record for record in requests if record["kind"] != "setup"]


def test_the_load_stops_by_itself_at_its_time_and_at_its_request_bound(quiz_app):
    started = time.monotonic()
    result = load("run", "--base", quiz_app.base, "--seconds", "1.5", "--rate", "20", "--writes", "0")
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    lines = lines_of(result.stdout)
    paced = _paced([line for line in lines if "kind" in line])
    assert took < 6
    assert 20 <= len(paced) <= 31  # 20 a second for 1.5 s: 30 slots, the first at once
    assert max(r["t"] for r in paced) - min(r["t"] for r in paced) < 1.5
    assert lines[-1]["done"] is True and lines[-1]["requests"] == len(paced) + 1

    started = time.monotonic()
    result = load("run", "--base", quiz_app.base, "--seconds", "60", "--rate", "50", "--writes", "0",
                  "--max-requests", "12")
    assert time.monotonic() - started < 6
    lines = lines_of(result.stdout)
    assert len(_paced([line for line in lines if "kind" in line])) == 12
    assert lines[-1] == {**lines[-1], "done": True, "requests": 13, "setup": 1}


def test_the_load_stops_on_sigterm_with_its_last_line(quiz_app):
    proc = subprocess.Popen([*LOAD, "run", "--base", quiz_app.base, "--seconds", "60", "--rate", "20",
                             "--writes", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = [json.loads(proc.stdout.readline()) for _ in range(5)]  # flushed as they happen
        assert all("kind" in line for line in first)
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    last = json.loads(rest.splitlines()[-1])
    assert last["done"] is True and last["seconds"] < 10
    assert proc.returncode == 0
