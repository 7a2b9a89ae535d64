"""The Jinja2 environment of the busiest pages: the same HTML as Django's templates would give.

``/quizzes``, ``/quizzes/:id`` and ``/quizzes/:id/play`` are most of the
traffic, and Django's template engine was the largest part of their CPU
(docs/performance.md); Jinja2 compiles a template to Python once per process
and renders the same page in a fraction of the time. Their templates live in
``jinja2/quiz/``; every other page keeps Django's (``templates/quiz/``).

What a user sees must not change, so the environment writes what Django's
engine writes:

- **Escaping.** Every ``{{ value }}`` goes through ``django_escape`` (the
  ``finalize`` hook, which Jinja2 applies to every expression it writes):
  Django's ``conditional_escape``, spelled as Django spells it (``&#x27;``
  and ``&quot;``, where MarkupSafe writes ``&#39;`` and ``&#34;``). A value
  already safe (the CSRF input, a message marked safe, ``|safe``) is written
  as is, as Django writes it. So Jinja2's own autoescape is off: it would
  only wrap, once more, what ``django_escape`` has escaped already.
- **Whitespace.** Text is kept as written, the last newline of a template
  too (``keep_trailing_newline``), as Django keeps it.
- **Filters and helpers.** ``urlencode`` is Django's (``urllib.parse.quote``,
  ``/`` kept); ``once_token()`` is the ``{% once_token %}`` tag of Django's
  templates (quiz.once); ``csrf_input`` (Django's backend puts it in the
  context, lazily: a page that shows no form draws no token and sets no
  cookie) is what ``{% csrf_token %}`` writes.
"""

from html import escape
from urllib.parse import quote

from jinja2 import Environment

from quiz import once


def django_escape(value):
    """``{{ value }}`` as Django writes it: str() of it, escaped unless it is already safe."""
    if value.__class__ is int:  # ids, counts: nothing to escape
        return str(value)
    if hasattr(value, "__html__"):
        return value.__html__()
    text = str(value)
    if hasattr(text, "__html__"):  # str() of a message whose text was marked safe
        return text
    return escape(text)


def environment(**options):
    options["autoescape"] = False  # django_escape escapes every expression (see above)
    options.setdefault("keep_trailing_newline", True)
    env = Environment(finalize=django_escape, **options)
    env.filters["urlencode"] = quote
    env.globals["once_token"] = once.new_token
    return env
