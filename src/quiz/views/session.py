"""Log in (POST /session), log out (DELETE /session), the login form (GET /session).

Logins are throttled per account name (quiz.throttle): while a name is
blocked, POST /session answers 429 with ``Retry-After`` and the form saying
how long to wait, before any password is checked.
"""

import time

from django.contrib import messages
from django.contrib.auth import authenticate, login, logout
from django.http import HttpResponseRedirect
from django.shortcuts import render

from quiz import throttle
from quiz.web import has_nul, route, safe_redirect


def session(request):
    return route(
        request,
        GET=lambda: login_form(request),
        POST=lambda: create(request),
        DELETE=lambda: destroy(request),
    )


def login_form(request, login_name="", redir=None, status=200):
    redir = redir if redir is not None else request.GET.get("redir", "/")
    return render(request, "quiz/session.html", {"login": login_name, "redir": redir}, status=status)


def throttled(request, login_name, redir, wait):
    """429: the form again, saying how long to wait; nothing was checked."""
    unit = "second" if wait == 1 else "seconds"
    messages.error(request, f"Too many failed logins for this account. Wait {wait} {unit} and try again.")
    response = login_form(request, login_name, redir, status=429)
    response["Retry-After"] = str(wait)
    return response


def create(request):
    login_name = request.POST.get("login", "").strip()
    password = request.POST.get("password", "")
    redir = request.POST.get("redir", "/")
    if not (login_name and password and not has_nul(login_name)):
        # Nothing to check, so nothing to count: no password can be guessed this way.
        return failed(request, login_name, redir)
    name = throttle.key(login_name)
    failures, wait = throttle.state(name)
    if wait:
        return throttled(request, login_name, redir, wait)
    user = authenticate(request, username=login_name, password=password)
    if user is None:
        wait = throttle.failed(name)
        return throttled(request, login_name, redir, wait) if wait else failed(request, login_name, redir)
    if failures:
        throttle.succeeded(name)
    login(request, user)
    request.session["last_seen"] = int(time.time())
    return safe_redirect(request, redir, "/")


def failed(request, login_name, redir):
    messages.error(request, "Authentication has failed. Retry it again.")
    return login_form(request, login_name, redir)


def destroy(request):
    logout(request)
    return HttpResponseRedirect("/session")
