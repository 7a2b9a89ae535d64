"""The QUIZ data: users, quizzes, tips, favourites, image attachments, and failed-login counts.

Field names follow the original application where its users can see them
(``question``, ``answer``, ``text``, ``accepted``); everything else is ordinary
Django. Attachments are rows pointing at files in the shared media root, so a
file uploaded through one server is served by all of them.
"""

import secrets

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.db import models


class UserManager(BaseUserManager):
    def create_user(self, username, password=None, **fields):
        user = self.model(username=username, **fields)
        user.set_password(password)
        user.save(using=self._db)
        return user


class Attachment(models.Model):
    """An image in the media root: stored under a random name, shown under its original one."""

    name = models.CharField(max_length=64, unique=True)  # random hex + extension, the file's name on disk
    filename = models.CharField(max_length=255)  # what the user uploaded, for display only
    mime = models.CharField(max_length=32)
    created = models.DateTimeField(auto_now_add=True)

    @property
    def url(self):
        return "/uploads/" + self.name


class User(AbstractBaseUser):
    username = models.CharField(max_length=150, unique=True)
    is_admin = models.BooleanField(default=False)
    api_token = models.CharField(max_length=20, unique=True, null=True, blank=True)
    photo = models.ForeignKey(Attachment, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created = models.DateTimeField(auto_now_add=True)

    USERNAME_FIELD = "username"
    objects = UserManager()

    class Meta:
        ordering = ["username"]

    def __str__(self):
        return self.username

    def new_token(self):
        """Give the user a fresh API token (20 hex characters, as in the original)."""
        self.api_token = secrets.token_hex(10)
        self.save(update_fields=["api_token"])
        return self.api_token


class Quiz(models.Model):
    question = models.CharField(max_length=255)
    answer = models.CharField(max_length=255)
    author = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="quizzes")
    attachment = models.ForeignKey(Attachment, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "quizzes"

    def __str__(self):
        return self.question

    def is_right(self, answer):
        """The original's rule: case and surrounding spaces don't matter."""
        return (answer or "").strip().lower() == self.answer.strip().lower()


class Tip(models.Model):
    quiz = models.ForeignKey(Quiz, on_delete=models.CASCADE, related_name="tips")
    author = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="tips")
    text = models.CharField(max_length=1000)
    accepted = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]


class Favourite(models.Model):
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="favourites")
    quiz = models.ForeignKey(Quiz, on_delete=models.CASCADE, related_name="fans")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "quiz"], name="favourite_once")]


class ApiGame(models.Model):
    """Random play through the JSON API: a token has no session, so the game lives here."""

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="api_game")
    answered = models.JSONField(default=list)  # ids of quizzes answered right in this game
    current = models.BigIntegerField(null=True, blank=True)  # the quiz last handed out by "next"


class Submission(models.Model):
    """A creation form's one-time token (``?once=``) and the answer its POST got (quiz.once).

    Written in the transaction that creates the quiz, tip or user, so the token
    is recorded exactly when the object exists: the same POST sent again (the
    load balancer retrying it on another server, a double click) finds it here
    and is answered the same way, creating nothing. Rows older than a day are
    purged now and then.
    """

    token = models.CharField(max_length=32, primary_key=True)  # 32 hex characters, from secrets
    location = models.TextField()  # where the creation redirected to
    message = models.TextField(blank=True)  # its success message, shown again to a replay
    created = models.DateTimeField(auto_now_add=True, db_index=True)  # the purge looks for old ones


class LoginThrottle(models.Model):
    """Consecutive failed logins of one account name, shared by every server (quiz.throttle).

    Kept in the database, not in a server's memory: the balancer spreads one
    client's attempts over all the servers, and each must see them all. Keyed
    by the name as typed, lowercased, whether or not it is an account, so the
    answers tell nobody which names exist.
    """

    username = models.CharField(max_length=150, primary_key=True)
    failures = models.IntegerField(default=0)  # consecutive: a successful login deletes the row
    blocked_until = models.DateTimeField(null=True, blank=True)  # no password is checked before this
    last_failure = models.DateTimeField(db_index=True)  # rows quiet for long are purged now and then
