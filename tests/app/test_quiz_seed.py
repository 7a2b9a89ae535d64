"""The seed without well-known passwords: the admin's hash from the deployment, demo users only on demand.

Most tests here call quiz.seed.load_seed on the test database (seeded with
the demo users by the harness) and look at the users it leaves; the last
ones run ``seed`` and ``seed --check`` as the deployment does, in
subprocesses, for their exit codes.
"""

import os
import subprocess
import sys

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher, check_password, is_password_usable, make_password
from django.core.management import call_command

from quiz.models import Quiz, User
from quiz.seed import SeedError, load_seed

ADMIN_PASSWORD = "a long deployment secret"


def deployment_hash(password=ADMIN_PASSWORD):
    """A hash as the deployment makes it (pbkdf2_sha256), with few iterations to keep the test quick."""
    return PBKDF2PasswordHasher().encode(password, "someSaltOfTheDeploy", iterations=1000)


@pytest.fixture
def pbkdf2(settings):
    """The deployment's hasher is one this server knows (the tests' own is MD5)."""
    settings.PASSWORD_HASHERS = [*settings.PASSWORD_HASHERS, "django.contrib.auth.hashers.PBKDF2PasswordHasher"]


@pytest.fixture
def no_seed_users(db):
    User.objects.filter(username__in=["admin", "pepe"]).delete()


def password_of(username):
    return User.objects.get(username=username).password


@pytest.mark.usefixtures("pbkdf2", "no_seed_users")
def test_a_fresh_deployment_gets_the_admin_from_the_hash_and_no_pepe():
    encoded = deployment_hash()
    outcome = load_seed(demo=False, admin_hash=encoded)
    admin = User.objects.get(username="admin")
    assert admin.is_admin and admin.password == encoded and admin.check_password(ADMIN_PASSWORD)
    assert not admin.check_password("1234")
    assert not User.objects.filter(username="pepe").exists()
    assert outcome.changes[0] == "created user admin (password from QUIZ_ADMIN_PASSWORD_HASH)"
    assert Quiz.objects.filter(question="Capital of Italy", author=None).exists()
    assert load_seed(demo=False, admin_hash=encoded).changes == []


@pytest.mark.django_db
@pytest.mark.usefixtures("pbkdf2")
def test_an_upgraded_deployment_replaces_the_seeds_1234_and_disables_pepes_5678():
    encoded = deployment_hash()
    outcome = load_seed(demo=False, admin_hash=encoded)
    assert outcome.changes == ["set admin's password from QUIZ_ADMIN_PASSWORD_HASH", "disabled pepe's seed password"]
    assert password_of("admin") == encoded
    pepe = User.objects.get(username="pepe")
    assert not is_password_usable(pepe.password) and not pepe.check_password("5678")
    assert load_seed(demo=False, admin_hash=encoded).changes == []


@pytest.mark.django_db
@pytest.mark.usefixtures("pbkdf2")
def test_passwords_changed_on_purpose_are_left_alone():
    for username, password in (("admin", "chosen by the admin"), ("pepe", "chosen by pepe")):
        user = User.objects.get(username=username)
        user.set_password(password)
        user.save()
    before = password_of("admin"), password_of("pepe")
    assert load_seed(demo=False, admin_hash=deployment_hash()).changes == []
    assert (password_of("admin"), password_of("pepe")) == before


@pytest.mark.django_db
@pytest.mark.usefixtures("pbkdf2")
def test_an_admin_disabled_earlier_gets_the_hash_once_one_is_given():
    load_seed(demo=False, admin_hash="")
    assert not is_password_usable(password_of("admin"))
    encoded = deployment_hash()
    assert load_seed(demo=False, admin_hash=encoded).changes == ["set admin's password from QUIZ_ADMIN_PASSWORD_HASH"]
    assert password_of("admin") == encoded


@pytest.mark.django_db
def test_without_a_hash_or_demo_no_admin_is_made_and_the_known_passwords_stop_working(no_seed_users):
    outcome = load_seed(demo=False, admin_hash="")
    assert not User.objects.filter(username__in=["admin", "pepe"]).exists()
    assert outcome.notes == ["no administrator created: set QUIZ_ADMIN_PASSWORD_HASH "
                             "(or QUIZ_DEMO_USERS=1 for the demo's admin/1234)"]
    User.objects.create_user("admin", "1234", is_admin=True)
    User.objects.create_user("pepe", "5678")
    assert load_seed(demo=False, admin_hash="").changes == ["disabled admin's seed password",
                                                            "disabled pepe's seed password"]
    for username, password in (("admin", "1234"), ("pepe", "5678")):
        assert not check_password(password, password_of(username))


@pytest.mark.django_db
@pytest.mark.usefixtures("pbkdf2", "no_seed_users")
def test_a_user_who_registered_as_admin_is_neither_promoted_nor_given_the_hash():
    squatter = User.objects.create_user("admin", "1234")
    outcome = load_seed(demo=False, admin_hash=deployment_hash())
    assert outcome.notes == ["user admin exists but is no administrator: left alone"]
    squatter.refresh_from_db()
    assert not squatter.is_admin and squatter.check_password("1234")


@pytest.mark.django_db
def test_demo_users_are_the_originals(no_seed_users):
    outcome = load_seed(demo=True, admin_hash="")
    assert outcome.changes[:2] == ["created user admin (demo password)", "created user pepe (demo password)"]
    assert User.objects.get(username="admin").check_password("1234") and User.objects.get(username="admin").is_admin
    assert User.objects.get(username="pepe").check_password("5678")
    assert load_seed(demo=True, admin_hash="").changes == []


