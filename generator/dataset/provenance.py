"""Where a shard's parts came from (profile, seed, size, shard, format), and refusing to join
parts that do not belong together."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from generator import __version__
from generator.dataset.plan import parts_dir, profile_digest, shard_dir
from generator.errors import CdpsimError
from generator.profile import Profile

__all__ = ["PARTS_FORMAT", "Provenance", "check_parts", "read_provenance", "write_provenance"]

# Raised whenever what the parts hold, or how they are read, changes: parts of another format
# are refused rather than misread.
PARTS_FORMAT = 1
RECORD = "provenance.json"


@dataclass(frozen=True)
class Provenance:
    parts_format: int
    generator: str  # the cdpsim version that wrote the parts
    profile: str  # the profile's name
    profile_sha256: str  # of its file, as the manifest shows it ("" for one built in memory)
    content_sha256: str  # of its validated settings: what decides the bytes, and is compared
    seed: int
    shard: tuple[int, int]
    events: int | None  # the size asked for (None: not given)
    days: float | None
    guests: int | None
    output: str  # jsonl, jsonl.gz, or datalake-last / datalake-daily

    @classmethod
    def of_run(
        cls,
        profile: Profile,
        *,
        seed: int,
        shard: tuple[int, int],
        events: int | None,
        days: float | None,
        guests: int | None,
        gzip: bool,
        output: str | None = None,
    ) -> Provenance:
        return cls(
            PARTS_FORMAT,
            __version__,
            profile.name,
            profile.sha256,
            profile_digest(profile),
            seed,
            shard,
            events,
            days,
            guests,
            output or ("jsonl.gz" if gzip else "jsonl"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "partsFormat": self.parts_format,
            "generator": self.generator,
            "profile": {
                "name": self.profile,
                "sha256": self.profile_sha256,
                "contentSha256": self.content_sha256,
            },
            "seed": self.seed,
            "shard": list(self.shard),
            "requested": {"events": self.events, "days": self.days, "guests": self.guests},
            "output": self.output,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Provenance:
        profile, requested = data["profile"], data["requested"]
        i, n = data["shard"]
        return cls(
            int(data["partsFormat"]),
            str(data["generator"]),
            str(profile["name"]),
            str(profile["sha256"]),
            str(profile["contentSha256"]),
            int(data["seed"]),
            (int(i), int(n)),
            requested["events"],
            requested["days"],
            requested["guests"],
            str(data["output"]),
        )


def profile_label(name: str, file_sha: str, content_sha: str) -> str:
    """A profile as a message names it: its name and the start of its sha256 (of the file when
    known, as `sha256sum` and the manifest show it)."""
    return f"{name} (sha256 {(file_sha or content_sha)[:12]}...)"


def _label(p: Provenance) -> str:
    return profile_label(p.profile, p.profile_sha256, p.content_sha256)


def write_provenance(out: Path, record: Provenance) -> None:
    """Written before any part, so even an interrupted shard says what run it belongs to."""
    d = shard_dir(out, record.shard)
    d.mkdir(parents=True, exist_ok=True)
    (d / RECORD).write_bytes(orjson.dumps(record.to_json(), option=orjson.OPT_INDENT_2) + b"\n")


def read_provenance(d: Path) -> dict[str, Any] | None:
    """A shard directory's record as stored (None if it has none: made before records)."""
    try:
        data = orjson.loads((d / RECORD).read_bytes())
    except FileNotFoundError:
        return None
    except orjson.JSONDecodeError:
        raise CdpsimError(f"{d / RECORD}: unreadable provenance record; regenerate", 2) from None
    return data if isinstance(data, dict) else {}


def _shard_name(d: Path) -> tuple[int, int] | None:
    try:
        _, i, _, n = d.name.split("-")
        return int(i), int(n)
    except ValueError:
        return None


