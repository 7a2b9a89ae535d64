"""The quiz queries the HTML pages and the JSON API share.

Listing must cost a fixed number of SQL queries whatever the page holds:
authors and attachments come in the same query (``select_related``), and the
current user's favourites among the page's quizzes in one more.
"""

import math
import re

from django.conf import settings
from django.db.models import Count, F, Q, Window

from quiz.models import Favourite, Quiz, Tip

# The columns a list row needs, as plain values: no model instances, no dates to
# parse, and the template reads dict keys (the cheapest lookup it has).
ROW_FIELDS = {
    "author_name": F("author__username"),
    "author_is_admin": F("author__is_admin"),
    "attachment_name": F("attachment__name"),
    "attachment_filename": F("attachment__filename"),
    "attachment_mime": F("attachment__mime"),
}


def search_quizzes(search="", favourites_of=None, author_id=None):
    """Quizzes matching ``search`` (its words, in order, anywhere, any case), newest last."""
    queryset = Quiz.objects.order_by("id")
    words = (search or "").split()
    if words:
        queryset = queryset.filter(question__iregex=".*".join(re.escape(word) for word in words))
    if favourites_of is not None:
        queryset = queryset.filter(fans__user=favourites_of)
    if author_id is not None:
        queryset = queryset.filter(author_id=author_id)
    return queryset


class RowPage:
    """One page of quiz rows (dicts) and what the pager needs.

    The rows and the total come from one query (``COUNT(*) OVER ()``); only a
    page number past the end costs a count and a second fetch of the last page.
    """

    def __init__(self, queryset, pageno, size=None):
        size = size or settings.QUIZ_PAGE_SIZE
        rows = _fetch(queryset, pageno, size)
        if rows:
            count = rows[0]["total"]
        else:
            count = queryset.count() if pageno > 1 else 0
            if count:
                pageno = math.ceil(count / size)
                rows = _fetch(queryset, pageno, size)
        self.items = rows
        self.count = count
        self.pages = max(1, math.ceil(count / size))
        self.number = min(pageno, self.pages)
        self.has_previous = self.number > 1
        self.has_next = self.number < self.pages
        self.previous = self.number - 1
        self.next = self.number + 1


def _fetch(queryset, pageno, size):
    start = (pageno - 1) * size
    rows = queryset.annotate(total=Window(Count("id"))).values("id", "question", "author_id", "attachment_id",
                                                                "total", **ROW_FIELDS)
    return list(rows[start:start + size])


def quiz_row(quiz):
    """The row of one quiz model, for pages and JSON that show a single quiz."""
    return {
        "id": quiz.id, "question": quiz.question, "author_id": quiz.author_id, "attachment_id": quiz.attachment_id,
        "author_name": quiz.author.username if quiz.author_id else None,
        "author_is_admin": quiz.author.is_admin if quiz.author_id else None,
        "attachment_name": quiz.attachment.name if quiz.attachment_id else None,
        "attachment_filename": quiz.attachment.filename if quiz.attachment_id else None,
        "attachment_mime": quiz.attachment.mime if quiz.attachment_id else None,
    }


def favourite_ids(user, rows):
    """Ids of the quizzes in ``rows`` that ``user`` has starred (one query; none for anonymous)."""
    if not user.is_authenticated or not rows:
        return set()
    return set(
        Favourite.objects.filter(user=user, quiz_id__in=[row["id"] for row in rows]).values_list("quiz_id", flat=True)
    )


def mark_favourites(user, rows):
    ids = favourite_ids(user, rows)
    for row in rows:
        row["favourite"] = row["id"] in ids
    return rows


def visible_tips(quiz, user):
    """Accepted tips for everybody; unaccepted ones for the quiz author, their own author and admins."""
    tips = Tip.objects.filter(quiz=quiz).select_related("author").order_by("id")
    if not user.is_authenticated:
        return tips.filter(accepted=True)
    if user.is_admin or quiz.author_id == user.id:
        return tips
    return tips.filter(Q(accepted=True) | Q(author=user))


def quiz_json(row, favourite=None, answer=None):
    """A quiz row for the JSON outputs: chosen fields only, so no password or token can slip in."""
    data = {
        "id": row["id"],
        "question": row["question"],
        "author": (
            {"id": row["author_id"], "username": row["author_name"], "isAdmin": row["author_is_admin"]}
            if row["author_id"] else None
        ),
        "attachment": (
            {"filename": row["attachment_filename"], "mime": row["attachment_mime"],
             "url": "/uploads/" + row["attachment_name"]}
            if row["attachment_id"] else None
        ),
    }
    if favourite is not None:
        data["favourite"] = favourite
    if answer is not None:
        data["answer"] = answer
    return data


def user_json(user):
    return {"id": user.id, "username": user.username, "isAdmin": user.is_admin}