@pytest.mark.django_db
@pytest.mark.usefixtures("pbkdf2")
def test_a_given_hash_wins_over_the_demos_1234():
    encoded = deployment_hash()
    assert load_seed(demo=True, admin_hash=encoded).changes == ["set admin's password from QUIZ_ADMIN_PASSWORD_HASH"]
    assert password_of("admin") == encoded and User.objects.get(username="pepe").check_password("5678")


@pytest.mark.django_db
@pytest.mark.usefixtures("pbkdf2")
def test_check_changes_nothing_and_says_what_a_load_would():
    before = password_of("admin"), password_of("pepe")
    Quiz.objects.filter(question="Capital of Spain").delete()
    outcome = load_seed(demo=False, admin_hash=deployment_hash(), check=True)
    assert outcome.changes == ["set admin's password from QUIZ_ADMIN_PASSWORD_HASH", "disabled pepe's seed password",
                               "created quiz 'Capital of Spain'"]
    assert (password_of("admin"), password_of("pepe")) == before
    assert not Quiz.objects.filter(question="Capital of Spain").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["1234", "admin:1234", "pbkdf2_sha256$", "sha1$x$y"])
def test_something_that_is_not_a_hash_is_refused(value):
    with pytest.raises(SeedError, match="QUIZ_ADMIN_PASSWORD_HASH is not a password hash"):
        load_seed(demo=False, admin_hash=value)
    assert User.objects.get(username="admin").check_password("1234")  # nothing changed


@pytest.mark.django_db
def test_the_command_reads_the_settings_and_check_exits_1_then_0(settings, capsys):
    settings.QUIZ_DEMO_USERS = False
    settings.QUIZ_ADMIN_PASSWORD_HASH = make_password("another deployment secret")
    with pytest.raises(SystemExit) as exited:
        call_command("seed", "--check")
    assert exited.value.code == 1
    assert capsys.readouterr().out == ("seed --check: would have set admin's password from QUIZ_ADMIN_PASSWORD_HASH, "
                                       "disabled pepe's seed password\n")
    assert User.objects.get(username="admin").check_password("1234")
    call_command("seed")
    assert capsys.readouterr().out.startswith("seed: set admin's password")
    call_command("seed", "--check")  # nothing to do: returns, exit status 0
    assert capsys.readouterr().out == "seed: no change\n"
    assert User.objects.get(username="admin").check_password("another deployment secret")


# -- as the deployment runs it: `seed --check || seed`, in a process of its own -------------------


def run(argv, url, **environment):
    """``python -m django ARGV`` with only the settings' required variables, plus ``environment``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "QUIZ_", "DATABASE_"))}
    env.update(DJANGO_SETTINGS_MODULE="quiz.settings", DJANGO_SECRET_KEY="tests-only", DATABASE_URL=url,
               **environment)
    return subprocess.run([sys.executable, "-m", "django", *argv], env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def fresh_url(quiz_postgres):
    url = quiz_postgres.create_database("quiz_seed_check")
    migrated = run(["migrate", "--noinput"], url)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    return url


def test_seed_check_exit_codes_and_the_deployments_sequence(fresh_url):
    encoded = deployment_hash()
    env = {"QUIZ_ADMIN_PASSWORD_HASH": encoded,
           "QUIZ_PASSWORD_HASHERS": "django.contrib.auth.hashers.PBKDF2PasswordHasher"}
    first = run(["seed", "--check"], fresh_url, **env)
    assert first.returncode == 1, first.stdout + first.stderr
    assert first.stdout.startswith("seed --check: would have created user admin (password from "
                                   "QUIZ_ADMIN_PASSWORD_HASH), created quiz 'Capital of Italy'")
    assert run(["seed", "--check"], fresh_url, **env).returncode == 1  # nothing was changed
    loaded = run(["seed"], fresh_url, **env)
    assert loaded.returncode == 0 and loaded.stdout.startswith("seed: created user admin"), loaded.stderr
    again = run(["seed", "--check"], fresh_url, **env)
    assert (again.returncode, again.stdout) == (0, "seed: no change\n")


def test_seed_without_a_hash_says_so_on_stderr_and_a_bad_hash_exits_2(quiz_postgres):
    url = quiz_postgres.create_database("quiz_seed_no_admin")
    assert run(["migrate", "--noinput"], url).returncode == 0
    bare = run(["seed"], url)
    assert bare.returncode == 0
    assert "seed: no administrator created: set QUIZ_ADMIN_PASSWORD_HASH" in bare.stderr
    for argv in (["seed"], ["seed", "--check"]):
        bad = run(argv, url, QUIZ_ADMIN_PASSWORD_HASH="1234")
        assert bad.returncode == 2 and "QUIZ_ADMIN_PASSWORD_HASH is not a password hash" in bad.stderr


@pytest.mark.usefixtures("no_seed_users")
def test_an_export_gives_the_plain_password_to_the_seed_only_and_it_is_stored_hashed(monkeypatch, settings):
    settings.QUIZ_ADMIN_PASSWORD_HASH = ""
    monkeypatch.setenv("QUIZ_ADMIN_PASSWORD", ADMIN_PASSWORD)
    load_seed(demo=False)
    admin = User.objects.get(username="admin")
    assert admin.is_admin and admin.check_password(ADMIN_PASSWORD)
    assert ADMIN_PASSWORD not in admin.password
