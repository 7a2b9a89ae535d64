"""Small helpers shared by the views: method override, access checks, paging.

The original QUIZ sent PUT and DELETE from HTML forms as a POST carrying
``_method``; ``method_of`` reads that, so routes keep the original's verbs
(``PUT /quizzes/:id``, ``DELETE /quizzes/:id`` ...) while every state change
still arrives as a POST protected by Django's CSRF check.
"""

import math
from functools import wraps
from urllib.parse import quote

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.utils.http import url_has_allowed_host_and_scheme

OVERRIDABLE = ("PUT", "DELETE")

# The template engine of the busiest pages (settings.TEMPLATES, quiz.jinja): render(..., using=JINJA2).
JINJA2 = "jinja2"


def method_of(request):
    """The verb the client meant: POST + ``_method=PUT|DELETE`` (form or query) counts as PUT/DELETE."""
    if request.method == "POST":
        override = (request.POST.get("_method") or request.GET.get("_method") or "").upper()
        if override in OVERRIDABLE:
            return override
    return request.method


def route(request, **handlers):
    """Call the handler for the request's (overridden) verb: ``route(request, GET=show, PUT=update)``."""
    method = method_of(request)
    if method == "HEAD" and "GET" in handlers:
        method = "GET"
    handler = handlers.get(method)
    if handler is None:
        return HttpResponseNotAllowed(sorted(handlers))
    return handler()


def login_url(request):
    return "/session?redir=" + quote(request.get_full_path())


def login_required(view):
    """Anonymous visitors go to the login form, which brings them back afterwards."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return HttpResponseRedirect(login_url(request))
        return view(request, *args, **kwargs)

    return wrapper


def admin_or_self(user, owner_id):
    return user.is_authenticated and (user.is_admin or user.id == owner_id)


def require(condition):
    """403 unless ``condition``: the user is known but not allowed."""
    if not condition:
        raise PermissionDenied


def safe_redirect(request, target, fallback):
    """Redirect to ``target`` only if it is a path on this site (no open redirect)."""
    if (target and target.startswith("/") and target.isprintable()
            and url_has_allowed_host_and_scheme(target, allowed_hosts=None)):
        return HttpResponseRedirect(target)
    return HttpResponseRedirect(fallback)


MAX_PAGE = 10**9  # beyond this an OFFSET would overflow PostgreSQL's bigint


def page_number(request):
    try:
        return min(MAX_PAGE, max(1, int(request.GET.get("pageno", "1"))))
    except ValueError:
        return 1


NUL_PROBLEM = "Null characters are not allowed."


def has_nul(*values):
    """PostgreSQL text can't hold NUL characters: such input is refused with a message, not a 500."""
    return any("\x00" in value for value in values)


class Page:
    """One page of a queryset: ``page.items`` and what the pager needs; two queries at most."""

    def __init__(self, queryset, pageno, size=None):
        size = size or settings.QUIZ_PAGE_SIZE
        self.count = queryset.count()
        self.pages = max(1, math.ceil(self.count / size))
        self.number = min(pageno, self.pages)
        start = (self.number - 1) * size
        self.items = list(queryset[start:start + size]) if self.count else []
        self.has_previous = self.number > 1
        self.has_next = self.number < self.pages
        self.previous = self.number - 1
        self.next = self.number + 1
