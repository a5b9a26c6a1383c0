"""A replay run: guests in flight, order kept per guest, paced, retried, checkpointed as it goes."""

from __future__ import annotations

import os
import random
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import gevent
import gevent.event
import gevent.queue
import orjson

from generator.endpoint import Endpoint, parse_endpoint
from generator.errors import CdpsimError
from generator.events.wire import WireRequest
from generator.fault_injection import (
    FAULT_HEADER,
    FaultMix,
    StreamFaults,
    replay_late_after,
    spoil_wire,
)
from generator.redaction import mask_key
from generator.replay.checkpoint import Checkpoint, CheckpointError, default_state_path
from generator.replay.pacing import RateLimit, Timeline
from generator.replay.plan import ReplayPlan, ReplayStep, browser_key, session_close_key
from generator.replay.retry import RetryPolicy
from generator.replay.sender import Outcome, Reply, Sender

__all__ = ["ProgressFn", "ReplayOptions", "ReplayResult", "replay"]

# Called a few times a second with (events finished, events in all, requests/s just now).
ProgressFn = Callable[[int, int, float], None]


@dataclass(frozen=True)
class ReplayOptions:
    dataset: Path
    target: str
    state: Path | None = None
    rate: float = 0.0  # requests/s over the whole run, retries included; 0 is no cap
    speed: float | None = None  # None: as fast as the rate allows
    concurrency: int = 16
    resume: bool = False
    allow_remote: bool = False
    timeout: float = 10.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    checkpoint_interval: float = 0.5
    window: int = 8192  # lines read ahead of the oldest unfinished one
    grace: float = 3.0  # seconds in-flight requests get to finish after SIGINT
    retry_failed: bool = False  # with resume: send the events that failed for good again
    sessions: str = "close"  # close | merge: how a dataset session ends at the target (SESSIONS)
    # Labelled dirty traffic (--faults): listed in `faults_log` (faults.jsonl).
    faults: FaultMix | None = None
    faults_log: Path | None = None
    faults_seed: int = 0


# How a dataset session ends at the target. The target makes its own sessions from the traffic:
# a browser's next event opens a new one only after the point of sale's timeout, so replayed
# faster than that, a browser's sessions would merge into one.
SESSIONS = {
    "close": "a FORCE_CLOSE ends each dataset session at the target before the browser's next "
    "one starts (counted apart from the dataset's events), so the target has the dataset's "
    "sessions at any speed",
    "merge": "nothing is added: sessions closer together (after --speed) than the timeout "
    "merge at the target",
}
# Below this margin around the timeout, the target may or may not have closed a session itself.
_TIMEOUT_MARGIN_S = 5.0


@dataclass
class ReplayResult:
    status: str  # complete | interrupted | stopped
    state: Path
    checkpoint: Checkpoint
    plan: ReplayPlan
    target: Endpoint
    elapsed_s: float
    requests: int  # attempts made by this run
    error: str | None = None
    already_complete: bool = False
    error_code: int = 0


def _outside_allocation(answer: Reply) -> bool:
    """The embedded server answers `"variant": null` when its own assignment puts the guest
    outside an experiment's traffic allocation: the call succeeded but no TRACKING was made."""
    if b'"variant":null' not in answer.body.replace(b" ", b""):
        return False
    data = answer.json()
    return isinstance(data, dict) and "variant" in data and data["variant"] is None


class _Stopped(Exception):
    """The run is stopping; the step in hand stays unfinished and is sent again on resume."""


class GiveUp(CdpsimError):
    def __init__(self, message: str) -> None:
        super().__init__(message, code=4)


