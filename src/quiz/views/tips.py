"""Tips: create (any user), accept/reject (quiz author or admin), edit (tip author).

Routes as in the original: ``POST /quizzes/:qid/tips``,
``PUT /quizzes/:qid/tips/:tid/accept``, ``DELETE /quizzes/:qid/tips/:tid``,
``GET /quizzes/:qid/tips/:tid/edit`` and ``PUT /quizzes/:qid/tips/:tid``. Unlike
the original, the tip must belong to the quiz in the URL (else 404), so a quiz
author cannot moderate other people's tips through their own quiz.
"""

from django.conf import settings
from django.contrib import messages
from django.db import transaction
from django.http import HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, render

from quiz import once
from quiz.models import Quiz, Tip
from quiz.web import NUL_PROBLEM, has_nul, login_required, method_of, require, route, safe_redirect


def _may_moderate(user, quiz):
    return user.is_admin or quiz.author_id == user.id


CREATED = "Tip created successfully."


def _problem(quiz, text):
    """Why the new tip ``text`` is refused, or None."""
    if not text:
        return "The tip can't be empty."
    if has_nul(text):
        return NUL_PROBLEM
    if len(text) > 1000:
        return "Tips have at most 1000 characters."
    if Tip.objects.filter(quiz=quiz).count() >= settings.QUIZ_MAX_TIPS_PER_QUIZ:
        return f"This quiz already has the maximum of {settings.QUIZ_MAX_TIPS_PER_QUIZ} tips."
    return None


@login_required
@once.replayable
def create(request, quiz_id):
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    quiz = get_object_or_404(Quiz, pk=quiz_id)
    play = f"/quizzes/{quiz.id}/play"
    answer = safe_redirect(request, request.POST.get("redir") or play, play)
    text = request.POST.get("text", "").strip()
    problem = _problem(quiz, text)
    if problem is not None:
        # A copy of a tip that went through may be refused here (the quiz's 50 tips now reached).
        replay = once.first_answer(request)
        if replay is not None:
            return replay
        messages.error(request, problem)
        return answer
    with transaction.atomic():  # a copy of this POST (same ?once= token) fails at once.record and creates nothing
        Tip.objects.create(quiz=quiz, author=request.user, text=text)
        once.record(request, answer["Location"], CREATED)
    messages.success(request, CREATED)
    return answer


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
