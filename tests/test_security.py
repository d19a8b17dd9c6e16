"""Issue 13, "Central under attack": each attack run against a real central over HTTP.

Every test starts ``deskpulse-central`` as a subprocess (tests/support/central.py)
on a private Mosquitto and a real SQLite file, sends what an attacker would, and
checks what central does now. docs/security.md has the table of threats, what
central does and which test here shows it.
"""

from __future__ import annotations

import http.client
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.broker import Mosquitto
from tests.support.central import CentralProcess

TV_TOKEN = "tv-token-for-the-lobby-0123456789"


@dataclass(frozen=True, slots=True)
class Reply:
    """One HTTP answer: status, headers (lower-case names) and body text."""

    status: int
    headers: dict[str, str]
    body: str


def request(central: CentralProcess, method: str, path: str, *, headers: dict[str, str] | None = None,
            body: bytes | None = None, read: bool = True) -> Reply:
    """Send one request to ``central`` and read the answer (the body only when ``read``)."""
    conn = http.client.HTTPConnection("127.0.0.1", central.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        reply = conn.getresponse()
        text = reply.read().decode("utf-8", "replace") if read else ""
        return Reply(reply.status, {k.lower(): v for k, v in reply.getheaders()}, text)
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------------
# 7. Crashing the stream: bad cursors are a 400, never a 500 or a traceback.

TV_CONFIG = f"""
[dashboard.tv.lobby]
token = "{TV_TOKEN}"
site = "north"
"""


@pytest.fixture
def open_central(broker: Mosquitto, tmp_path: Path):
    with CentralProcess(broker, tmp_path / "central", config=TV_CONFIG) as proc:
        yield proc


@pytest.mark.parametrize("path", ["/api/stream", f"/tv/{TV_TOKEN}/stream"], ids=["api", "tv"])
def test_a_huge_last_event_id_is_a_400_naming_the_header(open_central: CentralProcess, path: str) -> None:
    reply = request(open_central, "GET", path, headers={"Last-Event-ID": "9" * 5000})
    assert reply.status == 400, reply
    assert "Last-Event-ID" in reply.body and "5000 characters" in reply.body


@pytest.mark.parametrize("cursor", ["9" * 20, "18446744073709551616", "1;5:" + "9" * 20, "1;" * 70 + "1"],
                         ids=["20-digits", "2**64", "delay-part", "too-many-parts"])
def test_a_cursor_beyond_64_bits_is_a_400_without_a_traceback(open_central: CentralProcess, cursor: str) -> None:
    reply = request(open_central, "GET", f"/api/stream?after={cursor}")
    assert reply.status == 400, reply
    assert "after" in reply.body
    tv = request(open_central, "GET", f"/tv/{TV_TOKEN}/stream?after={cursor}")
    assert tv.status == 400, tv
    # The largest valid cursor still opens the stream (the check refuses only what cannot be an id).
    ok = request(open_central, "GET", f"/api/stream?after={2**63 - 1}", read=False)
    assert ok.status == 200 and ok.headers["content-type"].startswith("text/event-stream")
    assert "Traceback" not in open_central.log() and "OverflowError" not in open_central.log()


# ------------------------------------------------------------------------------------------------
# 2. Memory exhaustion through POST /login: bounded checks, capped fields.

PASSWORD = "a long pass phrase for ann"


def accounts_config(extra: str = "") -> str:
    """A central.toml with the account ``ann`` (password :data:`PASSWORD`)."""
    from central.auth import hash_password

    return f'[dashboard.accounts]\nann = "{hash_password(PASSWORD)}"\n{extra}'


def login_body(name: str, password: str, next_path: str = "/") -> bytes:
    from urllib.parse import urlencode

    return urlencode({"name": name, "password": password, "next": next_path}).encode()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def guarded_central(broker: Mosquitto, tmp_path: Path):
    with CentralProcess(broker, tmp_path / "central", config=accounts_config(TV_CONFIG)) as proc:
        yield proc


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (``VmHWM``) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


def test_64_concurrent_sign_ins_keep_memory_bounded_and_get_429s(guarded_central: CentralProcess) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from central.auth import MAX_CONCURRENT_CHECKS

    assert guarded_central.proc is not None
    start = threading.Barrier(64)

    def attempt(i: int) -> Reply:
        start.wait()  # all 64 at once, each from its own address (so the sign-in throttle holds none back)
        return request_from(f"127.0.1.{i + 1}", guarded_central, "POST", "/login", headers=FORM,
                            body=login_body(f"name-{i}", "wrong"))

    with ThreadPoolExecutor(64) as pool:
        replies = list(pool.map(attempt, range(64)))
    statuses = sorted(r.status for r in replies)
    assert set(statuses) <= {401, 429}, statuses
    busy = [r for r in replies if r.status == 429]
    assert busy and all(r.headers["retry-after"] == "1" and "Busy" in r.body for r in busy), statuses
    assert statuses.count(401) >= MAX_CONCURRENT_CHECKS
    assert peak_rss_mb(guarded_central.proc.pid) < 400
    # Once the burst is over, the real password signs in.
    good = request(guarded_central, "POST", "/login", headers=FORM, body=login_body("ann", PASSWORD))
    assert good.status == 303


def test_huge_form_fields_are_refused_before_hashing_or_logging(guarded_central: CentralProcess) -> None:
    huge = "n" * 5_000_000
    big = request(guarded_central, "POST", "/login", headers=FORM, body=login_body(huge, "x"))
    assert big.status == 413 and "too large" in big.body
    long_name = request(guarded_central, "POST", "/login", headers=FORM, body=login_body("n" * 65, "x"))
    assert long_name.status == 400 and "at most 64 characters" in long_name.body
    long_password = request(guarded_central, "POST", "/login", headers=FORM, body=login_body("ann", "p" * 1025))
    assert long_password.status == 400
    # The positive marker: a later failed sign-in is logged, and no line before it holds the long name.
    assert request(guarded_central, "POST", "/login", headers=FORM, body=login_body("marker", "x")).status == 401
    from tests.support.wait import wait_for

    wait_for(lambda: "'marker'" in guarded_central.log(), what="the marker sign-in logged")
    assert "n" * 65 not in guarded_central.log()
    assert max(len(line) for line in guarded_central.log().splitlines()) < 500


# ------------------------------------------------------------------------------------------------
# 4. Cross-site posts: Origin (or Referer) must be this site's.

def sign_in(central: CentralProcess, name: str = "ann", password: str = PASSWORD) -> str:
    """Sign in over HTTP; the ``Cookie`` header value of the new session."""
    reply = request(central, "POST", "/login", headers={**FORM, "Origin": central.url.rstrip("/")},
                    body=login_body(name, password))
    assert reply.status == 303, reply
    return reply.headers["set-cookie"].split(";", 1)[0]


@pytest.mark.parametrize("headers", [{"Origin": "https://evil.example"}, {"Origin": "null"},
                                     {"Referer": "https://evil.example/page"}], ids=["origin", "null", "referer"])
def test_a_cross_origin_post_is_refused(guarded_central: CentralProcess, headers: dict[str, str]) -> None:
    login = request(guarded_central, "POST", "/login", headers={**FORM, **headers}, body=login_body("ann", PASSWORD))
    assert login.status == 403 and "cross-origin" in login.body and "set-cookie" not in login.headers
    cookie = sign_in(guarded_central)
    logout = request(guarded_central, "POST", "/logout", headers={**headers, "Cookie": cookie})
    assert logout.status == 403
    assert request(guarded_central, "GET", "/api/events", headers={"Cookie": cookie}).status == 200
    # The same posts from the site itself go through.
    own = {"Origin": guarded_central.url.rstrip("/")} if "Origin" in headers else {"Referer": guarded_central.url}
    assert request(guarded_central, "POST", "/logout", headers={**own, "Cookie": cookie}).status == 303


# ------------------------------------------------------------------------------------------------
# 3. Forging a session: sessions are random tokens kept server-side under a secret file.

def old_style_cookie(name: str, password_hash: str, expires: int = 4102444800) -> str:
    """The cookie central used to accept: name, expiry and an HMAC keyed by the account's password hash."""
    import base64
    import hashlib
    import hmac

    key = hashlib.sha256(b"deskpulse-session\0" + password_hash.encode()).digest()
    mac = base64.urlsafe_b64encode(hmac.new(key, f"{name}\0{expires}".encode(), hashlib.sha256).digest())
    encoded = base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")
    return f"{encoded}.{expires}.{mac.decode().rstrip('=')}"


def test_a_cookie_built_from_the_password_hash_is_refused(guarded_central: CentralProcess) -> None:
    import tomllib

    assert guarded_central.config_path is not None
    hashed = tomllib.loads(guarded_central.config_path.read_text())["dashboard"]["accounts"]["ann"]
    forged = old_style_cookie("ann", hashed)
    assert request(guarded_central, "GET", "/api/events", headers={"Cookie": f"deskpulse_session={forged}"}).status \
        == 401
    assert request(guarded_central, "GET", "/api/events", headers={"Cookie": sign_in(guarded_central)}).status == 200


def test_the_secret_file_is_made_0600_and_sessions_outlive_a_restart(guarded_central: CentralProcess) -> None:
    secret = guarded_central.workdir / "central-secret"  # next to the SQLite database by default
    assert secret.stat().st_mode & 0o777 == 0o600 and len(secret.read_text().strip()) >= 64
    cookie = sign_in(guarded_central)
    guarded_central.stop()
    guarded_central.start()
    assert request(guarded_central, "GET", "/api/events", headers={"Cookie": cookie}).status == 200


def test_logout_ends_the_session_on_the_server(guarded_central: CentralProcess) -> None:
    cookie = sign_in(guarded_central)
    other = sign_in(guarded_central)  # a second browser of the same account
    assert request(guarded_central, "GET", "/api/events", headers={"Cookie": cookie}).status == 200
    out = request(guarded_central, "POST", "/logout", headers={"Cookie": cookie})
    assert out.status == 303
    # A copy of the cookie kept from before the logout opens nothing now; the other session is untouched.
    assert request(guarded_central, "GET", "/api/events", headers={"Cookie": cookie}).status == 401
    assert request(guarded_central, "GET", "/api/events", headers={"Cookie": other}).status == 200


def test_a_secret_file_readable_by_others_stops_central_with_its_name(broker: Mosquitto, tmp_path: Path) -> None:
    import subprocess

    secret = tmp_path / "secret"
    secret.write_text("s" * 64)
    secret.chmod(0o644)
    central = CentralProcess(broker, tmp_path / "central",
                             config=f'[web]\nsecret_file = "{secret}"\n' + accounts_config())
    done = subprocess.run(central.command(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert str(secret) in done.stderr and "chmod 600" in done.stderr


# ------------------------------------------------------------------------------------------------
# 1. Locking staff out: the throttle holds back the failing address, lives in the store.

def request_from(source: str, central: CentralProcess, method: str, path: str, *,
                 headers: dict[str, str] | None = None, body: bytes | None = None) -> Reply:
    """:func:`request`, sent from the loopback address ``source`` (127.0.0.0/8 is all this machine's)."""
    conn = http.client.HTTPConnection("127.0.0.1", central.port, timeout=30, source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        reply = conn.getresponse()
        text = reply.read().decode("utf-8", "replace")
        return Reply(reply.status, {k.lower(): v for k, v in reply.getheaders()}, text)
    finally:
        conn.close()


def throttle_rows(central: CentralProcess) -> list[tuple[str, str, int]]:
    import sqlite3

    with sqlite3.connect(central.workdir / "central.sqlite3") as db:
        return [tuple(r) for r in db.execute("SELECT kind, subject, failures FROM sign_in_throttle ORDER BY 1, 2")]


def test_a_lockout_cannot_be_forced_on_another_address(guarded_central: CentralProcess) -> None:
    from central.throttle import FREE_FAILURES

    attacker, staff = "127.0.0.2", "127.0.0.3"
    origin = {**FORM, "Origin": guarded_central.url.rstrip("/")}
    wrong = [request_from(attacker, guarded_central, "POST", "/login", headers=origin,
                          body=login_body("ann", f"guess-{i}")) for i in range(FREE_FAILURES + 10)]
    assert [r.status for r in wrong[:FREE_FAILURES]] == [401] * FREE_FAILURES
    assert all(r.status == 429 and int(r.headers["retry-after"]) >= 1 for r in wrong[FREE_FAILURES:])
    # The attacker's own address is held even with the right password ...
    held = request_from(attacker, guarded_central, "POST", "/login", headers=origin, body=login_body("ann", PASSWORD))
    assert held.status == 429 and "Too many failed sign-ins" in held.body
    # ... while staff at another address sign in as ann at once.
    ok = request_from(staff, guarded_central, "POST", "/login", headers=origin, body=login_body("ann", PASSWORD))
    assert ok.status == 303
    # The count is in the store: a restart does not free the attacker.
    guarded_central.stop()
    guarded_central.start()
    again = request_from(attacker, guarded_central, "POST", "/login", headers=origin,
                         body=login_body("ann", PASSWORD))
    assert again.status == 429 and int(again.headers["retry-after"]) > 60


def test_guessing_many_names_from_one_address_is_throttled_and_adds_no_rows(guarded_central: CentralProcess) -> None:
    from central.throttle import FREE_FAILURES

    origin = {**FORM, "Origin": guarded_central.url.rstrip("/")}
    replies = [request(guarded_central, "POST", "/login", headers=origin, body=login_body(f"name-{i % 20}", "guess"))
               for i in range(80)]
    statuses = [r.status for r in replies]
    assert statuses.count(401) == FREE_FAILURES and statuses.count(429) == 80 - FREE_FAILURES
    assert throttle_rows(guarded_central) == [("address", "127.0.0.1", 80)]  # one row, whatever the names
    # And a few log lines: the first failure and the first refusal of this address; the rest are counted.
    lines = [line for line in guarded_central.log().splitlines() if "sign-in" in line]
    assert len(lines) == 2 and "failed sign-in for 'name-0'" in lines[0] and "too many failures" in lines[1]


# ------------------------------------------------------------------------------------------------
# 5. Open by default: no accounts on a non-loopback address needs open = true, and says so.

def test_no_accounts_on_a_non_loopback_bind_refuses_to_start_without_open(broker: Mosquitto, tmp_path: Path) -> None:
    import subprocess

    central = CentralProcess(broker, tmp_path / "refused", config="[dashboard]\nmin_answers = 5\n",
                             bind_host="0.0.0.0")
    done = subprocess.run(central.command(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "web.bind 0.0.0.0" in done.stderr and "dashboard.open = true" in done.stderr
    assert "Dashboard:" not in done.stdout  # it never listened
    with CentralProcess(broker, tmp_path / "open", config="[dashboard]\nopen = true\n", bind_host="0.0.0.0") as open_:
        page = request(open_, "GET", "/", headers={"Accept": "text/html"})
        assert page.status == 200 and 'id="open-banner"' in page.body and "Open dashboard" in page.body
        assert "open to anyone" in open_.log()


def test_a_dashboard_with_accounts_shows_no_open_banner(guarded_central: CentralProcess) -> None:
    page = request(guarded_central, "GET", "/", headers={"Accept": "text/html", "Cookie": sign_in(guarded_central)})
    assert page.status == 200 and "open-banner" not in page.body


# ------------------------------------------------------------------------------------------------
# 6. Filling central's disk with dead letters: a budget, one log line per reason, broker limits.

def health(central: CentralProcess) -> dict[str, int]:
    import json

    reply = request(central, "GET", "/healthz")
    assert reply.status == 200
    return dict(json.loads(reply.body))


def test_a_junk_flood_leaves_dead_letters_within_budget_and_few_log_lines(broker: Mosquitto, tmp_path: Path) -> None:
    from tests.support.events import feedback_event, raw
    from tests.support.mqtt_client import FakeDevice
    from tests.support.wait import wait_for

    junk = [b"not json at all %d" % i for i in range(10)] + [b'{"schema": 1, "rating": %d}' % i for i in range(10)] \
        + [b"\xff\xfe" * 40]
    with CentralProcess(broker, tmp_path / "central", config="[ingest]\ndead_letters_max_mb = 1\n") as central, \
            FakeDevice(broker, "flooder") as device:
        budget = health(central)["dead_letter_budget_bytes"]
        assert budget == 1024 * 1024
        infos = [device.publish_nowait(device.topic, junk[i % len(junk)] + b" " * (i % 97)) for i in range(20_000)]
        device.wait_for(lambda: infos[-1].is_published(), 120, "the flood's PUBACKs")
        device.send(raw(feedback_event(site=device.site, device="flooder")))  # after the flood, in order
        central.wait_for_count(1, timeout=120)
        wait_for(lambda: 0 < health(central)["dead_letter_bytes"] <= budget, 10, "dead letters pruned to budget")
        log = central.log().splitlines()
    refused = [line for line in log if "refused" in line]
    assert 1 <= len(refused) <= 5, refused
    assert sum("WARNING" in line for line in log) <= 5


def test_the_shipped_broker_config_limits_message_size_to_what_the_protocol_needs() -> None:
    from sync.protocol import MAX_PAYLOAD

    conf = (Path(__file__).resolve().parents[1] / "systemd" / "mosquitto" / "deskpulse.conf").read_text()
    settings = dict(line.split(None, 1) for line in conf.splitlines() if line and not line.startswith("#"))
    assert int(settings["message_size_limit"]) == max(MAX_PAYLOAD.values())
    assert max(MAX_PAYLOAD.values()) < int(settings["max_packet_size"]) <= max(MAX_PAYLOAD.values()) + 8192


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = n >> 7, n & 0x7F
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _mqtt_string(text: str) -> bytes:
    return len(text).to_bytes(2, "big") + text.encode()


def raw_publish(broker: Mosquitto, topic: str, payload: bytes) -> bytes:
    """Speak MQTT 3.1.1 by hand, as a client that ignores any size the broker announces: CONNECT, one
    QoS 1 PUBLISH; returns what the broker sends back after the CONNACK (b"" when it closed the connection)."""
    import socket

    connect = b"\x00\x04MQTT\x04\x02\x00\x3c" + _mqtt_string("test-site.raw")
    publish = _mqtt_string(topic) + b"\x00\x01" + payload
    with socket.create_connection((broker.host, broker.port), timeout=10) as sock:
        sock.sendall(b"\x10" + _varint(len(connect)) + connect)
        assert sock.recv(4) == b"\x20\x02\x00\x00", "no CONNACK"
        try:
            sock.sendall(b"\x32" + _varint(len(publish)) + publish)
            return sock.recv(4)
        except ConnectionResetError:
            return b""


def test_a_broker_with_the_shipped_limits_refuses_a_1_mib_publish(broker: Mosquitto, tmp_path: Path) -> None:
    from sync.protocol import feedback_topic
    from tests.support.events import feedback_event, raw
    from tests.support.mqtt_client import FakeDevice

    topic = feedback_topic("test-site", "raw")
    assert raw_publish(broker, topic, b"x" * 1024) == b"\x40\x02\x00\x01"  # without limits: a PUBACK
    conf = (Path(__file__).resolve().parents[1] / "systemd" / "mosquitto" / "deskpulse.conf").read_text()
    broker.extra_config = "\n".join(line for line in conf.splitlines()
                                    if line.startswith(("message_size_limit", "max_packet_size")))
    broker.restart()
    with CentralProcess(broker, tmp_path / "central") as central:
        assert raw_publish(broker, topic, b"x" * (1024 * 1024)) == b""  # the broker closes the connection
        with FakeDevice(broker, "small") as device:
            device.send(raw(feedback_event(site=device.site, device="small")))
        central.wait_for_count(1)  # the positive marker: a later, valid answer arrived
        assert health(central)["dead_letters"] == 0


# ------------------------------------------------------------------------------------------------
# Accounts in the store with roles: a viewer reads, only an admin manages.

def add_user(central: CentralProcess, name: str, password: str, role: str) -> None:
    """``deskpulse-central user add`` on central's database, the password on stdin (never an argument)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "central.cli", "user", "add", name, "--role", role,
                           "--db", central.db_url], input=password + "\n", capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def staffed_central(broker: Mosquitto, tmp_path: Path):
    """A central bound to 0.0.0.0 whose only accounts are in the store: an admin and a viewer."""
    central = CentralProcess(broker, tmp_path / "central", bind_host="0.0.0.0")
    add_user(central, "boss", "the admin's long password", "admin")
    add_user(central, "vera", "the viewer's long password", "viewer")
    with central:
        yield central


def test_a_viewer_reads_but_gets_403_from_admin_pages_and_api(staffed_central: CentralProcess) -> None:
    import json

    viewer = sign_in(staffed_central, "vera", "the viewer's long password")
    admin = sign_in(staffed_central, "boss", "the admin's long password")
    assert request(staffed_central, "GET", "/api/events", headers={"Cookie": viewer}).status == 200
    assert request(staffed_central, "GET", "/export/answers.csv", headers={"Cookie": viewer}).status == 200
    for path in ("/api/admin/accounts", "/admin/accounts"):
        assert request(staffed_central, "GET", path, headers={"Cookie": viewer}).status == 403, path
        assert request(staffed_central, "GET", path).status in (401, 303), path
    own = {"Cookie": viewer, "Origin": staffed_central.url.rstrip("/"), **FORM}
    post = request(staffed_central, "POST", "/admin/accounts", headers=own,
                   body=b"action=add&name=mallory&password=a+long+password+here&role=admin")
    assert post.status == 403
    listed = request(staffed_central, "GET", "/api/admin/accounts", headers={"Cookie": admin})
    assert listed.status == 200
    assert json.loads(listed.body) == [{"name": "boss", "role": "admin", "source": "store"},
                                       {"name": "vera", "role": "viewer", "source": "store"}]


def test_removing_an_account_or_changing_its_password_ends_its_sessions_at_once(
        staffed_central: CentralProcess) -> None:
    admin = {"Cookie": sign_in(staffed_central, "boss", "the admin's long password"),
             "Origin": staffed_central.url.rstrip("/"), **FORM}
    viewer = sign_in(staffed_central, "vera", "the viewer's long password")
    changed = request(staffed_central, "POST", "/admin/accounts", headers=admin,
                      body=b"action=password&name=vera&password=a+new+long+password")
    assert changed.status == 303 and "new+password+for+vera" in changed.headers["location"]
    assert request(staffed_central, "GET", "/api/events", headers={"Cookie": viewer}).status == 401
    viewer = sign_in(staffed_central, "vera", "a new long password")
    removed = request(staffed_central, "POST", "/admin/accounts", headers=admin, body=b"action=remove&name=vera")
    assert removed.status == 303
    assert request(staffed_central, "GET", "/api/events", headers={"Cookie": viewer}).status == 401
    refused = request(staffed_central, "POST", "/admin/accounts", headers=admin, body=b"action=remove&name=boss")
    assert "err=" in refused.headers["location"]  # not the account one is signed in with


def browser_sign_in(page: object, central: CentralProcess, name: str, password: str) -> None:
    """Sign in through the real form in Chromium."""
    from typing import Any

    p: Any = page
    p.goto(central.url + "login")
    p.fill("#name", name)
    p.fill("#password", password)
    p.click("button[type=submit]")
    p.wait_for_url(central.url)


def test_in_chromium_a_viewer_is_refused_the_admin_page_and_an_admin_adds_an_account(
        staffed_central: CentralProcess) -> None:
    from tests.support.browser import chromium, chromium_path

    if chromium_path() is None:
        pytest.skip("chromium is not installed (make test installs it)")
    with chromium() as browser:
        viewer = browser.new_context().new_page()
        viewer.set_default_timeout(10_000)
        browser_sign_in(viewer, staffed_central, "vera", "the viewer's long password")
        assert viewer.locator("#open-banner").count() == 0
        refused = viewer.goto(staffed_central.url + "admin/accounts")
        assert refused is not None and refused.status == 403
        assert "this account is a viewer" in viewer.inner_text("main")
        admin = browser.new_context().new_page()
        admin.set_default_timeout(10_000)
        browser_sign_in(admin, staffed_central, "boss", "the admin's long password")
        admin.goto(staffed_central.url + "admin/accounts")
        admin.fill("#new-name", "newbie")
        admin.fill("#new-password", "the newbie's long password")
        admin.select_option("#new-role", "viewer")
        admin.click("#add button[type=submit]")
        admin.wait_for_selector("text=added newbie (viewer)")
        assert "newbie" in admin.inner_text("#accounts")
        # The new account signs in at once, as a viewer.
        newbie = browser.new_context().new_page()
        newbie.set_default_timeout(10_000)
        browser_sign_in(newbie, staffed_central, "newbie", "the newbie's long password")
        reply = newbie.goto(staffed_central.url + "admin/accounts")
        assert reply is not None and reply.status == 403


def test_an_admin_makes_and_removes_a_tv_link_and_a_viewer_cannot(staffed_central: CentralProcess) -> None:
    import json
    import re

    own = {"Origin": staffed_central.url.rstrip("/"), **FORM}
    viewer = {"Cookie": sign_in(staffed_central, "vera", "the viewer's long password"), **own}
    admin = {"Cookie": sign_in(staffed_central, "boss", "the admin's long password"), **own}
    body = b"action=tv-add&name=lobby&site=north&device="
    assert request(staffed_central, "POST", "/admin/accounts", headers=viewer, body=body).status == 403
    made = request(staffed_central, "POST", "/admin/accounts", headers=admin, body=body)
    assert made.status == 200  # the page itself, so the token is never in a redirect's URL
    found = re.search(r"/tv/([A-Za-z0-9_-]{43})", made.body)
    assert found is not None, made.body
    tv = f"/tv/{found[1]}"
    assert request(staffed_central, "GET", tv).status == 200  # no sign-in on a TV
    assert request(staffed_central, "GET", "/api/events", headers={"Cookie": f"x={found[1]}"}).status == 401
    listed = json.loads(request(staffed_central, "GET", "/api/admin/tv", headers={"Cookie": admin["Cookie"]}).body)
    assert listed == [{"name": "lobby", "site": "north", "device": None, "source": "store"}]
    assert found[1] not in staffed_central.log()
    removed = request(staffed_central, "POST", "/admin/accounts", headers=admin, body=b"action=tv-remove&name=lobby")
    assert removed.status == 303
    assert request(staffed_central, "GET", tv).status == 404  # closed at once
