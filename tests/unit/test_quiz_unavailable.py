"""The "back in a moment" page: the errorfile HAProxy serves when no server can answer.

Pure text, no Django: deployment renders it without setting Django up, and
HAProxy loads it only if it is a whole HTTP response that fits its buffer.
"""

import subprocess
import sys

from quiz import unavailable


def _split(raw):
    head, blank, body = raw.partition("\r\n\r\n")
    assert blank, "no blank line between the headers and the body"
    lines = head.split("\r\n")
    return lines[0], dict(line.split(": ", 1) for line in lines[1:]), body


def test_the_errorfile_is_a_whole_http_1_0_503_response():
    status, headers, body = _split(unavailable.haproxy_errorfile())
    assert status == "HTTP/1.0 503 Service Unavailable"
    assert headers == {
        "Cache-Control": "no-cache",
        "Connection": "close",
        "Content-Type": "text/html; charset=utf-8",
        "Retry-After": "5",
        "Content-Length": str(len(body.encode())),
    }


def test_the_header_lines_end_in_crlf_and_nowhere_a_bare_lf():
    raw = unavailable.haproxy_errorfile()
    head = raw.partition("\r\n\r\n")[0] + "\r\n"
    assert "\n" not in head.replace("\r\n", "")
    assert "\r" not in head.replace("\r\n", "")


def test_it_fits_haproxy_s_buffer_with_room_to_spare():
    raw = unavailable.haproxy_errorfile()
    assert raw.isascii()  # its length in bytes whatever encoding writes it
    assert len(raw.encode()) < 4096  # HAProxy's buffer is 16 KB by default; well under 8 KB


def test_the_page_is_self_contained_and_says_try_again():
    body = _split(unavailable.haproxy_errorfile())[2]
    assert body.startswith("<!DOCTYPE html>") and body.rstrip().endswith("</html>")
    assert "QUIZ is back in a moment" in body and "it was not saved" in body
    for external in ("http://", "https://", "<script", "<img", "stylesheet", "@import", "url("):
        assert external not in body
    assert '<link rel="icon" href="data:,">' in body  # no favicon request either


def test_the_app_and_the_balancer_show_the_same_page():
    """Users see one message whoever answers; only the sentence about their change differs."""
    write, read, balancer = (unavailable.page(d) for d in (unavailable.WRITE, unavailable.READ, unavailable.BALANCER))
    assert "Your change was not saved, please try again." in write
    assert write.replace(unavailable.WRITE, unavailable.BALANCER) == balancer
    assert read.replace(unavailable.READ, unavailable.BALANCER) == balancer
    assert _split(unavailable.haproxy_errorfile())[2] == balancer


def test_rendering_it_needs_no_django():
    script = ("import sys, quiz.unavailable as u; u.haproxy_errorfile(); "
              "sys.exit(any(m.split('.')[0] == 'django' for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", script], timeout=30).returncode == 0


def test_haproxy_itself_accepts_it(tmp_path):
    """The service's own checker: ``haproxy -c`` parses every errorfile and refuses a bad one."""
    import shutil

    import pytest

    haproxy = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")
    if not haproxy:
        pytest.skip("haproxy is not installed")
    errorfile = tmp_path / "503.http"
    errorfile.write_bytes(unavailable.haproxy_errorfile().encode())
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        "defaults\n    mode http\n    timeout connect 1s\n    timeout client 1s\n    timeout server 1s\n"
        f"    errorfile 503 {errorfile}\n"
        "frontend quiz\n    bind 127.0.0.1:8080\n    default_backend quiz_servers\n"
        "backend quiz_servers\n    server s1 127.0.0.1:8000\n")
    result = subprocess.run([haproxy, "-c", "-f", str(config)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
