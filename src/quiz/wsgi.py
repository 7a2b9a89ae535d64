"""WSGI entry point, ``quiz.wsgi:application``, the one gunicorn serves.

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

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quiz.settings")

application = get_wsgi_application()

gc.collect()
gc.freeze()
gc.set_threshold(20_000, 10, 10)
