"""The simple pages: home, credits, go back, and the files under /static and /uploads."""

import os

from django.http import FileResponse, Http404, HttpResponseRedirect
from django.shortcuts import render

from quiz import standby, uploads

STATIC_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "static", "quiz")
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml"}


def home(request):
    return render(request, "quiz/home.html")


def author(request):
    return render(request, "quiz/author.html")


def goback(request):
    """Back to the last list page seen (kept only in an already existing session), else home."""
    target = request.session.get("goback") if request.session.session_key else None
    return HttpResponseRedirect(target or "/")


def remember_list_page(request):
    """Note the list page for /goback, but never create a session just for that.

    Bookkeeping: a page read from the standby, which can write nothing, leaves it as it was.
    """
    if standby.reading():
        return
    if request.session.session_key and request.session.get("goback") != request.get_full_path():
        request.session["goback"] = request.get_full_path()


def static_file(request, name):
    """The app's own CSS/JS (a handful of files; no separate web server in front of gunicorn)."""
    ext = os.path.splitext(name)[1]
    if "/" in name or name.startswith(".") or ext not in STATIC_TYPES:
        raise Http404
    path = os.path.join(STATIC_DIR, name)
    if not os.path.isfile(path):
        raise Http404
    response = FileResponse(open(path, "rb"), content_type=STATIC_TYPES[ext])
    response["Cache-Control"] = "public, max-age=3600"
    return response


def upload(request, name):
    """A stored image from the shared media root. Names are random and never reused: cache hard."""
    path = uploads.path_of(name)
    if path is None or not os.path.isfile(path):
        raise Http404
    ext = name.rsplit(".", 1)[1]
    response = FileResponse(open(path, "rb"), content_type=uploads.CONTENT_TYPES[ext])
    response["Cache-Control"] = "public, max-age=86400, immutable"
    return response
