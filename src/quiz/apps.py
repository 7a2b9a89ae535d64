"""The Django app configuration of QUIZ.

``ready`` connects the signals that bound every database wait of a request
(quiz.deadline, quiz.outage): from request_started until request_finished,
which Django sends after closing or checking the connection, so that check is
bounded too.

It also lets go of Django's ``close_caches`` receiver while QUIZ's caches
are only in-process ones (the default local memory, or none): QUIZ keeps
nothing in Django's cache framework, closing such a cache does nothing, and
the receiver would still look every cache up after every request (1.4 % of
a page's time, docs/performance.md). A networked cache configured one day
keeps it.
"""

from django.apps import AppConfig
from django.conf import settings
from django.core.signals import request_finished, request_started

IN_PROCESS_CACHES = ("django.core.cache.backends.locmem.LocMemCache", "django.core.cache.backends.dummy.DummyCache")


class QuizConfig(AppConfig):
    name = "quiz"
    verbose_name = "QUIZ"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from quiz import outage

        request_started.connect(outage.bound_request_waits, dispatch_uid="quiz-bound-waits")
        request_finished.connect(outage.unbound_request_waits, dispatch_uid="quiz-unbound-waits")
        if all(cache["BACKEND"] in IN_PROCESS_CACHES for cache in settings.CACHES.values()):
            from django.core.cache import close_caches

            request_finished.disconnect(close_caches)
