"""Creations safe to send twice: the one-time token of a creation form (``?once=``).

QUIZ runs on several servers behind HAProxy. When a server hangs with a POST
in hand, the balancer may not send that POST to another server: a quiz
created twice is worse than an error, so the user waits for the hung server
or the write timeout. Hence every form that creates something (a quiz, a tip,
a user) posts to an action URL carrying a fresh random token, ``?once=<32
hex>``, and the view records the token (quiz.models.Submission) in the very
transaction that creates the object. The same POST sent again (the balancer
retrying it elsewhere, which it does for a URL with ``once``; a double click)
meets the recorded token and is answered as the first was: a redirect to
the same place with the same message, nothing created, its image removed.

Rendering a form only draws a token (the template tag ``once_token``): no
row, no session, so GET pages stay stateless; an unused token costs nothing.
Detection is the insert itself: the token is the primary key, so a second
insert fails, and while the first transaction is still open PostgreSQL makes
it wait for the outcome, so two copies sent at once also create one object.
The insert comes last, just before the commit, to keep that wait short. A
POST without a token is served as before; a malformed one is refused (400),
because the balancer retries any POST carrying ``once`` and such a POST could
not be recognised when sent twice.
"""

import random
import re
import secrets
from datetime import timedelta
from functools import wraps

from django.contrib import messages
from django.db import IntegrityError, transaction
from django.http import HttpResponseBadRequest, HttpResponseRedirect
from django.utils import timezone

from quiz.models import Submission

PARAM = "once"
TOKEN_RE = re.compile(r"[0-9a-f]{32}")
KEPT = timedelta(days=1)  # a copy arrives within seconds; a day is plenty
PURGE_EVERY = 100          # about one recording in this many purges old tokens...
PURGE_BATCH = 1000         # ...at most this many: one short statement, ten times the rate of creations


class MalformedToken(ValueError):
    """The URL has ``once`` but not one token of ours."""


class Replayed(Exception):
    """This POST's token was recorded by an earlier one: answered by `replayable` as that one was."""


def new_token():
    """A fresh token for a creation form's action URL: 32 hex characters (128 random bits)."""
    return secrets.token_hex(16)


def token_of(request):
    """The request's token, or None without one; MalformedToken for anything else."""
    values = request.GET.getlist(PARAM)
    if not values:
        return None
    if len(values) != 1 or not TOKEN_RE.fullmatch(values[0]):
        raise MalformedToken(f"the form's address has a malformed {PARAM!r} token")
    return values[0]


def replayable(view):
    """For a creating view: refuse a malformed token, and answer a POST whose token was used as the first was.

    The view calls `record` inside its creating transaction (which raises
    Replayed, rolling the transaction back, when the token was used), and
    `first_answer` where it would refuse the input (a copy of a creation that
    went through may now be refused: the name is taken, the day's quota is
    full).
    """

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.method != "POST":
            return view(request, *args, **kwargs)
        try:
            token_of(request)
        except MalformedToken as exc:
            return HttpResponseBadRequest(f"Bad request: {exc}. Reload the form and send it again.\n",
                                          content_type="text/plain; charset=utf-8")
        try:
            return view(request, *args, **kwargs)
        except Replayed:
            answer = first_answer(request)
            if answer is None:  # the insert failed on a committed row, which is visible now
                raise RuntimeError(f"token {token_of(request)} was used, but its answer is not recorded") from None
            return answer

    return wrapper


def record(request, location, message=""):
    """Note this POST's token and its answer; Replayed if the token was used already.

    Call it inside the transaction that creates the object, last (see the
    module's docstring); the Replayed it raises rolls that transaction back.
    Without a token it does nothing.
    """
    token = token_of(request)
    if token is None:
        return
    try:
        with transaction.atomic():  # a savepoint: the failed insert is told apart from any other error
            Submission.objects.create(token=token, location=location, message=message)
    except IntegrityError:
        raise Replayed from None
    if random.randrange(PURGE_EVERY) == 0:
        # After the commit, outside the creation's transaction, so its row locks are not
        # held for the rest of it; robust: a failed purge must not fail a saved creation.
        transaction.on_commit(purge, robust=True)


def first_answer(request):
    """The answer the first POST with this request's token got (a redirect, its message again), or None."""
    token = token_of(request)
    if token is None:
        return None
    first = Submission.objects.filter(token=token).values_list("location", "message").first()
    if first is None:
        return None
    location, message = first
    if message:
        messages.success(request, message)
    return HttpResponseRedirect(location)


def purge():
    """Delete at most PURGE_BATCH tokens older than KEPT, in one statement."""
    old = Submission.objects.filter(created__lt=timezone.now() - KEPT).values("token")[:PURGE_BATCH]
    Submission.objects.filter(token__in=old).delete()
