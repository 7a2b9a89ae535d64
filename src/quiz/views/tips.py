"""Tips: create (any user), accept/reject (quiz author or admin), edit (tip author).

Routes as in the original: ``POST /quizzes/:qid/tips``,
``PUT /quizzes/:qid/tips/:tid/accept``, ``DELETE /quizzes/:qid/tips/:tid``,
``GET /quizzes/:qid/tips/:tid/edit`` and ``PUT /quizzes/:qid/tips/:tid``. Unlike
the original, the tip must belong to the quiz in the URL (else 404), so a quiz
author cannot moderate other people's tips through their own quiz.
"""

from django.conf import settings
from django.contrib import messages
from django.http import HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, render

from quiz.models import Quiz, Tip
from quiz.web import NUL_PROBLEM, has_nul, login_required, method_of, require, route, safe_redirect


def _may_moderate(user, quiz):
    return user.is_admin or quiz.author_id == user.id


@login_required
def create(request, quiz_id):
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    quiz = get_object_or_404(Quiz, pk=quiz_id)
    back = request.POST.get("redir") or f"/quizzes/{quiz.id}/play"
    text = request.POST.get("text", "").strip()
    if not text:
        messages.error(request, "The tip can't be empty.")
    elif has_nul(text):
        messages.error(request, NUL_PROBLEM)
    elif len(text) > 1000:
        messages.error(request, "Tips have at most 1000 characters.")
    elif Tip.objects.filter(quiz=quiz).count() >= settings.QUIZ_MAX_TIPS_PER_QUIZ:
        messages.error(request, f"This quiz already has the maximum of {settings.QUIZ_MAX_TIPS_PER_QUIZ} tips.")
    else:
        Tip.objects.create(quiz=quiz, author=request.user, text=text)
        messages.success(request, "Tip created successfully.")
    return safe_redirect(request, back, f"/quizzes/{quiz.id}/play")


def _tip(quiz_id, tip_id):
    quiz = get_object_or_404(Quiz, pk=quiz_id)
    tip = get_object_or_404(Tip.objects.select_related("author"), pk=tip_id, quiz=quiz)
    return quiz, tip


@login_required
def accept(request, quiz_id, tip_id):
    if method_of(request) != "PUT":
        return HttpResponseNotAllowed(["PUT", "POST"])
    quiz, tip = _tip(quiz_id, tip_id)
    require(_may_moderate(request.user, quiz))
    tip.accepted = True
    tip.save(update_fields=["accepted", "updated"])
    messages.success(request, "Tip accepted successfully.")
    return safe_redirect(request, request.POST.get("redir"), f"/quizzes/{quiz.id}")


@login_required
def tip_item(request, quiz_id, tip_id):
    quiz, tip = _tip(quiz_id, tip_id)
    return route(request, PUT=lambda: update(request, quiz, tip), DELETE=lambda: reject(request, quiz, tip))


def reject(request, quiz, tip):
    require(_may_moderate(request.user, quiz))
    tip.delete()
    messages.success(request, "Tip deleted successfully.")
    return safe_redirect(request, request.POST.get("redir"), f"/quizzes/{quiz.id}")


@login_required
def edit(request, quiz_id, tip_id):
    quiz, tip = _tip(quiz_id, tip_id)
    require(tip.author_id == request.user.id)
    return render(request, "quiz/tips/edit.html", {"quiz": quiz, "tip": tip})


def update(request, quiz, tip):
    require(tip.author_id == request.user.id)
    text = request.POST.get("text", "").strip()
    if not text or len(text) > 1000 or has_nul(text):
        messages.error(request, "The tip must have between 1 and 1000 characters.")
        return render(request, "quiz/tips/edit.html", {"quiz": quiz, "tip": tip})
    tip.text = text
    tip.accepted = False  # a changed tip goes back to moderation
    tip.save(update_fields=["text", "accepted", "updated"])
    messages.success(request, "Tip edited successfully.")
    return safe_redirect(request, f"/quizzes/{quiz.id}", "/")