def replay(
    options: ReplayOptions,
    *,
    on_progress: ProgressFn | None = None,
    rng: random.Random | None = None,
) -> ReplayResult:
    """Replay a dataset into a target; raises CdpsimError for bad input before anything is sent."""
    target = parse_endpoint(
        options.target,
        option="--target",
        allow_remote=options.allow_remote,
        why_local="replay sends a whole dataset",
        base_path=True,
    )
    if options.sessions not in SESSIONS:
        raise CdpsimError(f"--sessions {options.sessions!r}: use {' or '.join(SESSIONS)}", code=2)
    if options.retry_failed and not options.resume:
        raise CdpsimError("--retry-failed goes with --resume (it retries a checkpoint's)", code=2)
    plan = ReplayPlan.open(options.dataset)
    state = options.state or default_state_path(options.dataset)
    if options.resume:
        checkpoint = Checkpoint.load(state)
        checkpoint.check_matches(state, plan.fingerprint, target.url)
    else:
        if state.exists():
            raise CheckpointError(
                f"{state}: a checkpoint from an earlier replay is there; pass --resume to "
                "continue it, or remove it (or use --state) to start over. Nothing was sent."
            )
        checkpoint = Checkpoint(plan.fingerprint, target.url, plan.total)
    retrying = options.retry_failed and bool(checkpoint.failed)
    to_send = not checkpoint.complete or retrying
    if to_send:
        # Exit 4, as `load`: nothing listens there (a URL that cannot be used at all is exit 2).
        # Before the dataset is read through: that takes a while for a big one.
        target.check_reachable(timeout=3.0, what="; nothing was sent")
    plan.check()
    if checkpoint.total != plan.total:
        raise CheckpointError(
            f"{state}: checkpoint counts {checkpoint.total} events, not {plan.total}"
        )
    if not to_send:
        return ReplayResult(
            _finished(checkpoint), state, checkpoint, plan, target, 0.0, 0, None, True
        )
    checkpoint.tally.runs += 1
    checkpoint.save(state)  # before anything is sent: the state path must be writable
    run = _Run(plan, checkpoint, state, target, options, rng or random.Random(), on_progress)
    return run.run()


def _finished(checkpoint: Checkpoint) -> str:
    """The status of a run that got to the end: complete only if every event went through."""
    return "failed" if checkpoint.failed else "complete"


