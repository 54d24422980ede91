"""A small Python client for evlogd, the evlog server (docs/http.md).

Standard library only.  When Debian's python3-msgpack is installed,
``Client(..., use_msgpack=True)`` sends and receives msgpack instead of JSON
(``bytes`` values then survive a round trip; through JSON they cannot).

    from evlog_client import Client, Conflict, NO_STREAM

    ev = Client("http://127.0.0.1:7070", token=None)
    ack = ev.append("job-1", {"type": "JobQueued", "data": {"id": "1", "model": "gpt2"}},
                    expected_revision=NO_STREAM)
    try:
        ev.append("job-1", {"type": "JobStarted", "data": {"id": "1"}}, expected_revision=5)
    except Conflict as c:
        print("someone wrote first; the stream is at", c.current_revision)
    rows = ev.query("jobs", "SELECT id, status FROM jobs WHERE id = :id", {"id": "1"},
                    min_position=ack.position).dicts()
    for event in ev.subscribe(from_position=1, category="job"):
        print(event["position"], event["type"])       # resumes by itself after a drop

Events are the server's CloudEvents dicts: ``id``, ``type``, ``subject`` (the
stream), ``time``, ``data``, ``meta``, ``position`` (global, from 1) and
``revision`` (in the stream, from 0).

A ``Client`` keeps one keep-alive connection and is not thread-safe: use one
per thread.  Every append carries event ids chosen here (UUIDv7) unless the
caller gives them, so an append whose answer was lost is retried safely: the
server answers a repeat of ids it already holds with the original positions
and writes nothing.
"""
import http.client
import json
import os
import time
import urllib.parse
import uuid

try:  # optional: Debian's python3-msgpack
    import msgpack
except ImportError:  # pragma: no cover - depends on the machine
    msgpack = None

__all__ = ["Client", "Error", "Conflict", "NotFound", "Unauthorized", "Forbidden",
           "QueryTimeout", "AppendResult", "QueryResult", "ANY", "NO_STREAM", "EXISTS"]

ANY = "any"              #: no expectation (the default)
NO_STREAM = "no_stream"  #: the stream must not exist yet
EXISTS = "exists"        #: the stream must have at least one event


class Error(Exception):
    """An answer that is not a success.  ``status`` is the HTTP status,
    ``type`` the problem type after ``urn:evlog:problem:`` (``bad-request``,
    ``bad-sql``, ...), ``problem`` the whole RFC 9457 body as a dict."""

    def __init__(self, status, problem):
        self.status = status
        self.problem = problem if isinstance(problem, dict) else {"detail": str(problem)}
        t = self.problem.get("type", "")
        self.type = t[len("urn:evlog:problem:"):] if t.startswith("urn:evlog:problem:") else t
        self.detail = self.problem.get("detail", "")
        super().__init__("%d %s: %s" % (status, self.type or "error", self.detail))


class Conflict(Error):
    """409: the stream was not at the expected revision.  ``current_revision``
    is where it is (an int, or ``"no_stream"``), ``expected_revision`` what
    the append expected, ``stream`` which stream (for a multi-stream batch,
    the one whose expectation failed)."""

    def __init__(self, status, problem):
        super().__init__(status, problem)
        self.stream = self.problem.get("stream")
        self.expected_revision = self.problem.get("expected_revision")
        self.current_revision = self.problem.get("current_revision")


class NotFound(Error):
    """404: no such stream, event, projection or path."""


class Unauthorized(Error):
    """401: no token, or not a valid one."""


class Forbidden(Error):
    """403: the token's role is too low (reader < writer < admin)."""


class QueryTimeout(Error):
    """504: the projection did not reach ``min_position`` within the wait."""


_ERRORS = {401: Unauthorized, 403: Forbidden, 404: NotFound, 504: QueryTimeout}


def _error(status, problem):
    if status == 409 and isinstance(problem, dict) and problem.get("type", "").endswith(":conflict"):
        return Conflict(status, problem)
    return _ERRORS.get(status, Error)(status, problem)


def uuid7():
    """A time-ordered UUID (version 7) as text: 48 bits of Unix milliseconds,
    then random bits; ids close in time stay close in the log's id index."""
    ms = time.time_ns() // 1000000
    b = bytearray(ms.to_bytes(6, "big") + os.urandom(10))
    b[6] = 0x70 | (b[6] & 0x0F)
    b[8] = 0x80 | (b[8] & 0x3F)
    return str(uuid.UUID(bytes=bytes(b)))


