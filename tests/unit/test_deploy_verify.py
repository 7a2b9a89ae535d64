"""The no-change deployment that is verified instead of run: its pure parts."""

import xmlrpc.client

from quizstack.deploy import verify
from quizstack.topology import load_scenario

TOPOLOGY = load_scenario("pfinal")


def print_of(code, secrets=None, topology=TOPOLOGY):
    return verify.fingerprint(topology, secrets or {"a": "1"}, None, "/venv", code_dirs=[str(code)])


def test_the_fingerprint_follows_the_code_the_scenario_and_the_secrets(tmp_path):
    (tmp_path / "role.py").write_text("x = 1\n")
    first = print_of(tmp_path)
    assert print_of(tmp_path) == first
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "role.cpython-311.pyc").write_bytes(b"\0")
    assert print_of(tmp_path) == first                      # bytecode is not code
    (tmp_path / "role.py").write_text("x = 2\n")
    assert print_of(tmp_path) != first
    second = print_of(tmp_path)
    assert print_of(tmp_path, secrets={"a": "2"}) != second
    assert print_of(tmp_path, topology=load_scenario("complete")) != second


def inspection(sums, programs):
    lines = "".join(f"{digest}  {path}\n" for path, digest in sums.items())
    infos = [{"name": n, "statename": s} for n, s in programs.items()]
    return lines + verify.SEPARATOR + "\n" + xmlrpc.client.dumps((infos,), methodresponse=True)


def test_an_inspection_reads_back_the_sums_and_the_programs():
    text = inspection({"/etc/a b.conf": "ab" * 20}, {"quiz": "RUNNING", "nftables": "EXITED"})
    sums, programs = verify.parse_inspection(text)
    assert sums == {"/etc/a b.conf": "ab" * 20}
    assert programs == {"quiz": "RUNNING", "nftables": "EXITED"}
    assert verify.parse_inspection("garbage") == ({}, {})


def test_the_inspection_command_quotes_every_path():
    command = verify.inspect_command(["/etc/it's.conf"])
    assert "'/etc/it'\"'\"'s.conf'" in command and "getAllProcessInfo" in command


RECORD = {"fingerprint": "f", "boots": {"s1": "10@5"},
          "files": {"s1": {"/etc/quiz/quiz.env": "aa"}},
          "programs": {"s1": {"quiz": "RUNNING"}}}


def test_nothing_differs_when_the_hosts_hold_what_was_deployed():
    found = {"s1": ({"/etc/quiz/quiz.env": "aa"}, {"quiz": "RUNNING", "extra": "STOPPED"})}
    assert verify.differences(RECORD, "f", found, {"s1": "10@5"}) == []


def test_every_kind_of_drift_is_a_reason_to_deploy():
    found = {"s1": ({"/etc/quiz/quiz.env": "aa"}, {"quiz": "RUNNING"})}
    assert "changed" in verify.differences(RECORD, "g", found, {"s1": "10@5"})[0]
    assert verify.differences(RECORD, "f", found, {"s1": "11@7"}) == [
        "s1 restarted since the last deployment"]
    edited = {"s1": ({"/etc/quiz/quiz.env": "bb"}, {"quiz": "RUNNING"})}
    assert verify.differences(RECORD, "f", edited, {"s1": "10@5"}) == [
        "s1: /etc/quiz/quiz.env changed"]
    stopped = {"s1": ({"/etc/quiz/quiz.env": "aa"}, {"quiz": "STOPPED"})}
    assert verify.differences(RECORD, "f", stopped, {"s1": "10@5"}) == [
        "s1: quiz is STOPPED, was RUNNING"]
    assert verify.differences(RECORD, "f", {}, {"s1": "10@5"}) == [
        "s1: /etc/quiz/quiz.env changed", "s1: quiz is gone, was RUNNING"]


def test_a_record_keeps_only_settled_programs(tmp_path):
    verify.save(tmp_path, "f", {"s1": "1@2"}, {"s1": {"/a": "x"}},
                {"s1": {"quiz": "RUNNING", "nft": "EXITED", "broken": "FATAL"}})
    assert verify.load(tmp_path)["programs"] == {"s1": {"quiz": "RUNNING", "nft": "EXITED"}}
    verify.forget(tmp_path)
    assert verify.load(tmp_path) is None
