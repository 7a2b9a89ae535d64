"""Per-lab secrets: generated once, kept in the lab's state with mode 0600.

Nothing secret is committed or printed. The database password never has to
travel to the database host in clear: PostgreSQL accepts a SCRAM-SHA-256
verifier in place of a password, and the same verifier lets the role check,
without logging in, whether the stored password is already the wanted one.
"""

import base64
import hashlib
import hmac
import json
import os
import secrets as random

from quizstack.errors import DeployError

FIELDS = ("database_password", "django_secret_key", "database_superuser_password",
          "database_replication_password", "database_rewind_password", "nagios_password",
          # QUIZ's administrator (the servers only ever see its Django hash, below),
          # the writers of Patroni's REST API, and etcd's users.
          "admin_password", "patroni_api_password", "etcd_root_password",
          "etcd_patroni_password")
# Derived once from a generated secret and kept beside it (made with a random salt,
# so it cannot be made again identical on the next run).
DERIVED = {"admin_password_hash": "admin_password"}
ADMIN_USER = "admin"
DEMO_ADMIN_PASSWORD = "1234"   # the seed's, published: only a teaching setup ([service] demo) has it
# Django's PBKDF2 hasher (its default) and its iteration count in the Django QUIZ runs.
DJANGO_PBKDF2_ITERATIONS = 1_000_000


def load_or_create(directory):
    """The secrets stored in `directory` (a 0700 folder), creating what is missing."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    path = os.path.join(directory, "secrets.json")
    data = {}
    if os.path.exists(path):
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError) as exc:
            raise DeployError(f"{path}: unreadable secrets ({exc}); remove it to generate new ones")
    missing = [k for k in FIELDS if not data.get(k)]
    for field in missing:
        data[field] = random.token_urlsafe(50 if field == "django_secret_key" else 24)
    for derived, source in DERIVED.items():
        if source in missing or not data.get(derived):
            data[derived] = django_password_hash(data[source])
            missing.append(derived)
    if missing:
        fd = os.open(path + ".new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(path + ".new", path)
    os.chmod(path, 0o600)
    return data


def scram_verifier(password, salt=None, iterations=4096):
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802/7677)."""
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = lambda b: base64.b64encode(b).decode()
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def verifier_matches(verifier, password):
    """Whether a stored SCRAM verifier was made from `password`."""
    try:
        method, params, keys = verifier.split("$")
        iterations, salt = params.split(":")
        if method != "SCRAM-SHA-256":
            return False
        wanted = scram_verifier(password, base64.b64decode(salt), int(iterations))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(wanted, verifier)


def django_password_hash(password, salt=None, iterations=None):
    """The hash Django's PBKDF2PasswordHasher stores for `password`.

    The app servers get this, never the password: the seed sets it as the
    administrator's password, and a server taken over gives away no password.
    """
    salt = salt or random.token_urlsafe(16).replace("-", "").replace("_", "")[:22]
    iterations = iterations or DJANGO_PBKDF2_ITERATIONS
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations)
    return f"pbkdf2_sha256${iterations}${salt}${base64.b64encode(digest).decode()}"


def django_hash_matches(encoded, password):
    """Whether a Django PBKDF2 hash was made from `password` (False for anything else)."""
    try:
        algorithm, iterations, salt, _ = encoded.split("$", 3)
        if algorithm != "pbkdf2_sha256":
            return False
        wanted = django_password_hash(password, salt, int(iterations))
    except (ValueError, AttributeError):
        return False
    return hmac.compare_digest(wanted, encoded)
