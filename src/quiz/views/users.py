"""Users: list, profile, create (admin, or anyone with QUIZ_OPEN_REGISTER), edit, delete, API token.

Routes as in the original: ``GET/POST /users``, ``GET/PUT/DELETE /users/:id``,
``GET /users/new``, ``GET /users/:id/edit`` and ``POST /users/:id/token``.
Usernames are immutable; a blank password on edit leaves it unchanged. A
password someone chooses (sign-up, edit) must pass the password validators
(settings.AUTH_PASSWORD_VALIDATORS); a weak one is refused with their messages.
"""

import re

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render

from quiz import once, uploads
from quiz.models import User
from quiz.web import Page, admin_or_self, login_required, page_number, require, route

USERNAME_RE = re.compile(r"^[\w.@+-]{1,150}$")


def may_register(user):
    return settings.QUIZ_OPEN_REGISTER or (user.is_authenticated and user.is_admin)


def user_collection(request):
    return route(request, GET=lambda: index(request), POST=lambda: create(request))


@login_required
def index(request):
    page = Page(User.objects.order_by("username"), page_number(request))
    return render(request, "quiz/users/index.html", {"page": page, "users": page.items, "open_register": settings.QUIZ_OPEN_REGISTER})


def new(request):
    if not may_register(request.user):
        if not request.user.is_authenticated:
            return HttpResponseRedirect("/session?redir=/users/new")
        require(False)
    return render(request, "quiz/users/new.html", {"username": ""})


def _password_problems(password, confirmation, required, user):
    """What is wrong with a password someone chose for ``user``: the form's messages (empty: none).

    A new password must pass settings.AUTH_PASSWORD_VALIDATORS (length,
    common passwords, digits only, too close to the username); their own
    messages say why.
    """
    if required and not password:
        return ["The password can't be empty."]
    if password != confirmation:
        return ["The password and its confirmation don't match."]
    if password:
        try:
            validate_password(password, user)
        except ValidationError as exc:
            return list(exc.messages)
    return []


@once.replayable
def create(request):
    if not may_register(request.user):
        if not request.user.is_authenticated:
            return HttpResponseRedirect("/session?redir=/users/new")
        require(False)
    username = request.POST.get("username", "").strip()
    password = request.POST.get("password", "")
    problems = []
    if not USERNAME_RE.match(username):
        problems.append("The username must have 1 to 150 letters, digits or . @ + - _")
    elif User.objects.filter(username=username).exists():
        problems.append(f'User "{username}" already exists.')
    problems += _password_problems(password, request.POST.get("password_confirmation", ""), required=True,
                                   user=User(username=username))
    image = request.FILES.get("image")
    if not problems:
        try:
            # A copy of this POST (same ?once= token) fails at once.record: all of it is
            # rolled back and its photo removed (NewFiles), and it is answered as the first.
            with transaction.atomic(), uploads.NewFiles() as new_files:
                photo = uploads.store_image(image, new_files) if image else None
                user = User.objects.create_user(username, password, photo=photo)
                location = f"/users/{user.id}" if request.user.is_authenticated else "/session"
                message = f'User "{user.username}" created successfully.'
                once.record(request, location, message)
        except uploads.UploadRejected as exc:
            problems.append(str(exc))
        except IntegrityError:
            # Taken since the check above, by a request still open then: someone else's, or a
            # copy of this one (PostgreSQL made the insert wait for it; answered below).
            problems.append(f'User "{username}" already exists.')
    if problems:
        replay = once.first_answer(request)  # a copy of a creation that went through: the name is taken
        if replay is not None:
            return replay
        for problem in problems:
            messages.error(request, problem)
        return render(request, "quiz/users/new.html", {"username": username})
    messages.success(request, message)
    return HttpResponseRedirect(location)


@login_required
def user_item(request, user_id):
    user = get_object_or_404(User.objects.select_related("photo"), pk=user_id)
    return route(
        request,
        GET=lambda: show(request, user),
        PUT=lambda: update(request, user),
        DELETE=lambda: destroy(request, user),
    )


def show(request, user):
    return render(request, "quiz/users/show.html", {"profile": user, "show_token": admin_or_self(request.user, user.id)})


@login_required
def edit(request, user_id):
    user = get_object_or_404(User.objects.select_related("photo"), pk=user_id)
    require(admin_or_self(request.user, user.id))
    return render(request, "quiz/users/edit.html", {"profile": user})


def update(request, user):
    require(admin_or_self(request.user, user.id))
    password = request.POST.get("password", "")
    problems = _password_problems(password, request.POST.get("password_confirmation", ""), required=False,
                                  user=user)
    image = request.FILES.get("image")
    keep = bool(request.POST.get("keepPhoto"))
    if not problems:
        try:
            with transaction.atomic(), uploads.NewFiles() as new_files:
                old = user.photo
                user.photo = uploads.edited(old, image, keep, new_files)
                if password:
                    user.set_password(password)
                user.save()
                uploads.discard_replaced(old, user.photo_id)
        except uploads.UploadRejected as exc:
            problems.append(str(exc))
    if problems:
        for problem in problems:
            messages.error(request, problem)
        return render(request, "quiz/users/edit.html", {"profile": user})
    if password and user.id == request.user.id:
        # Changing one's own password would end the login otherwise.
        from django.contrib.auth import update_session_auth_hash

        update_session_auth_hash(request, user)
    messages.success(request, "User updated successfully.")
    return HttpResponseRedirect(f"/users/{user.id}")


def destroy(request, user):
    require(admin_or_self(request.user, user.id))
    myself = user.id == request.user.id
    with transaction.atomic():
        photo = user.photo
        user.delete()  # their quizzes and tips stay, as "Anonymous"
        uploads.delete_attachment(photo)
    if myself:
        logout(request)
    messages.success(request, "User deleted successfully.")
    return HttpResponseRedirect("/" if myself else "/users")


@login_required
def token(request, user_id):
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    user = get_object_or_404(User, pk=user_id)
    require(admin_or_self(request.user, user.id))
    user.new_token()
    messages.success(request, "New API token generated.")
    return HttpResponseRedirect(f"/users/{user.id}")
