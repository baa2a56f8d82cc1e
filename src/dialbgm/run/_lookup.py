"""What a run need not call: cache hits, an interrupted run's journal (``--resume``), and the
units given a new attempt (``--retry-status``, or carried over from an earlier run of a cell)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from dialbgm.calls import OutcomeSpool, ResponseCache, UnitOutcome, iter_journal
from dialbgm.run._prepare import Prepared
from dialbgm.run._record import history_entry, unit_row
from dialbgm.run._spec import FAILED_REPLY_STATUSES


def lookup(prep: Prepared, cache: ResponseCache | None, spool: OutcomeSpool) -> list[int]:
    """Put what the cache holds into ``spool``; return the indices of the units still to call."""
    misses: list[int] = []
    use = cache is not None and prep.backend.cacheable
    for i, key in enumerate(prep.keys):
        hit = cache.get_key(key) if use and cache is not None and not prep.is_pending(i) else None
        if hit is not None:
            spool.put(i, UnitOutcome(hit, True, None))
        else:
            misses.append(i)
    return misses


def replay_journal(prep: Prepared, run_dir: Path, spool: OutcomeSpool, misses: list[int], retry_failed: bool) -> int:
    """Fill the cache misses that an interrupted run's journal answered; returns how many units
    the journal answered.

    A record counts only if its unit still has the same cache key; the last record of a unit
    wins; with ``retry_failed`` a unit whose last record failed is left to be called again. A
    record of a re-ask (``attempt`` > 0) makes its unit answer that attempt, whatever the cache
    holds for the first asking, which goes into the unit's history.
    """
    return len(_replay(prep, run_dir, spool, set(misses), retry_failed))


def _replay(prep: Prepared, run_dir: Path, spool: OutcomeSpool, todo: set[int], retry_failed: bool) -> set[int]:
    answered: set[int] = set()
    for rec in iter_journal(run_dir):
        i = prep.units.index_of(rec["unit_id"])
        if i is None or prep.is_pending(i):
            continue
        attempt = int(rec.get("attempt") or 0)
        current = prep.attempts.get(i, 0)
        if attempt < current or (attempt == 0 and i not in todo):
            continue
        if attempt > current:
            if rec.get("cache_key") != replace(prep.request(i), attempt=attempt).cache_key():
                continue
            _ask_again(prep, i, attempt, spool.get(i) if spool.has(i) else None)
        elif rec.get("cache_key") != prep.keys[i]:
            continue
        if retry_failed and rec.get("response") is None:
            spool.discard(i)
            answered.discard(i)
        else:
            spool.put(i, UnitOutcome.from_record(rec))
            answered.add(i)
    return answered


def reask(prep: Prepared, cache: ResponseCache | None, spool: OutcomeSpool, statuses: set[str]) -> list[int]:
    """Give every unit whose reply ended in one of ``statuses`` (``parse_error``, ``truncated``,
    ``refused``) a new attempt: a request whose cache key differs from the first asking's, so the
    cached bad reply is not served again. The reply it replaces stays in the unit's history (and
    in the cache and journal). Returns the units re-asked; those whose new attempt is already
    cached (asked in another run) are filled from the cache, the others are left to be called."""
    wanted = statuses & set(FAILED_REPLY_STATUSES)
    if not wanted:
        return []
    asked: list[int] = []
    use = cache is not None and prep.backend.cacheable
    for i in range(len(prep.units)):
        if not spool.has(i):
            continue
        outcome = spool.get(i)
        if outcome.response is None or unit_row(prep, i, outcome)["status"] not in wanted:
            continue
        _ask_again(prep, i, prep.attempts.get(i, 0) + 1, outcome)
        spool.discard(i)
        asked.append(i)
        hit = cache.get_key(prep.keys[i]) if use and cache is not None else None
        if hit is not None:
            spool.put(i, UnitOutcome(hit, True, None))
    return asked


def carry_attempts(
    prep: Prepared, cache: ResponseCache | None, spool: OutcomeSpool, attempts: Mapping[str, int]
) -> None:
    """Start the units that an earlier run of this very config asked again (unit id → attempt)
    at that attempt, with the earlier replies the cache still holds as their history: running a
    cell again must not bring back the failed replies its re-asks replaced."""
    use = cache is not None and prep.backend.cacheable
    for unit_id, attempt in attempts.items():
        i = prep.units.index_of(unit_id)
        if i is None or attempt <= prep.attempts.get(i, 0) or prep.is_pending(i):
            continue
        while prep.attempts.get(i, 0) < attempt:
            _ask_again(prep, i, prep.attempts.get(i, 0) + 1, spool.get(i) if spool.has(i) else None)
            spool.discard(i)
            hit = cache.get_key(prep.keys[i]) if use and cache is not None else None
            if hit is not None:
                spool.put(i, UnitOutcome(hit, True, None))


def gather(
    prep: Prepared,
    cache: ResponseCache | None,
    spool: OutcomeSpool,
    journal_dir: Path | None,
    statuses: set[str],
    carried: Mapping[str, int] | None = None,
) -> tuple[list[int], int]:
    """Fill ``spool`` from the cache and (resuming) the run's journal, give the failed replies in
    ``statuses`` a new attempt; return the units still to call and how many the journal answered."""
    misses = lookup(prep, cache, spool)
    if carried:
        carry_attempts(prep, cache, spool, carried)
        misses = [i for i in range(len(prep.units)) if not spool.has(i)]
    answered: set[int] = set()
    if journal_dir is not None:
        answered = _replay(prep, journal_dir, spool, set(misses), "transport_error" in statuses)
    answered.difference_update(reask(prep, cache, spool, statuses))
    return [i for i in range(len(prep.units)) if not spool.has(i)], len(answered)


def _ask_again(prep: Prepared, i: int, attempt: int, superseded: UnitOutcome | None) -> None:
    """Make unit ``i`` answer ``attempt``, keeping the reply it had so far in its history."""
    prep.set_attempt(i, attempt, None if superseded is None else history_entry(prep, i, superseded))
