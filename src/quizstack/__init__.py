"""quizstack: deploy the QUIZ web application as a reliable, scalable service.

The package is layered so that data flows one way: a scenario file becomes a
topology (pure data), the lab makes the topology real on one machine, the
deployment roles configure the hosts, and the checks verify the result from
the clients' side.
"""

__version__ = "0.1.0"
