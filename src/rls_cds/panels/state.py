"""Run state in Redis: the plan, what is done, chunk outputs and unit results of one panel run.

Exactly-once in effect: every output is written under the id of the work item that produced it
(``HSET part:<p> <chunk id> <facts>``, ``HSET results <unit id> <result>``) in the same MULTI as the
item's "done" mark, so an item processed twice overwrites its own output and counts are always
*computed* from the stored outputs, never incremented. Any process can look at the state and decide
what is still to do (``pending``), which is what makes a run resumable after a killed worker.

Keys (``rls:panel:run:<run id>:*``, all expiring with the run): ``meta`` (hash), ``chunks`` (hash id ->
chunk JSON), ``units`` (hash id -> unit JSON), ``done:map`` / ``done:reduce`` (sets), ``queued:<phase>``
(hash id -> epoch seconds of the last enqueue), ``part:<p>`` (hash chunk id -> msgpack thin resources),
``meds`` (hash Medication id -> msgpack), ``mapstats`` (hash chunk id -> JSON counts), ``members:<p>``
(set of patient keys expected in partition p), ``results`` (hash unit id -> JSON), ``report`` (JSON).
Per panel: ``rls:panel:p:<panel>:runs`` (list of run ids, newest first). ``rls:panel:active`` (set).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import orjson
import redis

PREFIX = "rls:panel"
RUN_TTL_SECONDS = 30 * 86400  # run state and reports stay queryable for a month
TERMINAL = ("succeeded", "completed_with_errors", "failed")


def panel_runs_key(panel_id: str) -> str:
    return f"{PREFIX}:p:{panel_id}:runs"


ACTIVE_KEY = f"{PREFIX}:active"


class RunState:
    def __init__(self, client: redis.Redis, run_id: str):
        self.r = client
        self.run_id = run_id
        self.base = f"{PREFIX}:run:{run_id}"

    def k(self, suffix: str) -> str:
        return f"{self.base}:{suffix}"

    # --- creation ----------------------------------------------------------------------------
    def create(self, meta: dict, chunks: dict[str, dict], units: dict[str, dict]) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.k("meta"), mapping={k: _enc(v) for k, v in meta.items()})
        if chunks:
            pipe.hset(self.k("chunks"), mapping={c: orjson.dumps(v) for c, v in chunks.items()})
        if units:
            pipe.hset(self.k("units"), mapping={u: orjson.dumps(v) for u, v in units.items()})
        for key in ("meta", "chunks", "units"):
            pipe.expire(self.k(key), RUN_TTL_SECONDS)
        pipe.lpush(panel_runs_key(meta["panel"]), self.run_id)
        pipe.ltrim(panel_runs_key(meta["panel"]), 0, 999)
        pipe.sadd(ACTIVE_KEY, self.run_id)
        pipe.execute()

    def add_chunks(self, chunks: dict[str, dict]) -> None:
        """Bulk runs learn their chunks only once the export manifest is in."""
        if chunks:
            self.r.hset(self.k("chunks"), mapping={c: orjson.dumps(v) for c, v in chunks.items()})
            self.r.expire(self.k("chunks"), RUN_TTL_SECONDS)

    def add_units(self, units: dict[str, dict]) -> None:
        if units:
            self.r.hset(self.k("units"), mapping={u: orjson.dumps(v) for u, v in units.items()})
            self.r.expire(self.k("units"), RUN_TTL_SECONDS)

    def add_members(self, by_part: dict[int, list[str]]) -> None:
        self._add_to_partition_sets("members", by_part)

    def add_forced(self, by_part: dict[int, list[str]]) -> None:
        """Patient keys an incremental run must read in full even if nothing of theirs changed."""
        self._add_to_partition_sets("force", by_part)

    def _add_to_partition_sets(self, name: str, by_part: dict[int, list[str]]) -> None:
        pipe = self.r.pipeline(transaction=False)
        for p, keys in by_part.items():
            if keys:
                pipe.sadd(self.k(f"{name}:{p}"), *keys)
                pipe.expire(self.k(f"{name}:{p}"), RUN_TTL_SECONDS)
        pipe.execute()

    # --- reading -----------------------------------------------------------------------------
    def exists(self) -> bool:
        return bool(self.r.exists(self.k("meta")))

    def meta(self) -> dict:
        return {k.decode(): orjson.loads(v) for k, v in self.r.hgetall(self.k("meta")).items()}

    def set_meta(self, **fields) -> None:
        self.r.hset(self.k("meta"), mapping={k: _enc(v) for k, v in fields.items()})

    def chunk(self, cid: str) -> dict | None:
        raw = self.r.hget(self.k("chunks"), cid)
        return orjson.loads(raw) if raw else None

    def unit(self, uid: str) -> dict | None:
        raw = self.r.hget(self.k("units"), uid)
        return orjson.loads(raw) if raw else None

    def ids(self, phase: str) -> list[str]:
        key = self.k("chunks" if phase == "map" else "units")
        return sorted(x.decode() for x in self.r.hkeys(key))

    def done(self, phase: str) -> set[str]:
        return {x.decode() for x in self.r.smembers(self.k(f"done:{phase}"))}

    def pending(self, phase: str) -> list[str]:
        done = self.done(phase)
        return [i for i in self.ids(phase) if i not in done]

    def counts(self) -> dict[str, int]:
        pipe = self.r.pipeline(transaction=False)
        pipe.hlen(self.k("chunks"))
        pipe.scard(self.k("done:map"))
        pipe.hlen(self.k("units"))
        pipe.scard(self.k("done:reduce"))
        pipe.hvals(self.k("mapcounts"))
        pipe.hvals(self.k("unitcounts"))
        a, b, c, d, resources, patients = pipe.execute()
        return {
            "chunks": a,
            "chunks_done": b,
            "units": c,
            "units_done": d,
            "resources": sum(int(x) for x in resources),
            "patients": sum(int(x) for x in patients),
        }

    def members(self, p: int) -> set[str] | None:
        """Patient keys expected in partition p, or None when the panel has no explicit member list."""
        if not self.meta_flag("has_members"):
            return None
        return {x.decode() for x in self.r.smembers(self.k(f"members:{p}"))}

    def forced(self, p: int) -> set[str]:
        """Patient keys of partition p to read in full (add_forced)."""
        return {x.decode() for x in self.r.smembers(self.k(f"force:{p}"))}

    def meta_flag(self, name: str) -> bool:
        raw = self.r.hget(self.k("meta"), name)
        return bool(raw and orjson.loads(raw))

    def part_blobs(self, p: int) -> list[bytes]:
        return list(self.r.hvals(self.k(f"part:{p}")))

    def meds(self, ids: Iterable[str]) -> dict[str, bytes]:
        ids = list(ids)
        if not ids:
            return {}
        values = self.r.hmget(self.k("meds"), ids)
        return {i: v for i, v in zip(ids, values, strict=True) if v is not None}

    def mapstats(self) -> list[dict]:
        return [orjson.loads(v) for v in self.r.hvals(self.k("mapstats"))]

    def results(self) -> dict[str, dict]:
        return {k.decode(): orjson.loads(v) for k, v in self.r.hgetall(self.k("results")).items()}

    def queued_at(self, phase: str) -> dict[str, float]:
        return {k.decode(): float(v) for k, v in self.r.hgetall(self.k(f"queued:{phase}")).items()}

    # --- writing outputs (each with its done mark, atomically) ---------------------------------
    def save_map_output(self, cid: str, parts: dict[int, bytes], meds: dict[str, bytes], stats: dict) -> None:
        pipe = self.r.pipeline(transaction=True)
        for p, blob in parts.items():
            pipe.hset(self.k(f"part:{p}"), cid, blob)
            pipe.expire(self.k(f"part:{p}"), RUN_TTL_SECONDS)
        if meds:
            pipe.hset(self.k("meds"), mapping=meds)
            pipe.expire(self.k("meds"), RUN_TTL_SECONDS)
        pipe.hset(self.k("mapstats"), cid, orjson.dumps(stats))
        pipe.hset(self.k("mapcounts"), cid, stats["resources"])
        pipe.expire(self.k("mapcounts"), RUN_TTL_SECONDS)
        pipe.sadd(self.k("done:map"), cid)
        for key in ("mapstats", "done:map"):
            pipe.expire(self.k(key), RUN_TTL_SECONDS)
        pipe.execute()

    def save_result(self, uid: str, result: dict) -> None:
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(self.k("results"), uid, orjson.dumps(result))
        # Small per-unit counts for progress displays (the results themselves hold worklists).
        done = result["assessed"] + result.get("unchanged", 0) + len(result["errors"])
        pipe.hset(self.k("unitcounts"), uid, done)
        pipe.sadd(self.k("done:reduce"), uid)
        for key in ("results", "done:reduce", "unitcounts"):
            pipe.expire(self.k(key), RUN_TTL_SECONDS)
        pipe.execute()

    def mark_queued(self, phase: str, ids: Iterable[str]) -> None:
        ids = list(ids)
        if ids:
            now = time.time()
            self.r.hset(self.k(f"queued:{phase}"), mapping=dict.fromkeys(ids, now))
            self.r.expire(self.k(f"queued:{phase}"), RUN_TTL_SECONDS)

    def claim(self, name: str, ttl: int = RUN_TTL_SECONDS) -> bool:
        """A once-per-run flag (SET NX): True for the one caller that sets it."""
        return bool(self.r.set(self.k(f"flag:{name}"), b"1", nx=True, ex=ttl))

    def save_report(self, report: dict) -> None:
        self.r.set(self.k("report"), orjson.dumps(report), ex=RUN_TTL_SECONDS)

    def report(self) -> dict | None:
        raw = self.r.get(self.k("report"))
        return orjson.loads(raw) if raw else None

    def drop_intermediate(self, partitions: int) -> None:
        """Chunk facts are not needed once the report is written (the report and results stay)."""
        keys = [self.k(f"part:{p}") for p in range(partitions)] + [self.k("meds")]
        for i in range(0, len(keys), 500):
            self.r.delete(*keys[i : i + 500])

    def finish(self, status: str, **fields) -> None:
        self.set_meta(status=status, finished_at=time.time(), **fields)
        self.r.srem(ACTIVE_KEY, self.run_id)


def _enc(value) -> bytes:
    return orjson.dumps(value)


def runs_of(client: redis.Redis, panel_id: str, limit: int = 50) -> list[str]:
    return [x.decode() for x in client.lrange(panel_runs_key(panel_id), 0, limit - 1)]


def active_runs(client: redis.Redis) -> list[str]:
    return sorted(x.decode() for x in client.smembers(ACTIVE_KEY))
