"""The JSON API under ``/api``, authenticated by a user's token in ``?token=``.

Every answer is built from explicit dictionaries (``quiz.queries.quiz_json``
and ``user_json``), never by dumping model instances, so no password hash and
no token can leak. The token is the credential, not a cookie, so these views
need no CSRF token; the random game of a token lives in the database
(``ApiGame``) because API clients have no session.
"""

import random
from functools import wraps

from django.http import JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt

from quiz.models import ApiGame, Quiz, User
from quiz.queries import QuizList, mark_favourites, quiz_json, quiz_row, user_json
from quiz.views.favourites import set_favourite
from quiz.views.play import random_quiz
from quiz.web import Page, method_of, page_number


def error(message, status):
    return JsonResponse({"error": message}, status=status)


def token_required(*methods):
    """Resolve ``?token=`` to ``request.token_owner``; 401 JSON if missing or unknown."""

    def decorate(view):
        @csrf_exempt
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            token = request.GET.get("token", "")
            owner = User.objects.filter(api_token=token).first() if token else None
            if owner is None:
                return error("Missing or invalid API token (?token=).", 401)
            method = method_of(request)
            if method not in methods and not (method == "HEAD" and "GET" in methods):
                response = error(f"Method {method} not allowed.", 405)
                response["Allow"] = ", ".join(methods)
                return response
            request.token_owner = owner
            return view(request, *args, **kwargs)

        return wrapper

    return decorate


@token_required("GET")
def token_owner(request):
    return JsonResponse(user_json(request.token_owner))


@token_required("GET")
def users(request):
    page = Page(User.objects.order_by("id"), page_number(request))
    return JsonResponse([user_json(user) for user in page.items], safe=False)


@token_required("GET")
def user(request, user_id):
    return JsonResponse(user_json(get_object_or_404(User, pk=user_id)))


def _quiz_list(request, author_id=None):
    owner = request.token_owner
    favourites = bool(request.GET.get("searchfavourites"))
    search = request.GET.get("search", "")
    page = QuizList(page_number(request), search, owner.id if favourites else None, author_id, viewer_id=owner.id)
    next_url = None
    if page.has_next:
        params = request.GET.copy()
        params["pageno"] = str(page.next)
        next_url = f"{request.path}?{params.urlencode()}"
    return JsonResponse({
        "quizzes": [quiz_json(row, favourite=row["favourite"]) for row in page.items],
        "pageno": page.number,
        "nextUrl": next_url,
    })


@token_required("GET")
def quizzes(request):
    return _quiz_list(request)


@token_required("GET")
def user_quizzes(request, user_id):
    get_object_or_404(User, pk=user_id)
    return _quiz_list(request, author_id=user_id)


@token_required("GET")
def quiz(request, quiz_id):
    row = quiz_row(get_object_or_404(Quiz.objects.select_related("author", "attachment"), pk=quiz_id))
    mark_favourites(request.token_owner, [row])
    return JsonResponse(quiz_json(row, favourite=row["favourite"]))


@token_required("PUT", "DELETE")
def favourite(request, quiz_id):
    item = get_object_or_404(Quiz, pk=quiz_id)
    on = method_of(request) == "PUT"
    set_favourite(request.token_owner, item, on)
    return JsonResponse({"quizId": item.id, "favourite": on})


@token_required("GET")
def random_one(request):
    item = random_quiz([])
    if item is None:
        return error("There are no quizzes.", 404)
    return JsonResponse(quiz_json(quiz_row(item)))


@token_required("GET")
def check(request, quiz_id):
    item = get_object_or_404(Quiz, pk=quiz_id)
    answer = request.GET.get("answer", "")
    return JsonResponse({"quizId": item.id, "answer": answer, "result": item.is_right(answer)})


@token_required("GET")
def random10wa(request):
    """Ten random quizzes *with* their answers (the original's offline game)."""
    ids = list(Quiz.objects.values_list("id", flat=True))
    chosen = random.sample(ids, min(10, len(ids)))
    items = Quiz.objects.filter(id__in=chosen).select_related("author", "attachment")
    return JsonResponse([quiz_json(quiz_row(item), answer=item.answer) for item in items], safe=False)


def _game(owner):
    game, _ = ApiGame.objects.get_or_create(user=owner)
    return game


def _next(game):
    item = random_quiz(game.answered)
    game.current = item.id if item else None
    game.save(update_fields=["current"])
    if item is None:
        return {"quiz": None, "score": len(game.answered), "nomore": True}
    return {"quiz": quiz_json(quiz_row(item)), "score": len(game.answered), "nomore": False}


@token_required("GET")
def randomplay_new(request):
    game = _game(request.token_owner)
    game.answered = []
    game.save(update_fields=["answered"])
    return JsonResponse(_next(game))


@token_required("GET")
def randomplay_next(request):
    return JsonResponse(_next(_game(request.token_owner)))


@token_required("GET")
def randomplay_check(request):
    game = _game(request.token_owner)
    if game.current is None:
        return error("No quiz in play: ask /api/quizzes/randomplay/next first.", 409)
    item = Quiz.objects.filter(pk=game.current).first()
    if item is None:
        return error("The quiz in play was deleted: ask for the next one.", 409)
    answer = request.GET.get("answer", "")
    result = item.is_right(answer)
    if result:
        if item.id not in game.answered:
            game.answered.append(item.id)
        score = len(game.answered)
    else:
        score = len(game.answered)
        game.answered = []
    game.current = None
    game.save(update_fields=["answered", "current"])
    return JsonResponse({"quizId": item.id, "answer": answer, "result": result, "score": score})
