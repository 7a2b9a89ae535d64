"""The Django app configuration of QUIZ.

``ready`` connects the signals that bound every database wait of a request
(quiz.deadline, quiz.outage): from request_started until request_finished,
which Django sends after closing or checking the connection, so that check is
bounded too.
"""

from django.apps import AppConfig
from django.core.signals import request_finished, request_started


class QuizConfig(AppConfig):
    name = "quiz"
    verbose_name = "QUIZ"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from quiz import outage

        request_started.connect(outage.bound_request_waits, dispatch_uid="quiz-bound-waits")
        request_finished.connect(outage.unbound_request_waits, dispatch_uid="quiz-unbound-waits")
