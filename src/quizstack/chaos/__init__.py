"""Faults injected into a running lab, measured from the clients under load.

An experiment (`quizstack chaos run NAME`) starts a bounded load generator on
the clients (load.py, run inside them like check/client.py), injects a fault
through the lab (lab/faults.py), heals it, lets the service converge, and then
verifies every write the service acknowledged. report.py turns the records
into the figures operators judge a fault by (failed requests, longest stall,
latencies before, during and after, writes lost); plot.py draws the timeline.
"""
