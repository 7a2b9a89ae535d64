"""QUIZ's PostgreSQL backend for Django (``ENGINE = "quiz.postgres"``): see base.py."""
