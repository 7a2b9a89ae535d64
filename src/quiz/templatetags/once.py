"""``{% once_token %}``: a fresh one-time token for a creation form's action URL (quiz.once).

Drawn while the page renders and stored nowhere: the form stays a plain GET
page, and the token is recorded only by the POST that creates something.
"""

from django import template

from quiz import once

register = template.Library()


@register.simple_tag
def once_token():
    return once.new_token()
