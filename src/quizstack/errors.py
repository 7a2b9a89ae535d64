"""The one exception root of quizstack.

Library code raises these and never exits; the command line turns any of them
into a single line on stderr and a non-zero exit status.
"""


class QuizstackError(Exception):
    """Anything that went wrong in a way a user can understand and act on."""


class ScenarioError(QuizstackError):
    """A scenario file is unreadable or describes an impossible topology."""


class LabError(QuizstackError):
    """The lab could not be created, started, stopped or removed."""


class CommandError(QuizstackError):
    """An external command failed: says where, what ran, and what it printed."""

    def __init__(self, where, argv, returncode, output):
        self.where = where
        self.argv = list(argv)
        self.returncode = returncode
        self.output = output
        shown = " ".join(self.argv)
        tail = (output or "").strip().splitlines()[-3:]
        detail = (": " + " | ".join(tail)) if tail else ""
        super().__init__(f"{where}: `{shown}` exited {returncode}{detail}")


class DeployError(QuizstackError):
    """A deployment role could not bring a host to the wanted state."""


class CheckError(QuizstackError):
    """A check could not be carried out at all (not the same as a failed check)."""
