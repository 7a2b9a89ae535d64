"""Middleware: the health check, the Host check and the idle logout."""
