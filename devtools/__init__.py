"""Development tools: the AddService stand-in and the wait used by `make run`; never imported by the service."""