def check_parts(
    out: Path, profile: Profile, *, this: Provenance | None = None, complete: bool
) -> list[Provenance]:
    """Refuse, naming what differs, parts in `out` that do not belong with each other, with
    `profile`, or with this run (`this`, a shard about to be written: its own old parts are
    not looked at). `complete`: every shard must also be there and finished. Returns the
    records, by shard."""
    base = parts_dir(out)
    found: dict[tuple[int, int], Provenance] = {}
    for d in sorted(base.glob("shard-*-of-*")):
        shard = _shard_name(d)
        if shard is None or not d.is_dir() or (this is not None and shard == this.shard):
            continue
        data = read_provenance(d)
        where = f"{out}: shard {shard[0]} of {shard[1]}"
        if data is None:
            raise CdpsimError(
                f"{where} has no provenance record: it was made by a cdpsim older than parts "
                f"format 1; this is cdpsim {__version__} with parts format {PARTS_FORMAT}: "
                f"regenerate (remove {base})",
                2,
            )
        if data.get("partsFormat") != PARTS_FORMAT:
            raise CdpsimError(
                f"{where} was made by cdpsim {data.get('generator', '?')} with parts format "
                f"{data.get('partsFormat', '?')}; this is cdpsim {__version__} with parts "
                f"format {PARTS_FORMAT}: regenerate (remove {base})",
                2,
            )
        try:
            record = Provenance.from_json(data)
        except (KeyError, TypeError, ValueError):
            raise CdpsimError(
                f"{d / RECORD}: unreadable provenance record; regenerate", 2
            ) from None
        if record.shard != shard:
            raise CdpsimError(f"{where}: its record says shard {record.shard}; regenerate", 2)
        found[shard] = record
    if not found and this is None:
        raise CdpsimError(f"{out}: no generated parts to merge", 2)

    problems: list[str] = []
    counts = sorted({s[1] for s in found} | ({this.shard[1]} if this else set()))
    if len(counts) > 1:
        held = ", ".join(f"shard {i} of {n}" for i, n in sorted(found))
        mine = f"; this run is --shard {this.shard[0]}/{this.shard[1]}" if this else ""
        problems.append(
            f"the parts were made with different shard counts ({' and '.join(map(str, counts))}):"
            f" {base} holds {held}{mine}"
        )
    # What every shard is compared with: this run, or the lowest shard present.
    ref = this if this is not None else found[min(found)]
    ref_name = "this run" if this is not None else f"shard {ref.shard[0]} of {ref.shard[1]}"
    for shard, r in sorted(found.items()):
        if r is ref:
            continue
        name = f"shard {shard[0]} of {shard[1]}"
        if r.content_sha256 != ref.content_sha256:
            problems.append(
                f"{name} was made from profile {_label(r)} "
                f"but {ref_name} from profile {_label(ref)}"
            )
        if r.seed != ref.seed:
            problems.append(
                f"{name} was made with seed {r.seed} but {ref_name} with seed {ref.seed}"
            )
        size, ref_size = (r.events, r.days, r.guests), (ref.events, ref.days, ref.guests)
        if size != ref_size:
            problems.append(f"{name} was made with {_size(r)} but {ref_name} with {_size(ref)}")
        if r.output != ref.output:
            problems.append(
                f"{name} was made for --format {r.output} but {ref_name} for {ref.output}"
            )
    given = profile_digest(profile)
    if this is None and ref.content_sha256 != given:
        problems.append(
            f"parts were made from profile {_label(ref)} but --profile is "
            f"{profile_label(profile.name, profile.sha256, given)}"
        )
    if problems:
        raise CdpsimError(
            f"{out}: these parts do not belong together:\n  "
            + "\n  ".join(problems)
            + f"\nuse the same profile, seed, size and shard count, or remove {base} and "
            "generate again",
            2,
        )
    if complete:
        n = ref.shard[1]
        for i in range(1, n + 1):
            if (i, n) not in found:
                problems.append(f"shard {i} of {n} is missing")
            elif not (shard_dir(out, (i, n)) / "done").exists():
                problems.append(f"shard {i} of {n} is unfinished (interrupted, or still running)")
        if problems:
            raise CdpsimError(
                f"{out}: cannot merge yet: "
                + "; ".join(problems)
                + f"; write them with `cdpsim generate {ref.profile} --out {out} --shard I/{n}` "
                "and the same options, and the last one merges",
                2,
            )
    return [found[s] for s in sorted(found)]


def _size(r: Provenance) -> str:
    asked = [
        f"--{k} {v}" for k, v in (("events", r.events), ("days", r.days), ("guests", r.guests))
    ]
    given = [a for a, v in zip(asked, (r.events, r.days, r.guests), strict=True) if v is not None]
    return " ".join(given) if given else "the profile's size"
