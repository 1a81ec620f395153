"""Locust load test of ThermaCore's GraphQL API.

Two user classes:

* ``GraphqlUser`` signs in and does what an operator dashboard does over
  ``POST /graphql``: latest values, a 1-minute-bucket trend of the last hour, the
  unit / device overview, the alarm list and (optionally) ``writeTag``.
* ``SubscriberUser`` follows ``tagValues`` over ``/graphql/ws``
  (graphql-transport-ws) and reports each value as a ``WS tagValues`` request whose
  response time is the value's ``serverTime`` to its receipt: change-to-client
  latency.

Run (see README.md next to this file for the environment variables)::

    pip install -r loadtest/locust/requirements.txt
    THERMACORE_PASSWORD=... locust -f loadtest/locust/locustfile.py \\
        --host http://127.0.0.1:8080 --headless -u 50 -r 10 -t 60s \\
        GraphqlUser SubscriberUser

Every request is named by its operation (``query latest``, ``mutation login`` …).
A GraphQL ``errors`` array is a failure named by its ``extensions.code``; an HTTP
429 is ``HTTP 429 RATE_LIMITED``.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import cache

import websocket
from gevent.lock import Semaphore
from locust import HttpUser, User, between, events, task
from locust.clients import HttpSession
from locust.exception import RescheduleTask, RescheduleTaskImmediately, StopTest, StopUser
from locust.runners import MasterRunner

log = logging.getLogger("thermacore")

LOGIN = (
    "mutation($t:String!,$u:String!,$p:String!){ "
    "login(tenant:$t, username:$u, password:$p){ accessToken expiresIn role } }"
)
TAGS = "{ tags { id } }"
LATEST = "query($ids:[ID!]!){ latest(tagIds:$ids){ tagId value quality serverTime } }"
HISTORY = (
    "query($ids:[ID!]!,$from:DateTime!,$to:DateTime!){ "
    "history(tagIds:$ids, from:$from, to:$to, bucketSeconds:60){ "
    "tagId buckets { start count avg min max } gaps { from to } } }"
)
UNITS = "{ units { name devices { name status { state } } } }"
ALARMS = "{ alarms { alarms { id ruleName severity state } endCursor } }"
WRITE_TAG = (
    "mutation($id:ID!,$v:JSON!){ writeTag(tagId:$id, value:$v){ tagId value acknowledgedAt } }"
)
TAG_VALUES = (
    "subscription($ids:[ID!]){ tagValues(tagIds:$ids){ tagId value quality serverTime } }"
)

DISCOVERED_TAGS = 20
"""Tags taken from the `tags` query when THERMACORE_TAG_IDS is not set."""
HISTORY_TAGS = 5
"""Tags per `history` query (a random pick of the configured ones)."""
TOKEN_REUSE = 0.9
"""Share of a token's lifetime after which the user signs in again."""
WRITE_ROLES = ("OPERATOR", "ADMIN")
"""Roles with the `control` permission that `writeTag` needs."""
WS_PROTOCOL = "graphql-transport-ws"
WS_TIMEOUT_S = 30
"""Connect timeout, and silence after which the subscriber pings the server."""


class ConfigError(Exception):
    """An environment variable is missing or malformed."""


@dataclass(frozen=True)
class Settings:
    tenant: str
    username: str
    password: str
    tag_ids: tuple[str, ...]
    """Empty: discovered with one `tags` query."""
    write_tag: str | None
    """None: no writes."""
    write_value: object


@cache
def settings() -> Settings:
    """The configuration from the THERMACORE_* environment variables."""
    env = os.environ
    password = env.get("THERMACORE_PASSWORD")
    if not password:
        raise ConfigError(
            "THERMACORE_PASSWORD is not set: export the password of THERMACORE_USERNAME "
            "(default viewer) of THERMACORE_TENANT (default demo)"
        )
    write_tag = env.get("THERMACORE_WRITE_TAG") or None
    write_value = None
    if write_tag:
        raw = env.get("THERMACORE_WRITE_VALUE")
        if raw is None:
            raise ConfigError("THERMACORE_WRITE_TAG is set: set THERMACORE_WRITE_VALUE too")
        try:
            write_value = json.loads(raw)
        except ValueError as e:
            raise ConfigError(
                f"THERMACORE_WRITE_VALUE must be JSON (3.5, true, \"auto\"): {e}"
            ) from e
    ids = env.get("THERMACORE_TAG_IDS", "")
    return Settings(
        tenant=env.get("THERMACORE_TENANT", "demo"),
        username=env.get("THERMACORE_USERNAME", "viewer"),
        password=password,
        tag_ids=tuple(i.strip() for i in ids.split(",") if i.strip()),
        write_tag=write_tag,
        write_value=write_value,
    )


