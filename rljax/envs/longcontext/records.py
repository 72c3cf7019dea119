"""The record vocabulary of the long-context tasks: entities, attributes, values, ids.

golongrl.md section 8.2: a record is one line
`E17 color = red city = oslo year = 1987 score = 42 ;`. Entity ids are `E` followed by digits
(`E17` and `E71` are near-duplicates); events are `V` ids, items `I` ids. A record may flag one
attribute with `!` after its value (the summarisation task). Everything here is host-side Python.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Collection, Mapping

import numpy as np

ATTRIBUTES = ("color", "city", "year", "score")
COLORS = ("red", "blue", "green", "black", "white", "gold", "pink", "gray")
CITIES = ("oslo", "lima", "rome", "kyiv", "baku", "doha", "riga", "bern", "suva", "apia")
YEARS = tuple(str(year) for year in range(1900, 2030))
SCORES = tuple(str(score) for score in range(10, 100))
VALUES = {"color": COLORS, "city": CITIES, "year": YEARS, "score": SCORES}
FLAG = "!"

_RECORD = re.compile(
    r"(?P<entity>E\d+) color = (?P<color>\w+)(?P<f_color> !)? city = (?P<city>\w+)(?P<f_city> !)? "
    r"year = (?P<year>\d+)(?P<f_year> !)? score = (?P<score>\d+)(?P<f_score> !)? ;"
)


@dataclasses.dataclass(frozen=True)
class Record:
    """One entity record.

    Attributes:
        entity: the entity id, e.g. "E17".
        color, city, year, score: the attribute values as written (year and score are digits).
        flag: the attribute marked with `!` (summarisation), or None.
    """

    entity: str
    color: str
    city: str
    year: str
    score: str
    flag: str | None = None

    def value(self, attribute: str) -> str:
        """The value of one attribute.

        Args:
            attribute: one of `ATTRIBUTES`.

        Returns:
            The value as written in the record.
        """
        if attribute not in ATTRIBUTES:
            raise ValueError(f"attribute must be one of {ATTRIBUTES}, got {attribute!r}")
        return getattr(self, attribute)

    def render(self) -> str:
        """The record as one context line.

        Returns:
            e.g. `E17 color = red city = oslo year = 1987 ! score = 42 ;` (year flagged).
        """
        fields = []
        for attribute in ATTRIBUTES:
            mark = f" {FLAG}" if attribute == self.flag else ""
            fields.append(f"{attribute} = {self.value(attribute)}{mark}")
        return f"{self.entity} {' '.join(fields)} ;"


def random_record(
    rng: np.random.Generator,
    entity: str,
    *,
    fixed: Mapping[str, str] | None = None,
    avoid: Mapping[str, Collection[str]] | None = None,
    flag: str | None = None,
) -> Record:
    """Draws a record with uniform attribute values.

    Args:
        rng: the random stream.
        entity: the entity id.
        fixed: attribute -> value to use instead of drawing.
        avoid: attribute -> values never drawn (so a filler record cannot change a gold answer).
        flag: the attribute to flag with `!`, or None.

    Returns:
        The record.
    """
    fixed, avoid = dict(fixed or {}), dict(avoid or {})
    values = {}
    for attribute in ATTRIBUTES:
        if attribute in fixed:
            values[attribute] = fixed[attribute]
            continue
        allowed = [v for v in VALUES[attribute] if v not in avoid.get(attribute, ())]
        if not allowed:
            raise ValueError(f"avoid leaves no value for attribute {attribute!r}")
        values[attribute] = allowed[int(rng.integers(len(allowed)))]
    return Record(entity, flag=flag, **values)


def parse_record(line: str) -> Record | None:
    """Parses one record line (the inverse of `Record.render`).

    Args:
        line: a context line.

    Returns:
        The record, or None if the line is not a record.
    """
    match = _RECORD.fullmatch(line.strip())
    if match is None:
        return None
    flags = [a for a in ATTRIBUTES if match.group(f"f_{a}")]
    return Record(
        match["entity"],
        match["color"],
        match["city"],
        match["year"],
        match["score"],
        flags[0] if flags else None,
    )


def id_width(target_tokens: int) -> int:
    """Digits of the entity ids of a context of `target_tokens` tokens.

    Two digits (100 ids, the spec's `E d d`) up to 1,000 tokens; one more digit per factor ten, so
    the id space holds at least target/10 ids, about three times the ~29-token records that fit.

    Args:
        target_tokens: the context length target (>= 1).

    Returns:
        The id width, >= 2.
    """
    return max(2, math.ceil(math.log10(max(target_tokens, 1) / 10)))


class IdPool:
    """Distinct random ids `<prefix><width digits>` drawn without replacement from one stream."""

    def __init__(self, prefix: str, width: int, rng: np.random.Generator):
        """Creates an empty pool.

        Args:
            prefix: the id prefix, e.g. "E".
            width: the number of digits (>= 1).
            rng: the random stream ids are drawn from.
        """
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width!r}")
        self.prefix, self.width, self._rng = prefix, width, rng
        self._used: set[int] = set()

    @property
    def capacity(self) -> int:
        """Number of distinct ids."""
        return 10**self.width

    def take(self) -> str:
        """Draws a fresh id uniformly among the unused ones.

        Returns:
            The id, e.g. "E17".
        """
        if len(self._used) >= self.capacity:
            raise ValueError(
                f"all {self.capacity} ids {self.prefix}{'d' * self.width} are used; "
                "lower the context length or raise the id width"
            )
        while True:
            number = int(self._rng.integers(self.capacity))
            if number not in self._used:
                return self._claim(number)

    def near(self, ident: str) -> str | None:
        """Draws an unused near-duplicate of `ident`: two adjacent digits swapped, or one digit +-1.

        Args:
            ident: an id of this pool.

        Returns:
            The near-duplicate id, or None if every near-duplicate is used.
        """
        digits = ident[len(self.prefix) :]
        if not ident.startswith(self.prefix) or len(digits) != self.width or not digits.isdigit():
            raise ValueError(f"ident must look like {self.prefix}{'d' * self.width}, got {ident!r}")
        candidates = set()
        for i in range(self.width - 1):
            candidates.add(digits[:i] + digits[i + 1] + digits[i] + digits[i + 2 :])
        for i, digit in enumerate(digits):
            for step in (-1, 1):
                candidates.add(digits[:i] + str((int(digit) + step) % 10) + digits[i + 1 :])
        numbers = sorted(int(c) for c in candidates if int(c) not in self._used)
        if not numbers:
            return None
        return self._claim(numbers[int(self._rng.integers(len(numbers)))])

    def _claim(self, number: int) -> str:
        self._used.add(number)
        return f"{self.prefix}{number:0{self.width}d}"
