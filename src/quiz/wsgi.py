"""WSGI entry point, ``quiz.wsgi:application``, the one gunicorn serves.

Django's handler, with a shorter middleware stack beside it for a GET of
the busiest pages by a visitor without cookies (quiz.anonymous), inside a
bound on request bodies that answers 413 before either reads a byte too
many (quiz.bodylimit).

Once Django and QUIZ are loaded, the objects they made (modules, classes,
settings, URL patterns: some 70,000) are moved out of the garbage
collector's sight (``gc.freeze``): they live as long as the process, yet a
full collection would walk them all, every few hundred requests. And the
first collection comes after 20,000 new container objects rather than 700:
a request's own objects are freed by their reference counts as it ends, so
collecting more often finds next to nothing (docs/performance.md).
"""

import gc
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quiz.settings")
django.setup(set_prefix=False)  # as django.core.wsgi.get_wsgi_application does

from django.conf import settings  # noqa: E402

from quiz.anonymous import Application  # noqa: E402 (needs the apps loaded)
from quiz.bodylimit import BodyLimit  # noqa: E402

application = BodyLimit(Application(), settings.QUIZ_MAX_BODY)

gc.collect()
gc.freeze()
gc.set_threshold(20_000, 10, 10)
