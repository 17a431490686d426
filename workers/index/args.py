"""The arguments of each index script, typed: the only definition of their order.

A script's arguments are a frozen dataclass. Its fields, in declaration order, are the
script's ARGV: a `text` or `number` field takes one slot; an `items` field takes one slot
for its count, and its items follow every slot of the single fields, in field order.

A `records` field is a list of records of another `ScriptArgs` class (a chunk's
documents): one slot for their count, and after the single slots, each record's own
arguments laid out as that class's ARGV would be, one record after the other.

The scripts never index ARGV themselves: `lua_unpacking` writes, from the same fields,
the Lua that names every argument (`A.<field>`; for items `A.<field>_n`, the count, and
`A.<field>_at`, the ARGV position of the first; `A.<field>` is a table of them when the
field asks for it). For a records field it also writes `read_<field>(at)`, which names a
record's arguments the same way in a table of its own and returns it with the position
of the next record. `scripts.py` puts it at the top of each script.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal

ArgKind = Literal["text", "number", "items", "records"]

# A boilerplate learner counter packs two numbers: count + born * LEARNER_SPLIT, where
# `born` is the lossy-counting bucket before the one the line was first seen in (see
# scripts/learn_lines.lua). HINCRBY by 1 counts.
LEARNER_SPLIT = 2**32


def text() -> Any:
    """A string (or bytes) argument, as it is."""
    return field(metadata={"kind": "text"})


def number() -> Any:
    """A number argument (the script gets it through `tonumber`)."""
    return field(metadata={"kind": "number"})


def items(*, as_table: bool = False) -> Any:
    """A list of arguments: its count in the single slots, its items after them.
    `as_table`: the script gets them as a Lua table too (for few, small items)."""
    return field(metadata={"kind": "items", "as_table": as_table})


def records(of: type[ScriptArgs]) -> Any:
    """A list of records, each one's arguments laid out as `of`'s ARGV."""
    return field(metadata={"kind": "records", "of": of})


@dataclass(frozen=True, slots=True)
class ScriptArgs:
    """Base class of every script's arguments."""

    _kinds: ClassVar[dict[str, tuple[tuple[str, ArgKind, bool], ...]]] = {}

    @classmethod
    def _fields(cls) -> tuple[tuple[str, ArgKind, bool], ...]:
        known = ScriptArgs._kinds.get(cls.__qualname__)
        if known is None:
            known = tuple(
                (f.name, f.metadata["kind"], bool(f.metadata.get("as_table"))) for f in fields(cls)
            )
            ScriptArgs._kinds[cls.__qualname__] = known
        return known

    @classmethod
    def field_names(cls) -> list[str]:
        return [name for name, _, _ in cls._fields()]

    def argv(self) -> list[Any]:
        """The script's ARGV, in order."""
        singles: list[Any] = []
        lists: list[Any] = []
        for name, kind, _ in self._fields():
            value = getattr(self, name)
            if kind == "items":
                singles.append(len(value))
                lists.extend(value)
            elif kind == "records":
                singles.append(len(value))
                for record in value:
                    lists.extend(record.argv())
            else:
                singles.append(value)
        return singles + lists

    @classmethod
    def _lua_naming(cls, into: str, first: str) -> list[str]:
        """Lua statements that name the arguments in the table `into`, the first of them at
        ARGV position `first` (a Lua expression), leaving `at` past the last."""
        out: list[str] = []
        lists: list[tuple[str, ArgKind, bool]] = []
        for offset, (name, kind, as_table) in enumerate(cls._fields()):
            slot = f"ARGV[{first} + {offset}]"
            if kind == "text":
                out.append(f"{into}.{name} = {slot}")
            elif kind == "number":
                out.append(f"{into}.{name} = tonumber({slot})")
            else:
                out.append(f"{into}.{name}_n = tonumber({slot})")
                lists.append((name, kind, as_table))
        out.append(f"at = {first} + {len(cls._fields())}")
        for name, kind, as_table in lists:
            out.append(f"{into}.{name}_at = at")
            if kind == "records":
                # The last list (`lua_unpacking`): the script reads the records in turn.
                continue
            if as_table:
                out.append(f"{into}.{name} = {{unpack(ARGV, at, at + {into}.{name}_n - 1)}}")
            out.append(f"at = at + {into}.{name}_n")
        return out

    @classmethod
    def lua_unpacking(cls) -> str:
        """Lua that names every argument in the table `A` (and defines the readers of its
        records fields)."""
        out: list[str] = []
        kinds = [kind for _, kind, _ in cls._fields() if kind in ("items", "records")]
        if "records" in kinds[:-1]:
            # A record's size depends on its own counts: nothing can follow the records at
            # a position known without reading them all.
            raise ValueError(f"{cls.__name__}: a records field must be the last list")
        for f in fields(cls):
            if f.metadata["kind"] == "records":
                record: type[ScriptArgs] = f.metadata["of"]
                out.append(f"local function read_{f.name}(at)")
                out.append("  local R = {}")
                out += [f"  {line}" for line in record._lua_naming("R", "at")]
                out.append("  return R, at")
                out.append("end")
        out += ["local A = {}", "local at", *cls._lua_naming("A", "1")]
        return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------- the scripts


@dataclass(frozen=True, slots=True)
class JobArgs(ScriptArgs):
    """What every script that accounts for inputs takes first (scripts/common.lua)."""

    prefix: str = text()
    mode: str = text()  # "publish": decide, index, publish, count; "rebuild": index only
    job: str = text()  # "" outside a job (no redelivery guard)
    # A backfill batch's index ("" outside one): once the batch has ended (the job's
    # ended batches hold it), its inputs are accounted for, whatever the done set says.
    batch: str = text()


