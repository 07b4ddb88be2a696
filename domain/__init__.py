"""Pure model of ums-find: value objects, the User, events and the projection rule."""

from domain.collation import active_collation, use_collation
from domain.errors import DomainError, InvalidEvent, InvalidName, InvalidPhoneNumber
from domain.events import UserAdded, UserRemoved, Version
from domain.model import Name, PhoneNumber, User, canonical_name
from domain.projection import Event, newer, newest_per_user

__all__ = [
    "DomainError",
    "Event",
    "InvalidEvent",
    "InvalidName",
    "InvalidPhoneNumber",
    "Name",
    "PhoneNumber",
    "User",
    "UserAdded",
    "UserRemoved",
    "Version",
    "active_collation",
    "canonical_name",
    "newer",
    "newest_per_user",
    "use_collation",
]
