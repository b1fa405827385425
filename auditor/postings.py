"""Postings held compactly: key -> master numbers, as arrays instead of a dict of lists.

The title-matching index (``auditor.matching.MatchIndex``) maps each distinct title and
each model code to the masters that have it, and each master to its codes. Most keys
name one master, and as a dict of tuples of ``int`` objects that cost about 180 bytes
per master (issue 20). Here the keys are one sorted list and the master numbers one
``array('I')`` (4 bytes each) cut by a second array of offsets; a lookup is a binary
search over the keys.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from typing import Iterator, Mapping, Sequence, overload


class Postings(Mapping[str, Sequence[int]]):
    """Key -> master numbers (in the order they were added), read-only.

    ``keys_`` is the sorted list of keys; ``get`` and ``[]`` give an ``array('I')``.
    """

    __slots__ = ("keys_", "_starts", "_ords")

    def __init__(self, lists: dict[str, list[int]]):
        """From key -> list of master numbers (``lists`` is emptied as it is read)."""
        self.keys_: list[str] = sorted(lists)
        starts = array("I", [0])
        ords = array("I")
        for k in self.keys_:
            ords.extend(lists.pop(k))
            starts.append(len(ords))
        self._starts = starts
        self._ords = ords

    def number(self, key: str) -> int:
        """The key's place in ``keys_``, or -1."""
        keys = self.keys_
        j = bisect_left(keys, key)
        return j if j < len(keys) and keys[j] == key else -1

    def at(self, j: int) -> Sequence[int]:
        """The master numbers of the ``j``-th key."""
        return self._ords[self._starts[j]:self._starts[j + 1]]

    def get(self, key: str, default: Sequence[int] = ()  # type: ignore[override]
            ) -> Sequence[int]:
        j = self.number(key)
        return default if j < 0 else self._ords[self._starts[j]:self._starts[j + 1]]

    def __getitem__(self, key: str) -> Sequence[int]:
        j = self.number(key)
        if j < 0:
            raise KeyError(key)
        return self._ords[self._starts[j]:self._starts[j + 1]]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.number(key) >= 0

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys_)

    def __len__(self) -> int:
        return len(self.keys_)


class PerMaster(Sequence["tuple[str, ...] | None"]):
    """Master number -> its keys (a tuple of strings, or None when it has none), each
    key held once in a shared sorted list (``names``) and named here by its place."""

    __slots__ = ("_names", "_starts", "_nos")

    def __init__(self, names: list[str], per_master: list[tuple[str, ...] | None],
                 place: Mapping[str, int] | None = None):
        """``names``: the sorted keys; ``per_master``: each master's keys (all in
        ``names``; the list is emptied as it is read); ``place``: key -> its number in
        ``names``, when the caller has it."""
        self._names = names
        if place is None:
            place = {k: j for j, k in enumerate(names)}
        starts = array("I", [0])
        nos = array("I")
        append, extend = starts.append, nos.extend
        per_master.reverse()
        pop = per_master.pop
        while per_master:
            ks = pop()
            if ks:
                extend([place[k] for k in ks])
            append(len(nos))
        self._starts = starts
        self._nos = nos

    @overload
    def __getitem__(self, i: int) -> tuple[str, ...] | None: ...
    @overload
    def __getitem__(self, i: slice) -> list[tuple[str, ...] | None]: ...

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        s, e = self._starts[i], self._starts[i + 1]  # IndexError past the end
        if s == e:
            return None
        names = self._names
        return tuple(names[j] for j in self._nos[s:e])

    def __len__(self) -> int:
        return len(self._starts) - 1
