"""The quizstack command line: parses arguments, calls the layers, prints.

This is the one place that prints and the one place that exits. Every layer
below raises QuizstackError; here it becomes one line on stderr and exit 1.
"""

import argparse
import os
import sys

from quizstack.errors import QuizstackError


def _django(argv):
    """Run a Django management command of the QUIZ app in this process."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quiz.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(["quizstack app"] + argv)
    return 0


def cmd_app(args):
    if args.app_command == "serve":
        argv = [
            "gunicorn", "quiz.wsgi:application",
            "--bind", args.bind,
            "--workers", str(args.workers),
            "--access-logfile", "-",
        ]
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quiz.settings")
        os.execvp(sys.executable, [sys.executable, "-m"] + argv)
    if args.app_command == "migrate":
        return _django(["migrate", "--noinput"])
    if args.app_command == "seed":
        return _django(["seed"])
    return _django(["help"])


def build_parser():
    parser = argparse.ArgumentParser(
        prog="quizstack",
        description="Deploy the QUIZ service on a lab of namespaces or on real hosts, and prove it.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    app = sub.add_parser("app", help="run the QUIZ application itself (needs DATABASE_URL)")
    app_sub = app.add_subparsers(dest="app_command", metavar="ACTION")
    app_sub.required = True
    serve = app_sub.add_parser("serve", help="serve QUIZ with gunicorn")
    serve.add_argument("--bind", default="127.0.0.1:8000")
    serve.add_argument("--workers", type=int, default=2)
    app_sub.add_parser("migrate", help="apply database migrations (safe on many servers at once)")
    app_sub.add_parser("seed", help="load the seed users and quizzes (idempotent)")
    app.set_defaults(func=cmd_app)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except QuizstackError as exc:
        print(f"quizstack: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("quizstack: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
