"""Playing: one quiz (play/check) and the random game (randomplay/randomcheck).

The random game's progress (ids answered right) lives in the database
session, so it survives the load balancer sending each answer to another
server. Like the original, play and check are GET forms; they change no data,
only the visitor's own game in their session. A visitor who never answers
right never gets a session.
"""

import random

from django.http import Http404
from django.shortcuts import get_object_or_404, render

from quiz.models import Quiz
from quiz.queries import quiz_page, quiz_row
from quiz.web import JINJA2

GAME_KEY = "randomplay"


def play(request, quiz_id):
    quiz, tips = quiz_page(quiz_id, request.user)
    if quiz is None:
        raise Http404
    return render(request, "quiz/quizzes/play.html", using=JINJA2, context={
        "quiz": quiz, "answer": request.GET.get("answer", ""), "tips": tips,
    })


def check(request, quiz_id):
    quiz = get_object_or_404(Quiz, pk=quiz_id)
    answer = request.GET.get("answer", "")
    return render(request, "quiz/quizzes/result.html", {"quiz": quiz, "answer": answer, "result": quiz.is_right(answer)})


def _answered(request):
    if not request.session.session_key:
        return []
    return list(request.session.get(GAME_KEY, []))


def random_quiz(exclude):
    """A random quiz whose id is not in ``exclude``, or None: two small queries, no ORDER BY random()."""
    queryset = Quiz.objects.exclude(id__in=exclude) if exclude else Quiz.objects.all()
    count = queryset.count()
    if count == 0:
        return None
    return queryset.select_related("attachment", "author").order_by("id")[random.randrange(count)]


def randomplay(request):
    answered = _answered(request)
    quiz = random_quiz(answered)
    if quiz is None:
        if GAME_KEY in request.session:
            del request.session[GAME_KEY]  # the game restarts
        return render(request, "quiz/random/nomore.html", {"score": len(answered)})
    return render(request, "quiz/random/play.html", {"quiz": quiz_row(quiz), "score": len(answered)})


def randomcheck(request, quiz_id):
    quiz = get_object_or_404(Quiz, pk=quiz_id)
    answer = request.GET.get("answer", "")
    answered = _answered(request)
    result = quiz.is_right(answer)
    if result:
        if quiz.id not in answered:
            answered.append(quiz.id)
            request.session[GAME_KEY] = answered
        score = len(answered)
    else:
        score = len(answered)
        if GAME_KEY in request.session:
            del request.session[GAME_KEY]
    return render(request, "quiz/random/result.html", {"quiz": quiz, "answer": answer, "result": result, "score": score})