@events.init.add_listener
def check_settings(environment, **_kwargs):
    """Refuses to start with a bad configuration, before any user is spawned."""
    if isinstance(environment.runner, MasterRunner):
        return
    try:
        settings()
    except ConfigError as e:
        log.error("%s", e)
        sys.exit(1)


def judge(resp) -> tuple[dict | None, str | None, str | None]:
    """A GraphQL response as (data, error code, failure message); data only on success."""
    if resp.status_code == 0:
        return None, None, f"no response: {resp.error}"
    status = "" if resp.status_code == 200 else f"HTTP {resp.status_code} "
    try:
        body = resp.json()
    except ValueError:
        body = None
    errors = body.get("errors") if isinstance(body, dict) else None
    if errors:
        error = errors[0] if isinstance(errors[0], dict) else {}
        code = (error.get("extensions") or {}).get("code", "NO_CODE")
        return None, code, f"{status}{code}: {error_message(code, error)}"
    if resp.status_code == 401:
        return None, "UNAUTHENTICATED", "HTTP 401"
    if status:
        return None, None, status.strip()
    if not isinstance(body, dict) or body.get("data") is None:
        return None, None, "no data in the response"
    return body["data"], None, None


def error_message(code: str, error: dict) -> str:
    """The error's message; for RATE_LIMITED a fixed text (the server's names the
    retry delay, which would make a failure row per delay)."""
    if code == "RATE_LIMITED":
        return "refused by the server's rate limit"
    return str(error.get("message", ""))


REFUSED_ACCOUNTS: set[tuple[str, str]] = set()
"""(tenant, username) whose login was refused: their users stop without retrying."""


class GraphqlSession:
    """Signs in (before its first operation, and again when the token nears its
    expiry or is refused) and posts GraphQL operations, each reported under its name."""

    def __init__(self, http: HttpSession, config: Settings):
        self.http = http
        self.config = config
        self.token: str | None = None
        self.role: str | None = None
        self.renew_at = 0.0

    def login(self) -> bool:
        """Signs in; False on a transient failure. Refused credentials stop the user,
        and every later user of the same account before it sends a request."""
        c = self.config
        account = (c.tenant, c.username)
        if account in REFUSED_ACCOUNTS:
            raise StopUser()
        variables = {"t": c.tenant, "u": c.username, "p": c.password}
        data, code = self.post("mutation login", LOGIN, variables, token=None)
        if code == "UNAUTHENTICATED":
            REFUSED_ACCOUNTS.add(account)
            log.error(
                "login of %r in tenant %r refused (UNAUTHENTICATED): check THERMACORE_TENANT, "
                "THERMACORE_USERNAME and THERMACORE_PASSWORD; the users of this account stop",
                c.username,
                c.tenant,
            )
            raise StopUser()
        if data is None:
            self.token = None
            return False
        payload = data["login"]
        self.token = payload["accessToken"]
        self.role = payload["role"]
        self.renew_at = time.monotonic() + payload["expiresIn"] * TOKEN_REUSE
        return True

    def valid_token(self) -> str:
        """A token that is not near its expiry, signing in again when needed. Raises
        RescheduleTask (the user waits, then tries another task) when that fails."""
        if self.token is None or time.monotonic() >= self.renew_at:
            if not self.login():
                raise RescheduleTask()
        return self.token

    def query(self, name: str, document: str, variables: dict | None = None) -> dict | None:
        """Posts an operation with the user's token; its data, or None on a failure.
        An UNAUTHENTICATED answer (expired or revoked token) makes the next call
        sign in again."""
        data, code = self.post(name, document, variables, token=self.valid_token())
        if code == "UNAUTHENTICATED":
            self.token = None
        return data

    def post(self, name, document, variables, token) -> tuple[dict | None, str | None]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        body = {"query": document, "variables": variables or {}}
        with self.http.post(
            "/graphql", json=body, headers=headers, name=name, catch_response=True
        ) as resp:
            data, code, failure = judge(resp)
            if failure:
                resp.failure(failure)
        return data, code


