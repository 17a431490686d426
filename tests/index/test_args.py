"""Script arguments (workers/index/args.py): what Python lays out in ARGV is what the
generated Lua names, read back by a real Redis."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from conftest import RedisTarget

from workers.index.args import ScriptArgs, items, number, records, text
from workers.index.scripts import Script


@dataclass(frozen=True, slots=True)
class Part(ScriptArgs):
    name: str = text()
    size: int = number()
    tags: tuple[str, ...] = items(as_table=True)
    more: tuple[str, ...] = items()


@dataclass(frozen=True, slots=True)
class Whole(ScriptArgs):
    label: str = text()
    weight: int = number()
    notes: tuple[str, ...] = items(as_table=True)
    parts: tuple[Part, ...] = records(Part)


# Echo every named argument back, the records read one after the other.
ECHO = """
local out = {A.label, A.weight, A.notes_n, table.concat(A.notes, ',')}
at = A.parts_at
for _ = 1, A.parts_n do
  local R
  R, at = read_parts(at)
  local more = {}
  for k = 0, R.more_n - 1 do more[#more + 1] = ARGV[R.more_at + k] end
  out[#out + 1] = R.name .. '|' .. R.size .. '|' .. table.concat(R.tags, ',') .. '|'
    .. table.concat(more, ',')
end
out[#out + 1] = at - 1 == #ARGV and 'all read' or 'left over'
return out
"""


def test_records_read_back_as_laid_out(redis_target: RedisTarget) -> None:
    script = Script("echo_records", Whole, body=ECHO)
    whole = Whole(
        "chunk",
        7,
        ("n1", "n2"),
        (
            Part("a", 1, ("x",), ()),
            Part("b", 22, (), ("m1", "m2", "m3")),
            Part("c", 3, ("y", "z"), ("m4",)),
        ),
    )
    reply: list[Any] = script(redis_target.client, [], whole)
    assert [item.decode() if isinstance(item, bytes) else item for item in reply] == [
        "chunk",
        7,
        2,
        "n1,n2",
        "a|1|x|",
        "b|22||m1,m2,m3",
        "c|3|y,z|m4",
        "all read",
    ]
    assert script(redis_target.client, [], Whole("empty", 0, (), ()))[-1] == b"all read"


@pytest.mark.unit
def test_records_must_be_the_last_list() -> None:
    @dataclass(frozen=True, slots=True)
    class Misplaced(ScriptArgs):
        parts: tuple[Part, ...] = records(Part)
        notes: tuple[str, ...] = items()

    with pytest.raises(ValueError, match="last list"):
        Misplaced.lua_unpacking()
