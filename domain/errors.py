"""Errors raised by the domain; each has a stable, machine-readable code."""


class DomainError(ValueError):
    """Base class: the input breaks a domain rule."""

    code = "invalid"


class InvalidName(DomainError):
    code = "invalid-name"


class InvalidPhoneNumber(DomainError):
    code = "invalid-phone"


class InvalidEvent(DomainError):
    code = "invalid-event"
