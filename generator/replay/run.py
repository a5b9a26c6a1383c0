"""A replay run: guests in flight, order kept per guest, paced, retried, checkpointed as it goes."""

from __future__ import annotations

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
from generator.fault_injection import FAULT_HEADER, FaultMix, StreamFaults, spoil_wire
from generator.redaction import mask_key
from generator.replay.checkpoint import Checkpoint, CheckpointError, default_state_path
from generator.replay.pacing import RateLimit, Timeline
from generator.replay.plan import ReplayPlan, ReplayStep, browser_key
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
    # Labelled dirty traffic (--faults): listed in `faults_log` (faults.jsonl).
    faults: FaultMix | None = None
    faults_log: Path | None = None
    faults_seed: int = 0


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
        code=1,
    )
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
    plan.check()
    if checkpoint.total != plan.total:
        raise CheckpointError(
            f"{state}: checkpoint counts {checkpoint.total} events, not {plan.total}"
        )
    if checkpoint.complete:
        return ReplayResult("complete", state, checkpoint, plan, target, 0.0, 0, None, True)
    target.check_reachable(timeout=3.0, code=1)
    checkpoint.tally.runs += 1
    checkpoint.save(state)  # before anything is sent: the state path must be writable
    run = _Run(plan, checkpoint, state, target, options, rng or random.Random(), on_progress)
    return run.run()


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
        # Lines at or below the saved horizon may have been sent by the run that saved it.
        self.resumed_horizon = checkpoint.horizon
        self.durable_horizon = checkpoint.horizon
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
        if options.faults is not None:
            log = options.faults_log or state.with_name(state.name + ".faults.jsonl")
            self.faults = StreamFaults(options.faults, options.faults_seed, log)

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> ReplayResult:
        started = time.monotonic()
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
            self.ckpt.save(self.state)
            self.sender.close()
        if self.crash is not None:
            raise self.crash
        if self.on_progress:
            self.on_progress(self.ckpt.finished, self.ckpt.total, 0.0)
        return ReplayResult(
            self.status,
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
        try:
            steps = self.plan.steps(after=ckpt.watermark, validate=False)
            if self.faults is not None:
                steps = self.faults.reorder(steps, lambda s: s.guest, lambda s: s.ref)
            for n, step in enumerate(steps):
                if ckpt.is_done(step.seq):
                    continue
                # Bounded read-ahead keeps memory flat and the checkpoint's `done` set small.
                while step.seq - ckpt.watermark > self.options.window:
                    self.window_open.clear()
                    self.window_open.wait()
                    if self.stopping.is_set():
                        return
                queue = self.queues.get(step.guest)
                if queue is None:
                    self.queues[step.guest] = deque((step,))
                    self.ready.put((step.seq, step))
                else:
                    queue.append(step)
                if n % 64 == 0:
                    gevent.sleep(0)  # let the senders start while the file is read
        except Exception as exc:
            self._halt(exc)
            return
        self.reader_done = True
        if not self.queues:
            self.over.set()

    # -- sending -----------------------------------------------------------------------------

    def _work(self) -> None:
        while not self.stopping.is_set():
            _, step = self.ready.get()
            if step is None or self.stopping.is_set():
                return
            if step.seq > self.durable_horizon:
                self.ckpt.horizon = max(self.ckpt.horizon, step.seq + self.horizon_step)
                self._save()
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

    def _replay_step(self, step: ReplayStep) -> None:
        ckpt = self.ckpt
        repeat = step.seq <= self.resumed_horizon
        browser_id = ckpt.browsers.get(step.browser_ref)
        if browser_id is None:
            failed = ckpt.failed_browsers.get(step.browser_ref)
            if failed is None:
                browser_id, failed = self._create_browser(step, repeat)
            if browser_id is None:
                ckpt.tally.fail(seq=step.seq, ref=step.ref, kind=step.type, reason=str(failed))
                return
        request = self.plan.request(step, browser_id)
        answer = self._send(request, step.ref, step.ref, repeat)
        if answer.outcome is Outcome.ACKNOWLEDGED:
            ckpt.tally.ack(step.type)
            if step.type == "TRACKING" and _outside_allocation(answer):
                ckpt.tally.flow_runs_not_recorded += 1
        else:
            ckpt.tally.fail(seq=step.seq, ref=step.ref, kind=step.type, reason=answer.reason)
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

    def _send(self, request: WireRequest, key: str, what: str, repeat: bool) -> Reply:
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
            answer = self.sender.send(request, key)
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
        self.ckpt.mark_done(step.seq)
        self.dirty = True
        queue = self.queues[step.guest]
        queue.popleft()
        if queue:
            self.ready.put((queue[0].seq, queue[0]))
        else:
            del self.queues[step.guest]
        self.window_open.set()
        if self.reader_done and not self.queues:
            self.over.set()

    # -- keeping the checkpoint and the user up to date -----------------------------------------

    def _save(self) -> None:
        # Blocking on purpose: no other greenlet runs while the file is written, so the snapshot
        # is consistent without a lock.
        self.ckpt.save(self.state)
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
