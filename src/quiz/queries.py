"""The quiz queries the HTML pages and the JSON API share.

Listing costs one SQL query whatever the page holds (``QuizList``); the JSON
outputs are built from chosen fields only (``quiz_json``, ``user_json``), so
no password hash or token can slip into them. The hand-written queries run on
``connection_for_reads()``: the standby's connection while a request is read
from it (quiz.standby), the default one otherwise.
"""

import math
import re

from django.conf import settings

import psycopg
from psycopg.rows import dict_row

from quiz.models import Attachment, Favourite, Quiz, Tip, User
from quiz.standby import connection_for_reads

# The page of quizzes is cut first, from the quiz table alone (with the total
# for the pager); only its rows are then joined to their authors and pictures.
LIST_SQL = """
SELECT q.id, q.question, q.author_id, q.attachment_id, q.total,
       u.username AS author_name, u.is_admin AS author_is_admin,
       a.name AS attachment_name, a.filename AS attachment_filename, a.mime AS attachment_mime,
       {starred} AS favourite
FROM (SELECT q.id, q.question, q.author_id, q.attachment_id, COUNT(*) OVER () AS total
      FROM {quiz} q
      WHERE {where}
      ORDER BY q.id
      LIMIT %s OFFSET %s) q
LEFT JOIN {user} u ON u.id = q.author_id
LEFT JOIN {attachment} a ON a.id = q.attachment_id
ORDER BY q.id
"""
COUNT_SQL = "SELECT COUNT(*) AS total FROM {quiz} q WHERE {where}"
STARRED = "EXISTS (SELECT 1 FROM {favourite} f WHERE f.quiz_id = q.id AND f.user_id = %s)"
TABLES = {"quiz": Quiz._meta.db_table, "user": User._meta.db_table, "attachment": Attachment._meta.db_table,
          "favourite": Favourite._meta.db_table, "tip": Tip._meta.db_table}


class QuizList:
    """One page of the quiz list, as plain rows (dicts), from one SQL query.

    The list is the busiest page of the site, so its query is written in SQL
    rather than compiled by the ORM on every request (which cost more CPU than
    the rest of the page, see docs/performance.md): authors, pictures, the
    viewer's stars and the total for the pager all come with the rows
    (``COUNT(*) OVER ()``). Only a page number past the end costs a count and
    a second fetch of the last page. Filters: ``search`` (its words, in order,
    anywhere, any case), ``favourites_of`` (a user id), ``author_id``;
    ``viewer_id`` says whose stars to show.
    """

    def __init__(self, pageno, search="", favourites_of=None, author_id=None, viewer_id=None, size=None):
        size = size or settings.QUIZ_PAGE_SIZE
        where, params = ["TRUE"], []
        words = (search or "").replace("\x00", "").split()
        if words:
            where.append("q.question ~* %s")
            params.append(".*".join(re.escape(word) for word in words))
        if favourites_of is not None:
            where.append(STARRED.format(**TABLES))
            params.append(favourites_of)
        if author_id is not None:
            where.append("q.author_id = %s")
            params.append(author_id)
        self._where, self._params, self._viewer_id = " AND ".join(where), params, viewer_id
        rows = self._fetch(pageno, size)
        if rows:
            count = rows[0]["total"]
        else:
            count = self._count() if pageno > 1 else 0
            if count:
                pageno = math.ceil(count / size)
                rows = self._fetch(pageno, size)
        self.items = rows
        self.count = count
        self.pages = max(1, math.ceil(count / size))
        self.number = min(pageno, self.pages)
        self.has_previous = self.number > 1
        self.has_next = self.number < self.pages
        self.previous = self.number - 1
        self.next = self.number + 1

    def _fetch(self, pageno, size):
        if self._viewer_id is None:
            starred, params = "FALSE", []
        else:
            starred, params = STARRED.format(**TABLES), [self._viewer_id]
        sql = LIST_SQL.format(starred=starred, where=self._where, **TABLES)
        return _dicts(sql, params + self._params + [size, (pageno - 1) * size])

    def _count(self):
        with read_cursor() as cursor:
            cursor.execute(COUNT_SQL.format(where=self._where, **TABLES), self._params)
            return cursor.fetchone()["total"]