@dataclass(frozen=True, slots=True)
class InputArgs(ScriptArgs):
    """What the scripts know of every input they account for (scripts/common.lua)."""

    guard: bytes = text()  # its member of the job's done set (`keys.done_member`): a
    # redelivered input is a no-op
    source: str = text()  # the source's name, only ever a member of the sources set
    bytes_in: int = number()


@dataclass(frozen=True, slots=True)
class DocumentArgs(InputArgs):
    """One document of AcceptArgs."""

    doc_id: str = text()
    content_key: bytes = text()  # 8 bytes
    identity_key: bytes = text()  # `dedup.identity_key`: 8 bytes (URL, else guid), or b""
    signature: bytes = text()  # 2 * num_perm bytes, or b"" without one
    shingles: int = number()
    timestamp: int = number()  # the retention clock, seconds
    hour: int = number()  # hours since the epoch of the document
    # Its rare facts (counted by the worker: scripts/facts.lua): the smallest FACTS_K of
    # their 16-bit hashes, 2 bytes each, ascending; and how many there are.
    fact_sketch: bytes = text()
    fact_count: int = number()
    lead: bytes = text()  # `Fingerprint.lead`: its first shingles' MinHash
    title_key: bytes = text()  # 4 bytes of the normalised title's hash
    input_key: bytes = text()  # `Document.input_key`: 8 bytes, or b""
    # Its source's or feed's own dedup policy, "" for the settings' (`SourcePolicy.arg`):
    # "<near 0|1> <threshold> <updates 0|1>".
    policy: str = text()
    stripped: int = number()  # boilerplate lines stripped
    doc_fields: tuple[Any, ...] = items(as_table=True)  # docs-stream pairs, id first
    dup_fields: tuple[Any, ...] = items(as_table=True)  # duplicates-stream pairs
    # LSH bucket fields (`lsh_bucket_fields`): the signature's bands, then the lead's
    buckets: tuple[bytes, ...] = items()


@dataclass(frozen=True, slots=True)
class AcceptArgs(JobArgs):
    """scripts/accept_documents.lua: decide, index and publish documents, in order, in one
    call (KEYS[i]: the i-th document's source counters)."""

    settings: str = text()  # the index settings (`INDEX_SETTINGS`), space-separated
    documents: tuple[DocumentArgs, ...] = records(DocumentArgs)


@dataclass(frozen=True, slots=True)
class DeadArgs(JobArgs):
    """scripts/record_dead.lua: one input to the dead stream."""

    guard: bytes = text()  # as InputArgs
    source: str = text()
    bytes_in: int = number()

    maxlen: int = number()
    reason: str = text()
    fields: tuple[Any, ...] = items(as_table=True)  # dead-stream pairs


@dataclass(frozen=True, slots=True)
class LearnArgs(ScriptArgs):
    """scripts/learn_lines.lua: count the learnable lines of kept documents. Each document
    in `documents` is: its source, k, then k pairs (line hash as 8 bytes, line text)."""

    text_at: int = number()  # a line's text is kept once counted in this many documents
    width: int = number()  # documents per lossy-counting bucket
    count: int = number()  # documents
    documents: tuple[Any, ...] = items()


@dataclass(frozen=True, slots=True)
class LockArgs(ScriptArgs):
    """scripts/lock_acquire.lua, lock_hold.lua and lock_release.lua: a lock held under an
    owner's token (locks.RedisLock)."""

    token: str = text()
    # lock_acquire: take it for so long; lock_hold: keep it so much longer, 0 releases it
    milliseconds: int = number()


@dataclass(frozen=True, slots=True)
class ProbeArgs(ScriptArgs):
    """scripts/probe_write.lua: a write as large as a worker's, stored small."""

    padding: bytes = text()


# ARGV `settings` of AcceptArgs: one space-separated string (built once per process by
# `DedupIndex`; one argument instead of twenty per document), in this order; the scripts
# get each as a constant of its name in capitals (THRESHOLD, ...).
INDEX_SETTINGS = (
    "num_perm",
    "bands",
    "rows",
    "threshold",  # J bar when the facts do not settle it
    "containment_threshold",
    "min_shingles",
    "max_candidates",
    "retention_seconds",  # 0 = forever
    "sweep_limit",
    "docs_maxlen",
    "duplicates_maxlen",
    "facts_threshold",  # J bar when the rare facts agree
    "facts_agreement",  # share of the smaller rare-fact set found in the other
    "facts_min_count",  # rare facts needed on both sides for agreement or conflict
    "max_gap_hours",  # 0 = no time condition
    "stale_threshold",  # J bar beyond max_gap_hours
    "rare_floor",
    "rare_ratio",  # a fact is rare when its document frequency <= max(floor, ratio * N)
    "facts_bits",
    "facts_generation",  # documents per frequency-table generation; 0 = one forever
    "records_per_page",  # `keys.records_per_page`
    "lead_agreement",  # lead-sketch similarity from which a contained text is a trimmed copy
)


def settings_unpacking() -> str:
    """Lua that reads A.settings into one constant per INDEX_SETTINGS name."""
    names = ", ".join(name.upper() for name in INDEX_SETTINGS)
    values = ", ".join(f"S[{i}]" for i in range(1, len(INDEX_SETTINGS) + 1))
    return (
        "local S = {}\n"
        "for value in string.gmatch(A.settings, '%S+') do S[#S + 1] = tonumber(value) end\n"
        f"local {names} =\n  {values}\n"
    )
