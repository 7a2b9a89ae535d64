"""The Django app configuration of QUIZ."""

from django.apps import AppConfig


class QuizConfig(AppConfig):
    name = "quiz"
    verbose_name = "QUIZ"
    default_auto_field = "django.db.models.BigAutoField"
