"""The quiz queries the HTML pages and the JSON API share.

Listing must cost a fixed number of SQL queries whatever the page holds:
authors and attachments come in the same query (``select_related``), and the
current user's favourites among the page's quizzes in one more.
"""

import re

from django.db.models import Q

from quiz.models import Favourite, Quiz, Tip


def search_quizzes(search="", favourites_of=None, author_id=None):
    """Quizzes matching ``search`` (its words, in order, anywhere, any case), newest last."""
    queryset = Quiz.objects.select_related("author", "attachment").order_by("id")
    words = (search or "").split()
    if words:
        queryset = queryset.filter(question__iregex=".*".join(re.escape(word) for word in words))
    if favourites_of is not None:
        queryset = queryset.filter(fans__user=favourites_of)
    if author_id is not None:
        queryset = queryset.filter(author_id=author_id)
    return queryset


def favourite_ids(user, quizzes):
    """Ids of ``quizzes`` that ``user`` has starred (one query; none for anonymous)."""
    if not user.is_authenticated or not quizzes:
        return set()
    return set(
        Favourite.objects.filter(user=user, quiz_id__in=[quiz.id for quiz in quizzes]).values_list("quiz_id", flat=True)
    )


def mark_favourites(user, quizzes):
    ids = favourite_ids(user, quizzes)
    for quiz in quizzes:
        quiz.favourite = quiz.id in ids
    return quizzes


def visible_tips(quiz, user):
    """Accepted tips for everybody; unaccepted ones for the quiz author, their own author and admins."""
    tips = Tip.objects.filter(quiz=quiz).select_related("author").order_by("id")
    if not user.is_authenticated:
        return tips.filter(accepted=True)
    if user.is_admin or quiz.author_id == user.id:
        return tips
    return tips.filter(Q(accepted=True) | Q(author=user))


def quiz_json(quiz, with_answer=False, favourite=None):
    """A quiz for the JSON outputs: never the author's token or password, answer only on request."""
    data = {
        "id": quiz.id,
        "question": quiz.question,
        "author": user_json(quiz.author) if quiz.author_id else None,
        "attachment": (
            {"filename": quiz.attachment.filename, "mime": quiz.attachment.mime, "url": quiz.attachment.url}
            if quiz.attachment_id else None
        ),
    }
    if favourite is not None:
        data["favourite"] = favourite
    if with_answer:
        data["answer"] = quiz.answer
    return data


def user_json(user):
    return {"id": user.id, "username": user.username, "isAdmin": user.is_admin}
