"""The "back in a moment" page, one text for the app's 503 and the load balancer's.

While the database fails over (5-10 s) a server answers "try again" instead
of an error (quiz.outage); when no server can answer at all, HAProxy answers
for them from an ``errorfile``. Users should read the same calm message from
both, so both come from here. This module is pure (no Django): deployment
renders the errorfile with ``haproxy_errorfile()`` without setting Django up.
The page is self-contained (inline CSS, no image, no script, no favicon
fetch): when it is shown, nothing else may be reachable. It is ASCII only
(entities for the rest), so its length in bytes is its length in characters,
whatever encoding the file is written with.
"""

RETRY_AFTER = 5  # seconds: a failover takes 5-10 s, and the balancer retries reads itself

TITLE = "QUIZ is back in a moment"
READ = "Please try again in a few seconds."
WRITE = "Your change was not saved, please try again."
BALANCER = "If you were saving a change, it was not saved: please try again in a few seconds."

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>QUIZ &middot; back in a moment</title>
<link rel="icon" href="data:,">
<style>
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1f2933;background:#f6f7f9}
header{padding:.6rem 1.2rem;background:#2456a6}
header a{color:#fff;font-weight:700;font-size:1.3rem;text-decoration:none;letter-spacing:.05em}
main{max-width:56rem;margin:1.5rem auto;padding:0 1.2rem}
a{color:#2456a6}
.msg{padding:.5rem .8rem;border-left:4px solid #2456a6;border-radius:4px;background:#fff}
footer{text-align:center;color:#6b7785;font-size:.85rem;padding:2rem 0}
</style>
</head>
<body>
<header><a href="/">QUIZ</a></header>
<main>
<h1>%(title)s</h1>
<p class="msg">%(detail)s</p>
<p><a href="/">Home</a></p>
</main>
<footer>QUIZ &middot; a quiz game for learning web development</footer>
</body>
</html>
"""


def page(detail=READ):
    """The HTML page; ``detail`` is READ, WRITE or BALANCER."""
    return _PAGE % {"title": TITLE, "detail": detail}


def haproxy_errorfile():
    """The raw HTTP/1.0 response HAProxy's ``errorfile 503`` serves when no server can answer.

    HAProxy sends the file as it is: status line and headers with CRLF line
    ends, a blank line, the body; the whole must fit in one buffer (well under
    8 KB here). ``Connection: close`` and Content-Length delimit the body.
    """
    body = page(BALANCER)
    head = [
        "HTTP/1.0 503 Service Unavailable",
        "Cache-Control: no-cache",
        "Connection: close",
        "Content-Type: text/html; charset=utf-8",
        f"Retry-After: {RETRY_AFTER}",
        f"Content-Length: {len(body)}",
    ]
    return "\r\n".join(head) + "\r\n\r\n" + body
