"""The lab: a scenario's hosts and networks on one Linux machine, from namespaces.

    from quizstack.lab import Lab
    lab = Lab("pfinal", topology=load_scenario("pfinal"))
    lab.up(progress=print)
    lab.run("c1", ["ping", "-c1", "10.2.2.2"])
    lab.destroy()

Only this package creates namespaces, links, mounts and processes; see
docs/lab.md for how a host is built and what destroy guarantees.
"""

from quizstack.lab.lab import DEFAULT_STATE_ROOT, Lab, existing_labs, supervisor_ready

__all__ = ["DEFAULT_STATE_ROOT", "Lab", "existing_labs", "supervisor_ready"]
