"""What a scripted QUIZ user needs to fill in forms: CSRF tokens, multipart bodies, PNG images.

Two programs act as QUIZ users from inside the client hosts: the checks
(check/client.py) and the chaos load generator (chaos/load.py). Both run with
the standard library only, so the pieces of a browser they share live here,
free of any transport: reading the CSRF token a form page carries and the
address its form posts to, encoding a multipart/form-data body (a quiz with
its image), and making a valid PNG in code (no image library on the client).
"""

import html
import re
import secrets
import struct
import urllib.parse
import zlib

CSRF_RE = re.compile(rb'name="csrfmiddlewaretoken" value="([^"]+)"')
FORM_RE = re.compile(rb"<form\b[^>]*>", re.IGNORECASE)
FORM_ATTR_RE = re.compile(rb'\s(method|action)="([^"]*)"', re.IGNORECASE)


def csrf_token(page):
    """The CSRF token of the first form on ``page`` (bytes), or None if it has none."""
    match = CSRF_RE.search(page)
    return match.group(1).decode() if match else None


def form_action(page, path):
    """Where a browser posts the form of ``page`` (bytes) that goes to ``path``: its action, query kept.

    The first POST form whose action's path is ``path``, or None. The query
    matters: QUIZ's creation forms post to ``/quizzes?once=<token>``, the
    one-time token that makes the POST safe to send twice, so a user that
    posted to a path of its own would send its creations without one.
    """
    for tag in FORM_RE.findall(page):
        attrs = {name.decode().lower(): html.unescape(value.decode(errors="replace"))
                 for name, value in FORM_ATTR_RE.findall(tag)}
        action = urllib.parse.urlsplit(attrs.get("action", ""))
        if attrs.get("method", "get").lower() == "post" and action.path == path:
            return action.path + (f"?{action.query}" if action.query else "")
    return None


def multipart(fields, files):
    """Encode ``fields`` ({name: text}) and ``files`` ({name: (filename, bytes, mime)}).

    Returns (body, content_type) for a multipart/form-data POST.
    """
    boundary = "quizstack" + secrets.token_hex(8)
    parts = []
    for key, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'
                     f"{value}\r\n".encode())
    for key, (filename, content, mime) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"; '
                     f'filename="{filename}"\r\nContent-Type: {mime}\r\n\r\n'.encode()
                     + content + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def png(width=8, height=8, rgb=(200, 40, 40), pixels=None):
    """A valid RGB PNG: one colour, or ``pixels`` (width*height*3 bytes, row by row)."""
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
    if pixels is None:
        pixels = bytes(rgb) * (width * height)
    if len(pixels) != width * height * 3:
        raise ValueError(f"{width}x{height} RGB needs {width * height * 3} bytes, not {len(pixels)}")
    row = width * 3
    raw = b"".join(b"\x00" + pixels[y * row:(y + 1) * row] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))
