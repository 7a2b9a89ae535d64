"""Tiny probe scripts copied to hosts, where only Debian's python3 is assumed.

They are files of their own (not shell one-liners) so they stay readable and
testable; `source(name)` gives the text the roles upload.
"""

from importlib import resources


def source(name):
    return resources.files(__package__).joinpath(name + ".py").read_text()
