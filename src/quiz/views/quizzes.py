"""Quizzes: list (HTML and JSON), a user's quizzes, show, create, edit, update, delete.

Routes mirror the original Express app: ``GET /quizzes``, ``POST /quizzes``,
``GET /quizzes/:id``, ``PUT /quizzes/:id``, ``DELETE /quizzes/:id`` (the last two
as POST + ``_method`` from forms).
"""

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.db import transaction
from django.http import Http404, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from quiz import once, uploads
from quiz.models import Quiz, User
from quiz.queries import QuizList, quiz_json, quiz_page, quiz_row
from quiz.views.pages import remember_list_page
from quiz.web import JINJA2, NUL_PROBLEM, has_nul, login_required, page_number, require, route


def quiz_collection(request, format=None):
    if format not in (None, "html", "json"):
        return HttpResponse(f"Format {format!r} not acceptable: use .html or .json\n", status=406, content_type="text/plain")
    if format == "json":
        if request.method not in ("GET", "HEAD"):
            return HttpResponse(status=405)
        return index(request, as_json=True)
    return route(request, GET=lambda: index(request), POST=lambda: create(request))


def _list_page(request, author_id=None):
    search = request.GET.get("search", "")
    favourites = request.GET.get("searchfavourites") and request.user.is_authenticated
    viewer = request.user.id if request.user.is_authenticated else None
    page = QuizList(page_number(request), search, viewer if favourites else None, author_id, viewer_id=viewer)
    return page, search, bool(favourites)


def index(request, as_json=False, author=None):
    page, search, favourites = _list_page(request, author.id if author else None)
    if as_json:
        logged_in = request.user.is_authenticated
        data = [quiz_json(row, favourite=row["favourite"] if logged_in else None) for row in page.items]
        return JsonResponse(data, safe=False)
    remember_list_page(request)
    if author is None:
        title = "Questions"
    elif author.id == request.user.id:
        title = "My Questions"
    else:
        title = f"Questions of {author.username}"
    return render(request, "quiz/quizzes/index.html", using=JINJA2, context={
        "page": page, "quizzes": page.items, "search": search, "searchfavourites": favourites,
        "title": title, "list_path": request.path, "logged_in": request.user.is_authenticated,
    })


@login_required
def user_quizzes(request, user_id):
    author = get_object_or_404(User, pk=user_id)
    return index(request, author=author)


def _may_change(user, quiz):
    return user.is_authenticated and (user.is_admin or quiz.author_id == user.id)


def _form(request, quiz, template, status=200):
    return render(request, template, {"quiz": quiz}, status=status)


def _validate(request, quiz):
    """Copy the form's fields onto ``quiz``; return the list of problems (empty: valid)."""
    quiz.question = request.POST.get("question", "").strip()
    quiz.answer = request.POST.get("answer", "").strip()
    problems = []
    if not quiz.question:
        problems.append("The question can't be empty.")
    if not quiz.answer:
        problems.append("The answer can't be empty.")
    if len(quiz.question) > 255 or len(quiz.answer) > 255:
        problems.append("Questions and answers have at most 255 characters.")
    if has_nul(quiz.question, quiz.answer):
        problems.append(NUL_PROBLEM)
    return problems


@login_required
def new(request):
    return _form(request, Quiz(), "quiz/quizzes/new.html")


CREATED = "Quiz created successfully."


@login_required
@once.replayable
def create(request):
    quiz = Quiz(author=request.user)
    problems = _validate(request, quiz)
    since = timezone.now() - timedelta(days=1)
    if Quiz.objects.filter(author=request.user, created__gte=since).count() >= settings.QUIZ_MAX_QUIZZES_PER_DAY:
        problems.append(f"You can create at most {settings.QUIZ_MAX_QUIZZES_PER_DAY} quizzes a day.")
    image = request.FILES.get("image")
    if not problems:
        try:
            # A copy of this POST (same ?once= token) fails at once.record: all of it is
            # rolled back and its image removed (NewFiles), and it is answered as the first.
            with transaction.atomic(), uploads.NewFiles() as new_files:
                if image:
                    quiz.attachment = uploads.store_image(image, new_files)
                quiz.save()
                once.record(request, f"/quizzes/{quiz.id}", CREATED)
        except uploads.UploadRejected as exc:
            problems.append(str(exc))
    if problems:
        # A copy of a creation that went through may be refused here (the day's quota now full).
        replay = once.first_answer(request)
        if replay is not None:
            return replay
        for problem in problems:
            messages.error(request, problem)
        return _form(request, quiz, "quiz/quizzes/new.html")
    messages.success(request, CREATED)
    return HttpResponseRedirect(f"/quizzes/{quiz.id}")


def quiz_item(request, quiz_id, format=None):
    if format not in (None, "html", "json"):
        return HttpResponse("Format not acceptable: use .html or .json\n", status=406, content_type="text/plain")
    if format == "json":
        return JsonResponse(quiz_json(quiz_row(get_object_or_404(Quiz.objects.select_related("author", "attachment"),
                                                                 pk=quiz_id))))
    return route(
        request,
        GET=lambda: show(request, quiz_id),
        PUT=lambda: update(request, get_object_or_404(Quiz.objects.select_related("attachment"), pk=quiz_id)),
        DELETE=lambda: destroy(request, get_object_or_404(Quiz.objects.select_related("attachment"), pk=quiz_id)),
    )


def show(request, quiz_id):
    viewer = request.user.id if request.user.is_authenticated else None
    quiz, tips = quiz_page(quiz_id, request.user)
    if quiz is None:
        raise Http404
    may_change = viewer is not None and (request.user.is_admin or quiz["author_id"] == viewer)
    return render(request, "quiz/quizzes/show.html", using=JINJA2, context={
        "quiz": quiz, "tips": tips, "may_change": may_change, "logged_in": viewer is not None,
    })


@login_required
def edit(request, quiz_id):
    quiz = get_object_or_404(Quiz.objects.select_related("attachment"), pk=quiz_id)
    require(_may_change(request.user, quiz))
    return _form(request, quiz, "quiz/quizzes/edit.html")


@login_required
def update(request, quiz):
    require(_may_change(request.user, quiz))
    problems = _validate(request, quiz)
    image = request.FILES.get("image")
    keep = bool(request.POST.get("keepAttachment"))
    if not problems:
        try:
            with transaction.atomic(), uploads.NewFiles() as new_files:
                old = quiz.attachment
                quiz.attachment = uploads.edited(old, image, keep, new_files)
                quiz.save()
                uploads.discard_replaced(old, quiz.attachment_id)
        except uploads.UploadRejected as exc:
            problems.append(str(exc))
    if problems:
        for problem in problems:
            messages.error(request, problem)
        return _form(request, quiz, "quiz/quizzes/edit.html")
    messages.success(request, "Quiz edited successfully.")
    return HttpResponseRedirect(f"/quizzes/{quiz.id}")


@login_required
def destroy(request, quiz):
    require(_may_change(request.user, quiz))
    with transaction.atomic():
        attachment = quiz.attachment
        quiz.delete()  # tips and favourites go with it (ON DELETE CASCADE in Django)
        uploads.delete_attachment(attachment)
    messages.success(request, "Quiz deleted successfully.")
    return HttpResponseRedirect("/goback")
