"""Faults injected into a running lab, measured from the clients under load.

An experiment (`quizstack chaos run NAME`, runner.py) starts a bounded load
generator on the clients (load.py, with browser.py's connections, run inside
them like check/client.py), injects a fault through the lab (lab/faults.py)
chosen by experiments.py, watches the service notice and converge (watch.py),
heals it, and then verifies every write the service acknowledged. report.py
turns the records into the figures operators judge a fault by (failed
requests, longest stall, latencies before, during and after, writes lost);
plot.py draws the timeline.
"""
