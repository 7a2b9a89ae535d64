"""`quizstack logs`: its arguments, checked before anything runs (no root, no lab)."""

from datetime import datetime, timezone

import pytest

from quizstack import cli, logs
from quizstack.deploy.plan import build_plan
from quizstack.errors import QuizstackError
from quizstack.topology import load_scenario

NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def plan():
    return build_plan(load_scenario("complete"))


@pytest.mark.parametrize("text, stamp", [
    ("10m", "2026-11-27T11:50:00.000000"),
    ("90s", "2026-11-27T11:58:30.000000"),
    ("2h", "2026-11-27T10:00:00.000000"),
    ("1d", "2026-11-26T12:00:00.000000"),
    ("2026-11-27T11:30", "2026-11-27T11:30:00.000000"),
    ("2026-11-27T12:30:00+01:00", "2026-11-27T11:30:00.000000"),
])
def test_since_is_a_duration_or_a_time_in_utc(text, stamp):
    assert logs.since_stamp(text, NOW) == stamp


def test_a_bad_since_is_one_clear_line():
    with pytest.raises(QuizstackError, match=r"--since 'yesterday' is neither a duration"):
        logs.since_stamp("yesterday", NOW)


def test_the_query_runs_on_the_logs_host_with_the_arguments(plan):
    argv = logs.query_argv(plan, hosts=["s1", "lb1"], since="10m", grep="GET /quizzes",
                           request="abc-1", now=NOW)
    assert argv[:2] == ["python3", "-c"] and "def follow" in argv[2]
    assert argv[3:] == ["--hosts", "s1,lb1", "--since", "2026-11-27T11:50:00.000000",
                        "--grep", "GET /quizzes", "--request", "abc-1"]
    assert logs.query_argv(plan, follow=True)[-1] == "--follow"


@pytest.mark.parametrize("ask, message", [
    ({"hosts": ["s9"]}, "logs: unknown host 's9': the hosts with logs are fw1, fw2"),
    ({"hosts": ["c1"]}, "logs: unknown host 'c1'"),
    ({"grep": "GET (unclosed"}, "logs: --grep 'GET (unclosed' is not a regular expression"),
    ({"request": "a b"}, "logs: --request 'a b' is not a request id"),
])
def test_bad_arguments_fail_with_one_clear_line(plan, ask, message):
    with pytest.raises(QuizstackError) as caught:
        logs.query_argv(plan, **ask)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_a_scenario_without_a_logs_host_says_so():
    with pytest.raises(QuizstackError, match="no logs host"):
        logs.query_argv(build_plan(load_scenario("pfinal")))


def test_the_command_line(monkeypatch, capsys, plan):
    args = cli.build_parser().parse_args(["logs", "s1", "lb1", "--since", "5m", "--grep", "x",
                                          "--lab", "lg"])
    assert (args.hosts, args.since, args.grep, args.request, args.follow, args.lab) == \
        (["s1", "lb1"], "5m", "x", None, False, "lg")

    class FakeLab:
        topology = load_scenario("complete")
        ran = []

        def run(self, host, argv, **kw):
            self.ran.append((host, argv))
            return type("Done", (), {"returncode": 0, "stdout": "t s1 quiz line\n", "stderr": ""})

    lab = FakeLab()
    monkeypatch.setattr(cli, "_lab", lambda args: lab)
    assert cli.main(["logs", "--request", "abc"]) == 0
    assert capsys.readouterr().out == "t s1 quiz line\n"
    host, argv = lab.ran[-1]
    # --request alone searches the whole log; otherwise the last 10 minutes.
    assert host == "logs" and "--since" not in argv and argv[-2:] == ["--request", "abc"]
    assert cli.main(["logs"]) == 0 and "--since" in lab.ran[-1][1]
    assert cli.main(["logs", "nohost"]) == 1
    assert capsys.readouterr().err.strip().startswith("quizstack: logs: unknown host 'nohost'")
    assert cli.main(["logs", "--grep", "("]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("quizstack: logs: --grep '(' is not a regular expression") and "\n" not in err


def test_the_reader_sorts_and_filters(tmp_path):
    from types import SimpleNamespace

    from quizstack.deploy.probes import logs_query

    merged = tmp_path / "all.log"
    merged.write_text(
        "2026-11-27T12:00:02.000000+00:00 s1 quiz INFO quiz.request [r1] GET / 200 1.0ms user=-\n"
        "2026-11-27T12:00:01.000000+00:00 lb1 haproxy 10.2.1.11:1 \"GET / HTTP/1.1\" id=r1\n"
        "2026-11-27T11:00:00.000000+00:00 s2 quiz INFO quiz.request [r2] GET / 200 1.0ms user=-\n")
    (tmp_path / "all.log.1").write_text(
        "2026-11-27T12:00:00.500000+00:00 s1 quiz INFO quiz.request [r1] late from the backlog\n")
    args = SimpleNamespace(hosts="", since="", grep="", request="r1")
    lines = logs_query.read(logs_query.files(str(merged), ""), logs_query.matcher(args))
    assert [line.split()[1] for line in lines] == ["s1", "lb1", "s1"]
    args = SimpleNamespace(hosts="s2", since="2026-11-27T10:00:00.000000", grep="GET", request="")
    lines = logs_query.read([str(merged)], logs_query.matcher(args))
    assert len(lines) == 1 and "[r2]" in lines[0]
