"""QUIZ, the quiz game web application, as a Django project.

The package is both the Django project (settings, urls, wsgi) and its only app
(models, views, templates), because the application is small and one namespace
keeps imports obvious. It knows nothing about deployment: everything it needs
comes from environment variables (see ``quiz.settings`` and docs/app.md).
"""
