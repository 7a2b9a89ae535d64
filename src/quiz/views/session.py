"""Log in (POST /session), log out (DELETE /session), the login form (GET /session)."""

import time

from django.contrib import messages
from django.contrib.auth import authenticate, login, logout
from django.http import HttpResponseRedirect
from django.shortcuts import render

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


def create(request):
    login_name = request.POST.get("login", "").strip()
    password = request.POST.get("password", "")
    redir = request.POST.get("redir", "/")
    usable = login_name and password and not has_nul(login_name)
    user = authenticate(request, username=login_name, password=password) if usable else None
    if user is None:
        messages.error(request, "Authentication has failed. Retry it again.")
        return login_form(request, login_name, redir)
    login(request, user)
    request.session["last_seen"] = int(time.time())
    return safe_redirect(request, redir, "/")


def destroy(request):
    logout(request)
    return HttpResponseRedirect("/session")
