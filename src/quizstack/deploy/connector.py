"""A pyinfra connector that enters the hosts of a quizstack lab.

A lab host is a set of Linux namespaces around an init process. Running a
command there means prefixing it with the lab's `nsenter` argv; moving a file
there means writing through `/proc/<init pid>/root`, which shows the host's own
mount namespace (its copy-on-write /etc, /var, ...). Everything else — the
operations, the facts, the ordering — is plain pyinfra, so the same roles run
unchanged over pyinfra's SSH connector on real hosts.

Inventory names look like `@lab/<lab>/<host>`.
"""

import os
import shlex
import shutil
import tempfile

from pyinfra.api import QuoteString, StringCommand
from pyinfra.api.exceptions import ConnectError, InventoryError
from pyinfra.api.util import get_file_io
from pyinfra.connectors.base import BaseConnector
from pyinfra.connectors.local import LocalConnector
from pyinfra.connectors.util import extract_control_arguments, make_unix_command_for_host


class LabConnector(BaseConnector):
    handles_execution = True

    def __init__(self, state, host):
        super().__init__(state, host)
        self.local = LocalConnector(state, host)
        self.enter = None
        self.root = None

    @staticmethod
    def make_names_data(name=None):
        if not name or name.count("/") != 1:
            raise InventoryError("a lab host is named @lab/<lab>/<host>")
        lab_name, host_name = name.split("/")
        yield f"@lab/{name}", {"lab_name": lab_name, "lab_host": host_name}, ["@lab"]

    def connect(self):
        # Imported here so that the deploy layer's pure parts never load the lab.
        from quizstack.errors import QuizstackError
        from quizstack.lab import Lab

        data = self.host.data
        try:
            # The lab's own state root, whatever this process's environment says.
            lab = Lab(data.lab_name, state_root=data.get("lab_state_root"))
            self.enter = lab.enter_argv(data.lab_host)
        except QuizstackError as exc:
            raise ConnectError(str(exc))
        pid = _target_pid(self.enter)
        self.root = f"/proc/{pid}/root"
        if not os.path.isdir(self.root):
            raise ConnectError(f"lab host {data.lab_host} is not running")
        self.local.connect()

    def run_shell_command(self, command, print_output=False, print_input=False, **arguments):
        control = extract_control_arguments(arguments)
        inner = make_unix_command_for_host(self.state, self.host, command, **arguments)
        wrapped = StringCommand(*[QuoteString(a) for a in self.enter], "sh", "-c", QuoteString(inner))
        return self.local.run_shell_command(
            wrapped, print_output=print_output, print_input=print_input, **control
        )

    def _path(self, remote_filename):
        return self.root + "/" + remote_filename.lstrip("/")

    def put_file(self, filename_or_io, remote_filename, remote_temp_filename=None,
                 print_output=False, print_input=False, **kwargs):
        target = self._path(remote_filename)
        directory = os.path.dirname(target)
        # Write beside the target and rename, so a reader never sees half a file.
        fd, temp = tempfile.mkstemp(dir=directory, prefix=".quizstack-")
        try:
            with get_file_io(filename_or_io) as src, os.fdopen(fd, "wb") as dst:
                data = src.read()
                dst.write(data.encode() if isinstance(data, str) else data)
            os.replace(temp, target)
        except BaseException:
            if os.path.exists(temp):
                os.unlink(temp)
            raise
        return True

    def get_file(self, remote_filename, filename_or_io, remote_temp_filename=None,
                 print_output=False, print_input=False, **kwargs):
        with open(self._path(remote_filename), "rb") as src, get_file_io(filename_or_io, "wb") as dst:
            shutil.copyfileobj(src, dst)
        return True


def _target_pid(enter_argv):
    """The init PID inside an nsenter argv (`--target PID` or `-t PID`)."""
    for flag in ("--target", "-t"):
        if flag in enter_argv:
            return int(enter_argv[enter_argv.index(flag) + 1])
    for arg in enter_argv:
        if arg.startswith("--target="):
            return int(arg.split("=", 1)[1])
    raise ConnectError("cannot find the host's init in: " + shlex.join(enter_argv))
