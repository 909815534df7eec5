"""Column types shared by the domain models: enums stored as short strings."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import Enum

# Long enough for every status value; statuses stay short words.
ENUM_LENGTH = 16


def short_enum(enum_cls: type[StrEnum]) -> Enum:
    """A VARCHAR column type holding the *values* of `enum_cls` (no CHECK, no native enum).

    Values, not names, are stored ("processing", not "PROCESSING"), so raw SQL, the ops
    API and other tools read the same words as the code. Plain strings equal to a value are
    accepted on the way in; anything else raises `LookupError` before reaching the database.
    """
    return Enum(
        enum_cls,
        native_enum=False,
        create_constraint=False,
        length=ENUM_LENGTH,
        validate_strings=True,
        values_callable=lambda members: [member.value for member in members],
    )
