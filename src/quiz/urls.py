"""The route table, mirroring the original Express routes (docs/app.md lists them with their roles).

PUT and DELETE routes also accept POST with ``_method=PUT|DELETE`` (HTML forms).
"""

from django.urls import path, re_path, register_converter

from quiz.views import api, favourites, pages, play, quizzes, session, tips, users



class IdConverter:
    """Ids are positive bigints: longer digit strings would overflow in SQL, so they 404 here."""

    regex = "[0-9]{1,18}"

    def to_python(self, value):
        return int(value)

    def to_url(self, value):
        return str(value)


register_converter(IdConverter, "id")

# A database failure outside the views is a 503 "try again" too (quiz.outage).
handler500 = "quiz.outage.server_error"

# Django tries the patterns in order, so the busiest pages come first (the list,
# a quiz, playing it); no two patterns match the same path, so order changes nothing else.
urlpatterns = [
    re_path(r"^quizzes(?:\.(?P<format>\w+))?$", quizzes.quiz_collection),
    re_path(r"^quizzes/(?P<quiz_id>[0-9]{1,18})(?:\.(?P<format>\w+))?$", quizzes.quiz_item),
    path("quizzes/<id:quiz_id>/play", play.play),
    path("", pages.home),
    path("author", pages.author),
    path("goback", pages.goback),
    path("session", session.session),
    path("quizzes/new", quizzes.new),
    path("quizzes/randomplay", play.randomplay),
    path("quizzes/randomcheck/<id:quiz_id>", play.randomcheck),
    path("quizzes/<id:quiz_id>/edit", quizzes.edit),
    path("quizzes/<id:quiz_id>/check", play.check),
    path("quizzes/<id:quiz_id>/tips", tips.create),
    path("quizzes/<id:quiz_id>/tips/<id:tip_id>", tips.tip_item),
    path("quizzes/<id:quiz_id>/tips/<id:tip_id>/accept", tips.accept),
    path("quizzes/<id:quiz_id>/tips/<id:tip_id>/edit", tips.edit),
    path("users", users.user_collection),
    path("users/new", users.new),
    path("users/<id:user_id>", users.user_item),
    path("users/<id:user_id>/edit", users.edit),
    path("users/<id:user_id>/token", users.token),
    path("users/<id:user_id>/quizzes", quizzes.user_quizzes),
    path("users/<id:user_id>/favourites/<id:quiz_id>", favourites.favourite),
    path("uploads/<str:name>", pages.upload),
    path("static/<str:name>", pages.static_file),
    # JSON API, ?token=
    path("api/users/tokenOwner", api.token_owner),
    path("api/users", api.users),
    path("api/users/<id:user_id>", api.user),
    path("api/users/<id:user_id>/quizzes", api.user_quizzes),
    path("api/users/tokenOwner/favourites/<id:quiz_id>", api.favourite),
    path("api/quizzes", api.quizzes),
    path("api/quizzes/<id:quiz_id>", api.quiz),
    path("api/quizzes/random", api.random_one),
    path("api/quizzes/<id:quiz_id>/check", api.check),
    path("api/quizzes/random10wa", api.random10wa),
    path("api/quizzes/randomplay/new", api.randomplay_new),
    path("api/quizzes/randomplay/next", api.randomplay_next),
    path("api/quizzes/randomplay/check", api.randomplay_check),
]
