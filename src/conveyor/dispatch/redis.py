"""Redis Streams dispatch: one stream per queue, one consumer group, batched reads."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import redis

from conveyor.dispatch import keys
from conveyor.dispatch.base import Delivery

LISTENER_CHECK_S = 1.0

# For each stream KEYS[k], ARGV holds a count n then n ids: XADD them while the stream holds
# fewer than ARGV[1] entries. One call for every queue: one round trip per push.
PUSH_BOUNDED = """
local window = tonumber(ARGV[1])
local pos = 2
local added = 0
for k = 1, #KEYS do
  local n = tonumber(ARGV[pos])
  pos = pos + 1
  local length = redis.call('XLEN', KEYS[k])
  for i = pos, pos + n - 1 do
    if length >= window then break end
    redis.call('XADD', KEYS[k], '*', 'id', ARGV[i])
    length = length + 1
    added = added + 1
  end
  pos = pos + n
end
return added
"""


class RedisDispatcher:
    """The Redis adapter: a ``Handoff`` and an ``Events``, and what ``delivery.redis`` reads
    and the reconciler's feeder repairs (fetch, ack, depth, held, reclaim)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "conveyor",
        consumer: str = "client",
        window: int = 10_000,
    ) -> None:
        self.client: redis.Redis = redis.Redis.from_url(
            url, socket_timeout=10, socket_connect_timeout=3, health_check_interval=30
        )
        self.prefix = prefix
        self.consumer = consumer
        self._groups: set[str] = set()
        self.window = window
        self._push_bounded = self.client.register_script(PUSH_BOUNDED)
        self._listeners = 0
        self._listeners_checked = float("-inf")

    def push(self, items: Sequence[tuple[str, str]]) -> None:
        """Add ids while each queue's stream is below the window; the rest stay in the
        database, from where the reconciler feeds them in as the stream drains."""
        if not items:
            return
        by_queue: dict[str, list[str]] = {}
        for queue, job_id in items:
            by_queue.setdefault(queue, []).append(job_id)
        streams: list[str] = []
        args: list[Any] = [self.window]
        for queue, ids in by_queue.items():
            streams.append(keys.queue_stream(self.prefix, queue))
            args += [len(ids), *ids]
        self._push_bounded(keys=streams, args=args)

    def held(self, queue: str, limit: int) -> set[str]:
        """The job ids in a queue's stream: waiting, or delivered and not yet acknowledged."""
        entries = self.client.xrange(keys.queue_stream(self.prefix, queue), count=limit)
        return {d.job_id for d in _deliveries(queue, [(queue, entries)])}

    def fetch(self, counts: Mapping[str, int], block_s: float) -> list[Delivery]:
        wanted = {q: n for q, n in counts.items() if n > 0}
        if not wanted:
            return []
        self._ensure_groups(wanted)
        try:
            deliveries = self._read_each(wanted)
            if deliveries or block_s <= 0:
                return deliveries
            return self._read_blocking(wanted, block_s)
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._groups.clear()  # Redis lost its data: the groups must be made again
            return []

    def _read_each(self, wanted: Mapping[str, int]) -> list[Delivery]:
        pipe = self.client.pipeline(transaction=False)
        for queue, count in wanted.items():
            pipe.xreadgroup(
                keys.GROUP, self.consumer, {keys.queue_stream(self.prefix, queue): ">"}, count=count
            )
        deliveries: list[Delivery] = []
        for queue, reply in zip(wanted, pipe.execute(), strict=True):
            deliveries += _deliveries(queue, reply)
        return deliveries

    def _read_blocking(self, wanted: Mapping[str, int], block_s: float) -> list[Delivery]:
        streams: dict[Any, Any] = {keys.queue_stream(self.prefix, q): ">" for q in wanted}
        reply: Any = self.client.xreadgroup(
            keys.GROUP,
            self.consumer,
            streams,
            count=min(wanted.values()),
            block=int(block_s * 1000),
        )
        by_stream = {keys.queue_stream(self.prefix, q): q for q in wanted}
        deliveries: list[Delivery] = []
        for stream, entries in reply or []:
            name = stream.decode() if isinstance(stream, bytes) else stream
            deliveries += _deliveries(by_stream[name], [(stream, entries)])
        return deliveries

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        by_queue: dict[str, list[str]] = {}
        for d in deliveries:
            by_queue.setdefault(d.queue, []).append(d.token)
        pipe = self.client.pipeline(transaction=False)
        for queue, tokens in by_queue.items():
            stream = keys.queue_stream(self.prefix, queue)
            pipe.xack(stream, keys.GROUP, *tokens)
            pipe.xdel(stream, *tokens)
        pipe.execute()

    def reclaim(self, queue: str, idle_s: float) -> int:
        stream = keys.queue_stream(self.prefix, queue)
        try:
            reply: Any = self.client.xautoclaim(
                stream, keys.GROUP, self.consumer, int(idle_s * 1000), "0-0", count=1000
            )
        except redis.ResponseError as exc:
            if "NOGROUP" in str(exc):
                return 0
            raise
        stale = _deliveries(queue, [(stream, reply[1])])
        if stale:  # hand them out again as fresh entries, then forget the old ones
            self.push([(d.queue, d.job_id) for d in stale])
            self.ack(stale)
        return len(stale)

    def publish(self, job_ids: Sequence[str]) -> None:
        if not job_ids or not self._has_listeners():
            return
        channel = keys.events_channel(self.prefix)
        pipe = self.client.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.publish(channel, job_id)
        pipe.execute()

    def may_have_listeners(self) -> bool:
        fresh = time.monotonic() - self._listeners_checked < LISTENER_CHECK_S
        return self._listeners > 0 or not fresh

    def _has_listeners(self) -> bool:
        """Whether any event stream listens; asked at most once a second."""
        now = time.monotonic()
        if now - self._listeners_checked >= LISTENER_CHECK_S:
            channel = keys.events_channel(self.prefix)
            # (casts: redis-py's stubs type sync replies as possibly awaitable in some versions)
            reply: Any = self.client.pubsub_numsub(channel)
            self._listeners = int(dict(reply).get(channel.encode(), 0))
            self._listeners_checked = now
        return self._listeners > 0

    def ping(self) -> None:
        self.client.ping()

    def depth(self, queue: str) -> int:
        # Entries are deleted when acknowledged, so the length counts both waiting and
        # delivered-but-unclaimed ids.
        length: Any = self.client.xlen(keys.queue_stream(self.prefix, queue))
        return int(length)

    def _ensure_groups(self, queues: Mapping[str, int]) -> None:
        for queue in queues:
            if queue in self._groups:
                continue
            try:
                self.client.xgroup_create(
                    keys.queue_stream(self.prefix, queue), keys.GROUP, id="0", mkstream=True
                )
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            self._groups.add(queue)

    def close(self) -> None:
        self.client.close()


def _deliveries(queue: str, reply: object) -> list[Delivery]:
    out: list[Delivery] = []
    for _stream, entries in reply or []:  # type: ignore[attr-defined]
        for entry_id, fields in entries:
            job_id = fields.get(b"id") or fields.get("id")
            token = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            if job_id is None:
                continue
            out.append(
                Delivery(queue, job_id.decode() if isinstance(job_id, bytes) else job_id, token)
            )
    return out