QUIZ_SQL = """
SELECT q.id, q.question, q.answer, q.author_id, q.attachment_id,
       u.username AS author_name, u.is_admin AS author_is_admin,
       a.name AS attachment_name, a.filename AS attachment_filename, a.mime AS attachment_mime,
       {starred} AS favourite
FROM {quiz} q
LEFT JOIN {user} u ON u.id = q.author_id
LEFT JOIN {attachment} a ON a.id = q.attachment_id
WHERE q.id = %s
"""
TIPS_SQL = """
SELECT t.id, t.text, t.accepted, t.author_id, u.username AS author_name
FROM {tip} t LEFT JOIN {user} u ON u.id = t.author_id
WHERE t.quiz_id = %s AND {visible}
ORDER BY t.id
"""


class _PreparedCursor(psycopg.Cursor):
    """A psycopg cursor binding parameters at the server, each query prepared at its first run.

    Django's own cursors bind on the client and never prepare (it keeps
    connection poolers working; there is none between QUIZ and PostgreSQL, the
    local router forwards connections whole). For the few fixed queries of the
    busiest pages, PostgreSQL's parsing and planning cost more than running
    them; prepared once per connection, each run is a bind and an execute.
    The statements live as long as the connection (psycopg keeps the 100 most
    used) and are made again on a new one, after a failover too.
    """

    def execute(self, query, params=None, *, prepare=True, binary=None):
        return super().execute(query, params, prepare=prepare, binary=binary)


def read_cursor():
    """A Django cursor for a hand-written read, rows as dicts: counted, logged and error-wrapped as Django's own.

    The connection is ``connection_for_reads()``'s; the statements are
    prepared (``_PreparedCursor``) only on a connection kept beyond the
    request (``CONN_MAX_AGE``), where preparing pays back.
    """
    db = connection_for_reads()
    if db.settings_dict["CONN_MAX_AGE"] == 0:
        cursor = db.cursor()
        cursor.cursor.row_factory = dict_row
        return cursor
    # What db.cursor() does, with another psycopg cursor class under Django's wrapper.
    db.close_if_health_check_failed()
    db.ensure_connection()
    with db.wrap_database_errors:
        return db._prepare_cursor(_PreparedCursor(db.connection, row_factory=dict_row))


def _dicts(sql, params):
    with read_cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def quiz_page(quiz_id, user):
    """A quiz as a row for its pages (show, play), None if missing, and the tips ``user`` may see.

    Hand-written for the same reason as QuizList: these pages are hit as
    often as the list, and the ORM's compilation cost more than the page.
    Two queries on one cursor: the quiz with its author, picture and the
    viewer's star, then its tips (accepted ones for everybody; unaccepted
    ones too for the quiz's author, their own author and admins).
    """
    viewer_id = user.id if user.is_authenticated else None
    starred, params = ("FALSE", []) if viewer_id is None else (STARRED.format(**TABLES), [viewer_id])
    with read_cursor() as cursor:
        cursor.execute(QUIZ_SQL.format(starred=starred, **TABLES), params + [quiz_id])
        row = cursor.fetchone()
        if row is None:
            return None, []
        if viewer_id is None:
            visible, params = "t.accepted", []
        elif user.is_admin or row["author_id"] == viewer_id:
            visible, params = "TRUE", []
        else:
            visible, params = "(t.accepted OR t.author_id = %s)", [viewer_id]
        cursor.execute(TIPS_SQL.format(visible=visible, **TABLES), [quiz_id] + params)
        return row, cursor.fetchall()


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