class TagDirectory:
    """The tag ids every user works with: THERMACORE_TAG_IDS, or the first tags of
    one `tags` query shared by all the users of this process."""

    def __init__(self):
        self.ids: list[str] = []
        self.lock = Semaphore()

    def get(self, gql: GraphqlSession) -> list[str]:
        if gql.config.tag_ids:
            return list(gql.config.tag_ids)
        with self.lock:
            if not self.ids:
                self.ids = self.discover(gql)
        return self.ids

    @staticmethod
    def discover(gql: GraphqlSession) -> list[str]:
        data = gql.query("query tags", TAGS)
        if data is None:
            raise RescheduleTask()
        ids = [t["id"] for t in data["tags"]][:DISCOVERED_TAGS]
        if not ids:
            raise StopTest(f"tenant {gql.config.tenant!r} has no tags to query")
        log.info("tags discovered: %s", ",".join(ids))
        return ids


TAG_DIRECTORY = TagDirectory()


def rfc3339(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> datetime:
    """RFC 3339 as the server writes it (`Z` or an offset, up to nanoseconds)."""
    text = re.sub(r"[zZ]$", "+00:00", text)
    text = re.sub(r"\.(\d+)", lambda m: "." + m.group(1)[:6].ljust(6, "0"), text)
    return datetime.fromisoformat(text)


@cache
def warn_no_writes(username: str, role: str) -> None:
    """Once per account: writes are configured but the role may not write."""
    log.warning(
        "THERMACORE_WRITE_TAG is set but %r has the role %s: no writeTag (needs %s)",
        username,
        role,
        " or ".join(WRITE_ROLES),
    )


class GraphqlUser(HttpUser):
    """An operator dashboard polling the API."""

    wait_time = between(1, 3)

    def on_start(self):
        self.gql = GraphqlSession(self.client, settings())

    @task(10)
    def latest(self):
        self.gql.query("query latest", LATEST, {"ids": TAG_DIRECTORY.get(self.gql)})

    @task(3)
    def history(self):
        ids = TAG_DIRECTORY.get(self.gql)
        now = datetime.now(timezone.utc)
        variables = {
            "ids": random.sample(ids, min(HISTORY_TAGS, len(ids))),
            "from": rfc3339(now - timedelta(hours=1)),
            "to": rfc3339(now),
        }
        self.gql.query("query history", HISTORY, variables)

    @task(2)
    def units(self):
        self.gql.query("query units", UNITS)

    @task(3)
    def alarms(self):
        self.gql.query("query alarms", ALARMS)

    @task(1)
    def write_tag(self):
        config = self.gql.config
        if config.write_tag is None or self.gql.role is None:
            raise RescheduleTaskImmediately()
        if self.gql.role not in WRITE_ROLES:
            warn_no_writes(config.username, self.gql.role)
            raise RescheduleTaskImmediately()
        variables = {"id": config.write_tag, "v": config.write_value}
        self.gql.query("mutation writeTag", WRITE_TAG, variables)


class WsFailure(Exception):
    """A failure of the subscription: reported, then the user connects again."""


class ServerClosed(WsFailure):
    def __init__(self, code: int, reason: str):
        super().__init__(f"closed by the server: {code} {reason}".strip())
        self.code = code
        self.reason = reason


def ws_url(host: str) -> str:
    """`/graphql/ws` on the host Locust was given, ws:// for http://, wss:// for https://."""
    scheme, sep, rest = host.rstrip("/").partition("://")
    if not sep or scheme not in ("http", "https"):
        raise StopTest(f"--host must start with http:// or https://, not {host!r}")
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/graphql/ws"


def receive(ws: websocket.WebSocket) -> tuple[dict, int]:
    """The next message and its size in bytes; a close frame raises ServerClosed."""
    opcode, data = ws.recv_data()
    if opcode == websocket.ABNF.OPCODE_CLOSE:
        code = int.from_bytes(data[:2], "big") if len(data) >= 2 else 1005
        raise ServerClosed(code, data[2:].decode("utf-8", "replace"))
    message = json.loads(data)
    if not isinstance(message, dict):
        raise WsFailure("a message that is not a JSON object")
    return message, len(data)


def send(ws: websocket.WebSocket, message: dict) -> None:
    ws.send(json.dumps(message))


class SubscriberUser(User):
    """A live view: one WebSocket following `tagValues` of the configured tags."""

    wait_time = between(1, 3)
    """The pause before connecting again after a failure."""

    ws: websocket.WebSocket | None = None

    def on_start(self):
        if not self.host:
            raise StopTest("no host: pass --host http://HOST:PORT")
        self.url = ws_url(self.host)
        http = HttpSession(
            base_url=self.host, request_event=self.environment.events.request, user=self
        )
        self.gql = GraphqlSession(http, settings())

    def on_stop(self):
        self.close()

    @task
    def follow(self):
        """One connection: connect, subscribe, then report every value until it ends."""
        ids = TAG_DIRECTORY.get(self.gql)
        token = self.gql.valid_token()
        stage = "connect"
        try:
            self.connect(token)
            stage = "tagValues"
            send(self.ws, {"id": "1", "type": "subscribe", "payload": {
                "query": TAG_VALUES, "variables": {"ids": ids}}})
            self.stream(self.ws)
        except ServerClosed as e:
            self.closed(stage, e)
        except (WsFailure, websocket.WebSocketException, OSError, ValueError, KeyError) as e:
            self.fail(stage, e)
        finally:
            self.close()

    def connect(self, token: str) -> None:
        """Opens `self.ws` and waits for `connection_ack`, reported as `WS connect`."""
        started = time.perf_counter()
        self.ws = ws = websocket.create_connection(
            self.url, timeout=WS_TIMEOUT_S, subprotocols=[WS_PROTOCOL]
        )
        if ws.getsubprotocol() != WS_PROTOCOL:
            raise WsFailure(f"the server chose the subprotocol {ws.getsubprotocol()!r}")
        send(ws, {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
        message, size = receive(ws)
        if message.get("type") != "connection_ack":
            raise WsFailure(f"expected connection_ack, got {message.get('type')!r}")
        self.report("connect", (time.perf_counter() - started) * 1000, size)

    def stream(self, ws: websocket.WebSocket) -> None:
        """Reports each `next` until the subscription or the socket ends. After
        WS_TIMEOUT_S of silence it pings; a second silence is a failure."""
        current = set()
        pinged = False
        while True:
            try:
                message, size = receive(ws)
            except websocket.WebSocketTimeoutException:
                if pinged:
                    raise WsFailure(f"no message nor pong for {2 * WS_TIMEOUT_S} s") from None
                send(ws, {"type": "ping"})
                pinged = True
                continue
            pinged = False
            kind = message.get("type")
            if kind == "next":
                self.value(message.get("payload") or {}, size, current)
            elif kind == "ping":
                send(ws, {"type": "pong"})
            elif kind == "error":
                raise WsFailure(f"error: {graphql_codes(message.get('payload'))}")
            elif kind == "complete":
                raise WsFailure("the server completed the subscription")

    def value(self, payload: dict, size: int, current: set) -> None:
        """One value: its latency from `serverTime`. The first value of each tag is
        its current value, which may be old: reported apart as `tagValues current`.
        Errors (a refused subscription: NOT_FOUND, QUOTA_EXCEEDED …) end the
        connection as a failure; the server completes the subscription after them."""
        if payload.get("errors"):
            raise WsFailure(graphql_codes(payload["errors"]))
        value = (payload.get("data") or {}).get("tagValues")
        if not isinstance(value, dict):
            raise WsFailure("a next message without data.tagValues")
        latency_ms = (time.time() - parse_rfc3339(value["serverTime"]).timestamp()) * 1000
        name = "tagValues" if value["tagId"] in current else "tagValues current"
        current.add(value["tagId"])
        self.report(name, max(latency_ms, 0.0), size)

    def closed(self, stage: str, e: ServerClosed) -> None:
        """A close by the server. 4403 means the token is no longer good: sign in
        again. At the token's expiry that is expected: connect again at once."""
        if e.code == 4403:
            self.gql.token = None
            if e.reason == "expired" and stage == "tagValues":
                log.info("subscription closed at the token's expiry; connecting again")
                raise RescheduleTaskImmediately()
        self.fail(stage, e)

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close(timeout=1)
            self.ws = None

    def report(self, name: str, response_time: float, size: int) -> None:
        self.environment.events.request.fire(
            request_type="WS", name=name, response_time=response_time,
            response_length=size, exception=None, context={},
        )

    def fail(self, name: str, e: Exception) -> None:
        self.environment.events.request.fire(
            request_type="WS", name=name, response_time=0,
            response_length=0, exception=e, context={},
        )


def graphql_codes(errors) -> str:
    """`CODE: message` of each error of an `error` or `next` payload."""
    if not isinstance(errors, list):
        return str(errors)
    return "; ".join(
        f"{(e.get('extensions') or {}).get('code', 'NO_CODE')}: {e.get('message', '')}"
        for e in errors
        if isinstance(e, dict)
    )
