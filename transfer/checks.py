"""Parameter checks shared by the method modules; errors in scikit-learn's wording:
"The 'k' parameter of gio_select must be a positive int. Got -1 instead."."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transfer.errors import InputError


def check_positive_int(owner: str, name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InputError(f"The {name!r} parameter of {owner} must be a positive int. Got {value!r} instead.")


def check_choice(owner: str, name: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise InputError(f"The {name!r} parameter of {owner} must be one of {list(choices)}. Got {value!r} instead.")
