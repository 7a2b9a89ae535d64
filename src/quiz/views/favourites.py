"""The favourite star: ``PUT`` and ``DELETE /users/:uid/favourites/:qid``.

The star's script sends a real PUT/DELETE with the CSRF token in a header and
gets JSON back; without script the star is a form (POST + ``_method``) and the
answer is a redirect back to the page it came from.
"""

from django.db import IntegrityError, transaction
from django.http import HttpResponseNotAllowed, JsonResponse
from django.shortcuts import get_object_or_404

from quiz.models import Favourite, Quiz, User
from quiz.web import admin_or_self, login_required, method_of, require, safe_redirect


@login_required
def favourite(request, user_id, quiz_id):
    method = method_of(request)
    if method not in ("PUT", "DELETE"):
        return HttpResponseNotAllowed(["PUT", "DELETE"])
    user = get_object_or_404(User, pk=user_id)
    require(admin_or_self(request.user, user.id))
    quiz = get_object_or_404(Quiz, pk=quiz_id)
    if method == "PUT":
        set_favourite(user, quiz, True)
    else:
        set_favourite(user, quiz, False)
    if request.method in ("PUT", "DELETE") or request.headers.get("Accept", "").startswith("application/json"):
        return JsonResponse({"quizId": quiz.id, "favourite": method == "PUT"})
    return safe_redirect(request, request.POST.get("redir"), f"/quizzes/{quiz.id}")


def set_favourite(user, quiz, on):
    """Idempotent: starring twice or unstarring a non-favourite is no change."""
    if on:
        try:
            with transaction.atomic():
                Favourite.objects.get_or_create(user=user, quiz=quiz)
        except IntegrityError:  # a concurrent request starred it first
            pass
    else:
        Favourite.objects.filter(user=user, quiz=quiz).delete()