class AppendResult:
    """What an append answered.  ``events`` is one dict per event appended
    (``id``, ``stream``, ``position``, ``revision``), in order; ``position``
    and ``revision`` are the last event's (pass ``position`` as a query's
    ``min_position`` to read your own write); ``idempotent`` is true when the
    server already held every id and wrote nothing."""

    def __init__(self, body):
        self.events = body.get("events", [])
        self.idempotent = bool(body.get("idempotent", False))
        last = self.events[-1] if self.events else {}
        self.position = last.get("position")
        self.revision = last.get("revision")

    def __repr__(self):
        return "<AppendResult position=%s revision=%s n=%d%s>" % (
            self.position, self.revision, len(self.events), " idempotent" if self.idempotent else "")


class QueryResult:
    """A query's answer: ``columns``, ``rows`` (lists), ``position`` (the
    projection checkpoint the rows reflect) and ``truncated`` (more rows than
    ``max_rows``).  Iterating gives the rows; ``dicts()`` gives them keyed by
    column."""

    def __init__(self, body):
        self.columns = body.get("columns", [])
        self.rows = body.get("rows", [])
        self.position = body.get("position")
        self.truncated = bool(body.get("truncated", False))

    def dicts(self):
        return [dict(zip(self.columns, r)) for r in self.rows]

    def __iter__(self):
        return iter(self.rows)

    def __len__(self):
        return len(self.rows)

    def __repr__(self):
        return "<QueryResult %d rows at position %s>" % (len(self.rows), self.position)


def _q(params):
    """A query string from the parameters that are set (None is left out,
    True becomes a bare flag value 1)."""
    kv = [(k, "1" if v is True else str(v)) for k, v in params.items() if v is not None and v is not False]
    return ("?" + urllib.parse.urlencode(kv)) if kv else ""


