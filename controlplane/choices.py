"""``TextChoices`` as the type checker should see it.

Django ships no type information and Ferry's mypy runs without django-stubs, so to mypy
``models.TextChoices`` is ``Any``. A member of a class derived from ``Any`` is typed as the
``str`` assigned to it: ``State.PENDING`` would be a ``str``, not a ``State``, and every
``frozenset[State]`` of members an error. At run time the class below *is* Django's; to mypy
it is what Django's is at run time, a ``str`` enum, plus the attributes Django adds.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, ClassVar

from django.db import models

if TYPE_CHECKING:

    class TextChoices(enum.StrEnum):
        label: str
        choices: ClassVar[list[tuple[str, str]]]
        labels: ClassVar[list[str]]
        values: ClassVar[list[str]]

else:
    TextChoices = models.TextChoices