class _Journal:
    """The lines runs have started sending, appended to a small file beside the checkpoint as
    they start; after each save of the checkpoint, a mark of its generation and the lines still
    in flight. After a SIGKILL, the lines after the last mark (up to the checkpoint's
    generation) that the checkpoint does not hold finished are exactly those whose outcome is
    unknown.

    Appends are plain write()s, no fsync: they survive the process being killed; after the
    machine loses power the last half second of them may be missing. A journal without a mark
    the checkpoint knows is not trusted, and the checkpoint's horizon bounds the unknown lines.
    """

    _COMPACT_BYTES = 1 << 20

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1
        self._size = 0

    def read(self, generation: int, horizon: int) -> set[int] | None:
        try:
            lines = self.path.read_bytes().split(b"\n")
        except FileNotFoundError:
            # No journal: nothing was ever sent (the horizon is saved before the first line
            # goes), or it was lost, or the checkpoint is older than journals.
            return set() if horizon == 0 else None
        start = None
        for i, line in enumerate(lines):
            if line.startswith(b"G ") and line[2:].isdigit() and int(line[2:]) <= generation:
                start = i + 1  # the last mark this checkpoint had reached
        if start is None:
            return None
        return {int(line) for line in lines[start:] if line.isdigit()}

    def mark(self, generation: int, inflight: set[int]) -> None:
        """Right after the checkpoint's save: from here, only the lines in flight are unknown."""
        text = "".join([f"G {generation}\n", *(f"{seq}\n" for seq in sorted(inflight))])
        if self._fd < 0 or self._size > self._COMPACT_BYTES:
            # Start afresh (atomically: until the rename the old journal, marks and all, holds).
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(text)
            os.replace(tmp, self.path)
            self.close()
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            self._size = len(text)
        else:
            self._write(text.encode())

    def started(self, seq: int) -> None:
        self._write(b"%d\n" % seq)

    def _write(self, data: bytes) -> None:
        os.write(self._fd, data)
        self._size += len(data)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class _Run:
    def __init__(
        self,
        plan: ReplayPlan,
        checkpoint: Checkpoint,
        state: Path,
        target: Endpoint,
        options: ReplayOptions,
        rng: random.Random,
        on_progress: ProgressFn | None,
    ) -> None:
        self.plan = plan
        self.ckpt = checkpoint
        self.state = state
        self.target = target
        self.options = options
        self.rng = rng
        self.on_progress = on_progress
        self.sender = Sender(target, pool=options.concurrency, timeout=options.timeout)
        self.rate = RateLimit(options.rate)
        self.timeline = Timeline(options.speed)
        self.durable_horizon = checkpoint.horizon
        self.journal = _Journal(state.with_name(state.name + ".journal"))
        # Lines an earlier run may have sent and this one has not finished yet: those the
        # journal says were started, or without a journal to trust, any unfinished line up to
        # the saved horizon. Every journal mark repeats them until they finish, so a second
        # kill before then still knows them.
        unknown = self.journal.read(checkpoint.generation, checkpoint.horizon)
        if unknown is None:
            unknown = set(range(checkpoint.watermark + 1, checkpoint.horizon + 1))
        self.carried = {seq for seq in unknown if not checkpoint.is_done(seq)}
        self.inflight: set[int] = set()
        # Lines that failed for good before, sent again (--retry-failed): the target refused
        # them, so a repeat cannot double anything.
        self.retrying: set[int] = set(checkpoint.failed) if options.retry_failed else set()
        if self.retrying:
            checkpoint.failed_browsers.clear()
        # How far past the next line a horizon save reaches: about half a second of sends, so
        # saves stay rare at speed while the bound on possible duplicates stays tight.
        self.min_horizon_step = max(256, 8 * options.concurrency)
        self.horizon_step = self.min_horizon_step
        self.queues: dict[str, deque[ReplayStep]] = {}
        # (line, step); a worker takes the oldest step whose guest has nothing in flight.
        self.ready: gevent.queue.PriorityQueue[tuple[int, ReplayStep | None]] = (
            gevent.queue.PriorityQueue()
        )
        self.stopping = gevent.event.Event()
        self.over = gevent.event.Event()
        self.window_open = gevent.event.Event()
        self.reader_done = False
        self.status = "complete"
        self.error: CdpsimError | None = None
        self.crash: Exception | None = None  # a bug, re-raised once the checkpoint is saved
        self.requests = 0
        self.dirty = False
        self.faults: StreamFaults[ReplayStep] | None = None
        # --faults late: steps held back (the last line read before each), their refs.
        self.late_held: deque[tuple[int, ReplayStep]] = deque()
        self.late_refs: set[str] = set()
        self.last_read = 0  # the highest line read and queued
        self.finished_seq = 0  # the highest line finished
        if options.faults is not None:
            log = options.faults_log or state.with_name(state.name + ".faults.jsonl")
            # A late event is held behind most of the read-ahead window's later lines (or, in
            # a shorter replay, until the end), and sent, labelled, once those are sent: long
            # after its time, after events created well after it.
            late_after = replay_late_after(options.window)
            self.faults = StreamFaults(
                options.faults, options.faults_seed, log, late_after=late_after
            )

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> ReplayResult:
        started = time.monotonic()
        self._save()  # and a journal that follows it
        handlers = [
            gevent.signal_handler(signal.SIGINT, self.stop, "interrupted"),
            gevent.signal_handler(signal.SIGTERM, self.stop, "interrupted"),
        ]
        reader = gevent.spawn(self._read)
        workers = [gevent.spawn(self._work) for _ in range(self.options.concurrency)]
        helpers = [gevent.spawn(self._save_periodically)]
        if self.on_progress:
            helpers.append(gevent.spawn(self._report_progress))
        try:
            self.over.wait()
            if self.stopping.is_set():
                gevent.joinall(workers, timeout=self.options.grace)
            gevent.killall([reader, *workers, *helpers])
        finally:
            for handler in handlers:
                handler.cancel()
            self._save()
            self.journal.close()
            self.sender.close()
        if self.crash is not None:
            raise self.crash
        if self.on_progress:
            self.on_progress(self.ckpt.finished, self.ckpt.total, 0.0)
        return ReplayResult(
            _finished(self.ckpt) if self.status == "complete" else self.status,
            self.state,
            self.ckpt,
            self.plan,
            self.target,
            time.monotonic() - started,
            self.requests,
            str(self.error) if self.error else None,
            error_code=self.error.code if self.error else 0,
        )

    def stop(self, status: str, error: CdpsimError | None = None) -> None:
        if not self.stopping.is_set():
            self.status = status
            self.error = error
            self.stopping.set()
            self.window_open.set()
            self.over.set()
            self._release_idle_workers()

    def _release_idle_workers(self) -> None:
        # Sentinels sort before every step (lines are numbered from 1), one per worker.
        for i in range(self.options.concurrency):
            self.ready.put((-1 - i, None))

    # -- reading ahead ---------------------------------------------------------------------

    def _read(self) -> None:
        ckpt = self.ckpt
        after = min(ckpt.watermark, min(self.retrying, default=ckpt.watermark + 1) - 1)
        try:
            steps = self.plan.steps(after=after, validate=False)
            if self.faults is not None:
                steps = self.faults.reorder(steps, lambda s: s.guest, lambda s: s.ref)
            for n, step in enumerate(steps):
                if ckpt.is_done(step.seq) and step.seq not in self.retrying:
                    continue
                # Bounded read-ahead keeps memory flat and the checkpoint's `done` set small.
                while step.seq - ckpt.watermark > self.options.window:
                    self.window_open.clear()
                    self.window_open.wait()
                    if self.stopping.is_set():
                        return
                if self.faults is not None and self.faults.late(step.ref):
                    # Late: held until the senders are past the lines read before it.
                    self.late_refs.add(step.ref)
                    self.late_held.append((self.last_read, step))
                else:
                    self.last_read = max(self.last_read, step.seq)
                    self._enqueue(step)
                if n % 64 == 0:
                    gevent.sleep(0)  # let the senders start while the file is read
        except Exception as exc:
            self._halt(exc)
            return
        self.reader_done = True
        self._release_late()
        if not self.queues:
            self.over.set()

    def _enqueue(self, step: ReplayStep) -> None:
        queue = self.queues.get(step.guest)
        if queue is None:
            self.queues[step.guest] = deque((step,))
            self.ready.put((step.seq, step))
        else:
            queue.append(step)

    def _release_late(self) -> None:
        """--faults late: a held step goes to its guest's queue once a line read before it (in
        the faulted stream, thousands of lines after its own) has finished, or at the end."""
        held = self.late_held
        while held:
            mark = held[0][0]
            # Held to the end of the stream (no line read after its mark): sent last.
            passed = mark < self.last_read and mark <= self.finished_seq
            if not (passed or (self.reader_done and not self.queues)):
                return
            self._enqueue(held.popleft()[1])

    # -- sending -----------------------------------------------------------------------------

    def _work(self) -> None:
        while not self.stopping.is_set():
            _, step = self.ready.get()
            if step is None or self.stopping.is_set():
                return
            if step.seq > self.durable_horizon:
                self.ckpt.horizon = max(self.ckpt.horizon, step.seq + self.horizon_step)
                self._save()
            self.inflight.add(step.seq)
            self.journal.started(step.seq)
            try:
                wait = self.timeline.wait_for(step.created_ms)
                if wait > 0 and self.stopping.wait(wait):
                    return
                self._replay_step(step)
            except _Stopped:
                return
            except Exception as exc:
                self._halt(exc)
                return
            self._finish(step)

    def _halt(self, exc: Exception) -> None:
        """Stop the run: a user's error is reported as is; anything else is a bug, kept to be
        raised once the checkpoint is saved."""
        if isinstance(exc, CdpsimError):
            self.stop("stopped", exc)
        else:
            self.crash = exc
            self.stop("stopped")

    def _may_have_been_sent(self, seq: int) -> bool:
        """Whether an earlier run may have sent this line (so a target ignoring keys might store
        it twice): the journal's lines, or without a journal to trust, any unfinished line up to
        the saved horizon. A line sent again with --retry-failed was refused for good before
        (it is finished, so never among them): nothing of it was stored."""
        return seq in self.carried

    def _replay_step(self, step: ReplayStep) -> None:
        ckpt = self.ckpt
        repeat = self._may_have_been_sent(step.seq)
        browser_id = ckpt.browsers.get(step.browser_ref)
        if browser_id is None:
            failed = ckpt.failed_browsers.get(step.browser_ref)
            if failed is None:
                browser_id, failed = self._create_browser(step, repeat)
            if browser_id is None:
                ckpt.fail(seq=step.seq, ref=step.ref, kind=step.type, reason=str(failed))
                return
        if self.options.sessions == "close":
            self._end_previous_session(step, browser_id, repeat)
        request = self.plan.request(step, browser_id)
        late = step.ref in self.late_refs
        self.late_refs.discard(step.ref)
        labels = {FAULT_HEADER: "1:late"} if late else None
        answer = self._send(request, step.ref, step.ref, repeat, labels)
        if answer.outcome is Outcome.ACKNOWLEDGED:
            ckpt.tally.ack(step.type)
            ckpt.succeed(step.seq)
            if step.type == "TRACKING" and _outside_allocation(answer):
                ckpt.tally.flow_runs_not_recorded += 1
            if self.options.sessions == "close":
                self._note_session(step)
        else:
            ckpt.fail(seq=step.seq, ref=step.ref, kind=step.type, reason=answer.reason)
        if self.faults is not None:
            self._send_fault_copies(step, request)

    def _send_fault_copies(self, step: ReplayStep, request: WireRequest) -> None:
        """--faults: duplicates (same idempotency key) and malformed copies, labelled, sent
        once each and outside the tally: the target's answer to them is not the run's."""
        assert self.faults is not None
        for kind, detail in self.faults.copies(step.ref):
            headers = {FAULT_HEADER: f"1:{kind}"}
            body = request.body or {}
            raw = None
            key = step.ref
            if kind == "dup-changed":
                raw = orjson.dumps({**body, "cdpsim_changed": True})
            elif kind == "malformed":
                raw, key = spoil_wire(body, detail), f"{step.ref}:malformed"
            self.requests += 1
            self.sender.send(request, key, extra_headers=headers, raw_body=raw)

    # -- sessions ------------------------------------------------------------------------------

    def _note_session(self, step: ReplayStep) -> None:
        """Remember the session this browser now has open at the target (none after a
        FORCE_CLOSE, which ends it)."""
        event = step.event
        key = f"{step.browser_ref} {event['channel']}"
        if step.type == "FORCE_CLOSE":
            self.ckpt.sessions.pop(key, None)
        else:
            self.ckpt.sessions[key] = (event["sessionRef"], time.time(), event["pointOfSale"])

    def _end_previous_session(self, step: ReplayStep, browser_id: str, repeat: bool) -> None:
        """Before the first event of a browser's next dataset session, end the one before it at
        the target, which would otherwise take the new events in (--sessions close)."""
        event = step.event
        key = f"{step.browser_ref} {event['channel']}"
        open_at_target = self.ckpt.sessions.get(key)
        if open_at_target is None or open_at_target[0] == event["sessionRef"]:
            return
        session, last_sent, pos = open_at_target
        timeout = self.plan.session_timeout_s(pos)
        idle = time.time() - last_sent
        if idle < timeout - _TIMEOUT_MARGIN_S:
            request = self.plan.session_close(event, pos, browser_id)
            answer = self._send(request, session_close_key(session), session, repeat)
            if answer.outcome is Outcome.ACKNOWLEDGED:
                self.ckpt.tally.sessions_closed += 1
            else:  # the event still goes; at worst this session merges with the next
                self.ckpt.tally.session_closes_failed += 1
        elif idle < timeout + _TIMEOUT_MARGIN_S and self.stopping.wait(
            timeout + _TIMEOUT_MARGIN_S - idle
        ):
            # Too close to the timeout to tell whether the target closed it (a FORCE_CLOSE
            # could open a session of its own): waited until it certainly has, or stopped.
            raise _Stopped
        del self.ckpt.sessions[key]

    def _create_browser(self, step: ReplayStep, repeat: bool) -> tuple[str | None, str | None]:
        answer = self._send(
            self.plan.browser_request(step.guest),
            browser_key(step.browser_ref),
            step.browser_ref,
            repeat,
        )
        if answer.outcome is Outcome.ACKNOWLEDGED:
            data = answer.json()
            ref = data.get("ref") if isinstance(data, dict) else None
            if isinstance(ref, str) and ref:
                self.ckpt.browsers[step.browser_ref] = ref
                self.ckpt.tally.ack("browser/create")
                return ref, None
            failed = "browser create: the answer has no `ref`"
        elif answer.status == 401:
            # A tenant-wide problem: every event would fail the same way, so stop instead.
            raise CdpsimError(
                f"the target refused the dataset's client key {mask_key(self.plan.client_key)} "
                "(401 at browser create); is it serving this dataset's profile?",
                code=1,
            )
        else:
            failed = f"browser create: {answer.reason}"
        self.ckpt.failed_browsers[step.browser_ref] = failed
        return None, failed

    def _send(
        self,
        request: WireRequest,
        key: str,
        what: str,
        repeat: bool,
        labels: dict[str, str] | None = None,
    ) -> Reply:
        """Send until acknowledged or failed for good; raises GiveUp when retries run out."""
        tally = self.ckpt.tally
        tally.sent += 1
        # A send that repeats one an earlier run may have made could double the event at a
        # target that ignores the key; so could each retry after an answer that is ambiguous.
        maybe_stored = repeat
        attempt = 0
        while True:
            wait = self.rate.delay()
            if wait > 0 and self.stopping.wait(wait):
                raise _Stopped
            if maybe_stored:
                tally.possible_duplicates += 1
            self.requests += 1
            answer = self.sender.send(request, key, extra_headers=labels)
            if answer.outcome in (Outcome.ACKNOWLEDGED, Outcome.PERMANENT):
                return answer
            maybe_stored = answer.outcome is Outcome.AMBIGUOUS
            attempt += 1
            if attempt > self.options.retry.max_retries:
                raise GiveUp(
                    f"gave up on {request.name} {what} after {attempt} attempts (last: "
                    f"{answer.reason}); the checkpoint is saved, run again with --resume"
                )
            tally.retried += 1
            delay = self.options.retry.delay(attempt, answer.retry_after, self.rng)
            if self.stopping.wait(delay):
                raise _Stopped

    def _finish(self, step: ReplayStep) -> None:
        self.inflight.discard(step.seq)
        self.carried.discard(step.seq)
        self.retrying.discard(step.seq)
        self.ckpt.mark_done(step.seq)
        self.dirty = True
        queue = self.queues[step.guest]
        queue.popleft()
        if queue:
            self.ready.put((queue[0].seq, queue[0]))
        else:
            del self.queues[step.guest]
        self.finished_seq = max(self.finished_seq, step.seq)
        if self.late_held:
            self._release_late()
        self.window_open.set()
        if self.reader_done and not self.queues:
            self.over.set()

    # -- keeping the checkpoint and the user up to date -----------------------------------------

    def _save(self) -> None:
        # Blocking on purpose: no other greenlet runs while the file is written, so the snapshot
        # is consistent without a lock.
        self.ckpt.generation += 1
        self.ckpt.save(self.state)
        self.journal.mark(self.ckpt.generation, self.inflight | self.carried)
        self.durable_horizon = self.ckpt.horizon
        self.dirty = False

    def _save_periodically(self) -> None:
        interval = self.options.checkpoint_interval
        finished = self.ckpt.finished
        while True:
            gevent.sleep(interval)
            rate = (self.ckpt.finished - finished) / interval
            finished = self.ckpt.finished
            self.horizon_step = min(8192, max(self.min_horizon_step, int(rate * 0.5)))
            if self.dirty:
                self._save()

    def _report_progress(self) -> None:
        assert self.on_progress is not None
        last_time, last_requests = time.monotonic(), self.requests
        rps = 0.0
        while True:
            gevent.sleep(0.25)
            now = time.monotonic()
            if now - last_time >= 1.0:
                rps = (self.requests - last_requests) / (now - last_time)
                last_time, last_requests = now, self.requests
            self.on_progress(self.ckpt.finished, self.ckpt.total, rps)