class Client:
    """A connection to one evlogd.

    :param url: the server, ``http://HOST:PORT`` (https works too).
    :param token: a bearer token, when evlogd runs with ``--token-file``.
    :param timeout: seconds for connecting and for each answer.
    :param use_msgpack: bodies in msgpack (needs python3-msgpack).
    """

    def __init__(self, url="http://127.0.0.1:7070", token=None, timeout=30.0, use_msgpack=False):
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError("url must be http://HOST:PORT, not %r" % url)
        if use_msgpack and msgpack is None:
            raise RuntimeError("use_msgpack needs python3-msgpack")
        self.url = url.rstrip("/")
        self._https = u.scheme == "https"
        self._host = u.hostname
        self._port = u.port or (443 if self._https else 80)
        self.token = token
        self.timeout = timeout
        self.use_msgpack = use_msgpack
        self._conn = None

    # -- transport ---------------------------------------------------------

    def _connect(self, timeout):
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=timeout)

    def _headers(self, extra=None):
        h = {"Accept": "application/msgpack" if self.use_msgpack else "application/json"}
        if self.token:
            h["Authorization"] = "Bearer " + self.token
        h.update(extra or {})
        return h

    def _encode(self, body):
        if body is None:
            return None, {}
        if self.use_msgpack:
            return msgpack.packb(body, use_bin_type=True), {"Content-Type": "application/msgpack"}
        return json.dumps(body).encode(), {"Content-Type": "application/json"}

    @staticmethod
    def _decode(resp, raw):
        ct = (resp.getheader("Content-Type") or "").split(";")[0].strip()
        if not raw:
            return None
        if ct == "application/msgpack":
            return msgpack.unpackb(raw, raw=False)
        if ct.endswith("json"):
            return json.loads(raw)
        return raw.decode("utf-8", "replace")

    def request(self, method, path, body=None, headers=None):
        """One request on the keep-alive connection: returns (status,
        decoded body); raises Error for statuses of 400 and above.  A
        connection the server closed while idle is reopened and the request
        sent once more (appends carry ids, so a repeat writes nothing)."""
        data, h = self._encode(body)
        h = self._headers(dict(h, **(headers or {})))
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = self._connect(self.timeout)
            try:
                self._conn.request(method, path, body=data, headers=h)
                resp = self._conn.getresponse()
                raw = resp.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    http.client.CannotSendRequest, http.client.BadStatusLine):
                self.close()
                if attempt:
                    raise
        if resp.getheader("Connection", "").lower() == "close":
            self.close()
        out = self._decode(resp, raw)
        if resp.status >= 400:
            raise _error(resp.status, out)
        return resp.status, out

    def close(self):
        """Close the keep-alive connection (a later call opens a new one)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- appends -----------------------------------------------------------

    @staticmethod
    def _events(events, meta):
        if isinstance(events, dict):
            events = [events]
        out = []
        for e in events:
            if "type" not in e:
                raise ValueError("an event needs a type: %r" % (e,))
            e = dict(e)
            e.setdefault("id", uuid7())
            if meta:
                e["meta"] = dict(meta, **(e.get("meta") or {}))
            out.append(e)
        if not out:
            raise ValueError("append needs at least one event")
        return out

    def append(self, stream, events, expected_revision=ANY, meta=None):
        """Append one event (a dict) or a list of them to ``stream``,
        atomically.  An event is ``{"type": ..., "data": {...}}`` with
        optional ``meta`` and ``id``.

        :param expected_revision: the stream's last revision (an int),
            ``NO_STREAM``, ``EXISTS`` or ``ANY`` (the default).
        :param meta: merged into every event's ``meta`` (``actor``,
            ``correlation_id``); an event's own keys win.
        :returns: an AppendResult.
        :raises Conflict: the stream is not at ``expected_revision``;
            ``current_revision`` says where it is.
        """
        evs = self._events(events, meta)
        path = "/streams/" + urllib.parse.quote(stream, safe="")
        hdr = {} if expected_revision in (None, ANY) else {"Expected-Revision": str(expected_revision)}
        return AppendResult(self.request("POST", path, evs, hdr)[1])

    def append_batch(self, streams, meta=None):
        """Append to several streams at once, all or nothing.  ``streams`` is
        a list of ``(stream, events, expected_revision)``; raises Conflict
        naming the stream whose expectation failed."""
        body = {"streams": [{"stream": s, "events": self._events(e, meta),
                             "expected_revision": ANY if x is None else x}
                            for s, e, x in streams]}
        return AppendResult(self.request("POST", "/append", body)[1])

    # -- reads -------------------------------------------------------------

    def _pages(self, path, params):
        params = dict(params)
        while True:
            _, body = self.request("GET", path + _q(params))
            for ev in body["events"]:
                yield ev
            if body.get("next_from") is None:
                return
            params["from"] = body["next_from"]

    def read(self, stream, from_revision=None, until=None, backward=False, page_size=None):
        """The events of ``stream`` (all pages), oldest first unless
        ``backward``; ``from_revision``/``until`` bound the revisions.
        Returns a list, empty when the stream does not exist."""
        path = "/streams/" + urllib.parse.quote(stream, safe="")
        try:
            return list(self._pages(path, {"from": from_revision, "until": until,
                                           "backward": backward, "limit": page_size}))
        except NotFound:
            return []

    def events(self, from_position=None, until=None, since=None, type=None, category=None,
               stream=None, actor=None, correlation_id=None, backward=False, page_size=None):
        """The whole log, filtered, as a generator that follows the pages
        lazily.  ``until`` is a position or an RFC 3339 time, ``since`` a
        time; ``type``, ``category``, ``stream``, ``actor`` and
        ``correlation_id`` filter (they combine)."""
        return self._pages("/events", {"from": from_position, "until": until, "since": since,
                                       "type": type, "category": category, "stream": stream,
                                       "actor": actor, "correlation_id": correlation_id,
                                       "backward": backward, "limit": page_size})

    def event(self, position):
        """One event by its global position; raises NotFound."""
        return self.request("GET", "/events/%d" % int(position))[1]

    def head(self):
        """The log's last position (0 when empty)."""
        return self.request("GET", "/events?limit=1&backward=1")[1]["head"]

    # -- feeds -------------------------------------------------------------

    def subscribe(self, from_position=1, type=None, category=None, stream=None, actor=None,
                  correlation_id=None, last_event_id=None, reconnect=True, retry_delay=None,
                  idle_timeout=60.0, give_up_after=None):
        """Events from ``from_position`` on (``"now"``: only new ones),
        then live, as a generator of event dicts.

        When the connection drops (the server restarts, a proxy cuts it,
        nothing arrives for ``idle_timeout`` seconds — the server sends a
        heartbeat every 15 s) it reconnects with ``Last-Event-ID`` set to the
        last position received, so the feed continues exactly after it: no
        gap, no duplicate.  It waits ``retry_delay`` seconds between attempts
        (default: the server's ``retry:`` advice, 3 s) and raises the last
        connection error once ``give_up_after`` seconds pass without a
        connection (None: keep trying).  ``reconnect=False`` ends the
        generator at the first drop instead.  ``last_event_id`` resumes an
        earlier feed.  Close the generator (or break out of the loop) to
        disconnect."""
        params = {"type": type, "category": category, "stream": stream, "actor": actor,
                  "correlation_id": correlation_id}
        last = last_event_id
        advised = 3.0
        down_since = None
        while True:
            p = dict(params)
            p["from"] = from_position if last is None else None
            hdr = self._headers({"Accept": "text/event-stream"})
            if last is not None:
                hdr["Last-Event-ID"] = str(last)
            conn = self._connect(idle_timeout)
            try:
                try:
                    conn.request("GET", "/subscribe" + _q(p), headers=hdr)
                    resp = conn.getresponse()
                except (OSError, http.client.HTTPException):
                    if not reconnect:
                        raise
                    now = time.monotonic()
                    down_since = down_since or now
                    if give_up_after is not None and now - down_since > give_up_after:
                        raise
                    time.sleep(retry_delay if retry_delay is not None else advised)
                    continue
                if resp.status == 200:
                    down_since = None
                    for kind, value in self._frames(resp):
                        if kind == "retry":
                            advised = value / 1000.0
                        else:
                            last = value["position"]
                            yield value
                else:
                    err = _error(resp.status, self._decode(resp, resp.read()))
                    if resp.status != 503 or not reconnect:
                        raise err  # 503: stopping or overloaded; try again below
            finally:
                conn.close()
            if not reconnect:
                return
            time.sleep(retry_delay if retry_delay is not None else advised)

    @staticmethod
    def _frames(resp):
        """(kind, value) per SSE frame until the response ends or the
        connection drops: ("event", dict) or ("retry", ms)."""
        data, rid = [], None
        while True:
            try:
                line = resp.readline()
            except (OSError, http.client.HTTPException, ValueError):
                return  # dropped, timed out or cut mid-chunk: resume from the last id
            if not line:
                return
            line = line.decode("utf-8").rstrip("\r\n")
            if line == "":
                if data:
                    ev = json.loads("\n".join(data))
                    if "position" not in ev and rid is not None:
                        ev["position"] = rid
                    yield "event", ev
                data, rid = [], None
            elif line.startswith(":"):
                continue
            else:
                field, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if field == "data":
                    data.append(value)
                elif field == "id":
                    rid = int(value)
                elif field == "retry" and value.isdigit():
                    yield "retry", int(value)

    # -- projections -------------------------------------------------------

    def query(self, projection, sql, params=None, min_position=None, timeout_ms=None, max_rows=None):
        """One read-only SQL statement on a projection.

        :param params: named parameters (a dict: ``:id`` -> ``{"id": ...}``)
            or positional ones (a list).
        :param min_position: wait until the projection has applied this
            position first (read your own writes: an append's ``position``).
        :returns: a QueryResult.
        :raises QueryTimeout: ``min_position`` not reached in ``timeout_ms``.
        :raises Error: with type ``bad-sql`` for a statement that does not
            prepare or would write.
        """
        body = {"sql": sql}
        for k, v in (("params", params), ("min_position", min_position),
                     ("timeout_ms", timeout_ms), ("max_rows", max_rows)):
            if v is not None:
                body[k] = v
        path = "/projections/%s/query" % urllib.parse.quote(projection, safe="")
        return QueryResult(self.request("POST", path, body)[1])

    def projections(self):
        """The status of every projection: a list of dicts (name, state,
        checkpoint, head, lag, tables, error, ...)."""
        return self.request("GET", "/projections")[1]

    def projection(self, name):
        """The status of one projection; raises NotFound."""
        return self.request("GET", "/projections/" + urllib.parse.quote(name, safe=""))[1]

    def rebuild(self, name):
        """Ask for a rebuild from position 1 (admin role); follow it with
        projection(name) until ``state`` is ``live`` again."""
        return self.request("POST", "/projections/%s/rebuild" % urllib.parse.quote(name, safe=""))[1]

    # -- health ------------------------------------------------------------

    def ready(self):
        """True when the server takes appends and no projection is faulted."""
        try:
            self.request("GET", "/readyz")
            return True
        except Error:
            return False


if __name__ == "__main__":  # a smoke check: python3 evlog_client.py [URL]
    import sys
    c = Client(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:7070",
               token=os.environ.get("EVLOG_TOKEN"))
    print("head", c.head())
    for p in c.projections():
        print("%-8s %-12s checkpoint %s lag %s" % (p["name"], p["state"], p["checkpoint"], p["lag"]))
