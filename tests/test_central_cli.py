"""``deskpulse-central``: help, configuration errors, migrate, and a real run stopped by SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from central.cli import main
from central.config import from_dict, load
from central.store import Store
from dev.broker import free_port
from sync import protocol
from sync.errors import ConfigError
from tests.support.broker import Mosquitto
from tests.support.mqtt_client import retained
from tests.support.wait import wait_for
from tests.test_central_store import HEAD


def test_help_explains_the_options_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for word in ("--db", "--broker", "--bind", "--config", "migrate", "check-config", "examples:"):
        assert word in text


def test_fault_points_are_armed_only_by_the_hidden_test_option(capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    from central.faults import Faults
    from central.ingest import Collector

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0 and "--fault-point" not in capsys.readouterr().out  # not for production: not offered
    with pytest.raises(SystemExit) as exc:
        main(["--fault-point", "after-lunch"])
    assert exc.value.code == 2 and "after-receive, after-commit, after-ack" in capsys.readouterr().err
    monkeypatch.setenv("DESKPULSE_FAULT_POINT", "after-receive")  # the old way arms nothing
    with Store(f"sqlite:///{tmp_path / 'central.sqlite3'}") as store:
        assert not Collector(from_dict({}), store).faults
    armed = Faults.parse("after-commit:2")
    armed.point("after-receive")  # another point: nothing happens
    armed.point("after-commit")  # the first time of two: still alive, one to go
    assert repr(armed) == "Faults({'after-commit': 1})"
    with pytest.raises(ValueError, match="whole number"):
        Faults.parse("after-ack:x")


def test_check_config_names_the_file_and_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "central.toml"
    path.write_text('[ingest]\nbatch_size = "lots"\n')
    assert main(["check-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "ingest.batch_size" in err


def test_check_config_refuses_unknown_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "central.toml"
    path.write_text('[web]\nbind = "127.0.0.1:8080"\nport = 8080\n')
    assert main(["check-config", "--config", str(path)]) == 2
    assert "web.port" in capsys.readouterr().err


def test_check_config_accepts_a_good_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "mqtt-password").write_text("s3cret\n")
    path = tmp_path / "central.toml"
    path.write_text(
        '[broker]\nurl = "mqtts://mqtt.example:8883"\nusername = "central"\npassword_file = "mqtt-password"\n'
        'group = "central-eu"\nclient_id = "central-1"\n'
        '[database]\nurl = "sqlite:///data/central.sqlite3"\n'
        '[web]\nbind = "[::1]:8081"\n'
        '[ingest]\nbatch_size = 50\nbatch_ms = 20\n'
    )
    assert main(["check-config", "--config", str(path)]) == 0
    assert "ok" in capsys.readouterr().out
    config = load(path)
    assert (config.broker.host, config.broker.port, config.broker.tls) == ("mqtt.example", 8883, True)
    assert config.broker.password == "s3cret"  # read from the file, never the URL
    assert (config.group, config.client_id) == ("central-eu", "central-1")
    assert config.database_url == f"sqlite:///{tmp_path / 'data' / 'central.sqlite3'}"  # relative to the file
    assert (config.bind_host, config.bind_port, config.dashboard_url) == ("::1", 8081, "http://[::1]:8081/")
    assert (config.ingest.batch_size, config.ingest.batch_ms) == (50, 20)


@pytest.mark.parametrize(("data", "key"), [
    ({"broker": {"url": "http://x"}}, "broker.url"),
    ({"broker": {"group": "Not A Slug"}}, "broker.group"),
    ({"database": {"url": "mysql://x/y"}}, "database.url"),
    ({"database": {"url": "postgresql://host"}}, "database.url"),
    ({"web": {"bind": "localhost"}}, "web.bind"),
    ({"ingest": {"batch_ms": 0}}, "ingest.batch_ms"),
    ({"ingest": {"batch_size": 1.5}}, "ingest.batch_size"),
    ({"ingest": {"batch_size": True}}, "ingest.batch_size"),
    ({"alerts": {"window_min": 0}}, "alerts.window_min"),
])
def test_a_wrong_value_names_its_key(data: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        from_dict(data, source="central.toml")


def test_command_line_values_override_and_are_checked(capsys: pytest.CaptureFixture[str]) -> None:
    config = from_dict({}).with_overrides(broker="mqtt://10.0.0.5:1884", db="postgresql://u@db/dp", bind="0.0.0.0:9000")
    assert (config.broker.host, config.broker.port) == ("10.0.0.5", 1884)
    assert config.database_url == "postgresql://u@db/dp"
    assert config.dashboard_url == "http://127.0.0.1:9000/"
    assert main(["check-config", "--config", os.devnull, "--broker", "tcp://x"]) == 2
    assert "--broker" in capsys.readouterr().err


def test_migrate_creates_the_database_and_exits(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'central.sqlite3'}"
    assert main(["migrate", "--db", url]) == 0
    with Store(url) as store:
        assert store.revision() == HEAD


def test_an_unopenable_database_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["migrate", "--db", f"sqlite:///{blocker / 'central.sqlite3'}"]) == 1
    assert "database" in capsys.readouterr().err


def _start(broker: Mosquitto, tmp_path: Path, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "central.cli", "--broker", broker.url,
         "--db", f"sqlite:///{tmp_path / 'central.sqlite3'}", "--bind", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def retained_central_state(broker: Mosquitto) -> str | None:
    """What the retained ``_central/status`` says right now (None: nothing retained)."""
    got = retained(broker, protocol.CENTRAL_STATUS_TOPIC)
    return str(json.loads(got)["state"]) if got is not None else None


def test_run_prints_the_dashboard_url_when_ready_and_stops_on_sigterm(broker: Mosquitto, tmp_path: Path) -> None:
    port = free_port()
    proc = _start(broker, tmp_path, port)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once the web server listens
        assert line.strip() == f"Dashboard: http://127.0.0.1:{port}/"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as reply:
            assert json.load(reply) == {"ok": True, "events": 0, "dead_letters": 0, "dead_letter_bytes": 0,
                                        "dead_letter_budget_bytes": 64 * 1024 * 1024}
        wait_for(lambda: retained_central_state(broker) == "online", what="central online")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert retained_central_state(broker) == "offline"  # said on the way out, not by the will
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_run_exits_1_when_the_port_is_taken(broker: Mosquitto, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc = _start(broker, tmp_path, taken.getsockname()[1])
        try:
            _, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 1
    assert "could not listen" in err


def test_collectors_starting_at_once_on_a_new_sqlite_file_migrate_once(tmp_path: Path) -> None:
    """Without a lock, two processes both ran CREATE TABLE and one exited 1 ("table events already exists")."""
    for round_ in range(2):
        url = f"sqlite:///{tmp_path / f'central-{round_}.sqlite3'}"
        procs = [subprocess.Popen([sys.executable, "-m", "central.cli", "migrate", "--db", url],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(4)]
        outputs = [p.communicate(timeout=60)[0].decode() for p in procs]
        assert [p.returncode for p in procs] == [0, 0, 0, 0], "\n".join(outputs)
        with Store(url) as store:
            assert store.revision() is not None


def test_check_config_refuses_an_open_non_loopback_bind_unless_open_is_said(tmp_path: Path, capsys) -> None:
    quiet = tmp_path / "quiet.toml"
    quiet.write_text("[web]\nbind = \"0.0.0.0:8080\"\n")
    assert main(["check-config", "--config", str(quiet)]) == 2
    assert "dashboard.open = true" in capsys.readouterr().err
    assert main(["check-config", "--config", str(quiet), "--bind", "127.0.0.1:8080"]) == 0
    assert main(["check-config", "--config", str(quiet), "--bind", "[::1]:8080"]) == 0
    said = tmp_path / "said.toml"
    said.write_text("[web]\nbind = \"0.0.0.0:8080\"\n[dashboard]\nopen = true\n")
    assert main(["check-config", "--config", str(said)]) == 0
    said.write_text("[dashboard]\nopen = \"yes\"\n")
    assert main(["check-config", "--config", str(said)]) == 2
    assert "dashboard.open must be true or false" in capsys.readouterr().err


def test_user_commands_manage_accounts_with_the_password_from_stdin(tmp_path: Path, capsys,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from central.accounts import Accounts
    from central.auth import verify

    db = ["--db", f"sqlite:///{tmp_path / 'central.sqlite3'}"]

    def run(*words: str, stdin: str = "") -> int:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        return main(["user", *words, *db])

    assert run("add", "ann", "--role", "admin", stdin="a long pass phrase\n") == 0
    assert run("add", "bob", stdin="another long one\n") == 0
    assert run("add", "bob", stdin="another long one\n") == 2
    assert "exists already" in capsys.readouterr().err
    assert run("add", "carl", stdin="short\n") == 2
    assert "10 to 1,024 characters" in capsys.readouterr().err
    assert run("add", "bad name", stdin="a long pass phrase\n") == 2
    assert "1 to 64 of A-Z" in capsys.readouterr().err
    assert run("list") == 0
    assert capsys.readouterr().out.splitlines() == ["ann\tadmin\tstore", "bob\tviewer\tstore"]
    assert run("passwd", "bob", stdin="a brand new password\n") == 0
    assert run("role", "bob", "--role", "admin") == 0
    with Store(db[1]) as store:
        bob = Accounts(store).get("bob")
        assert bob is not None and bob.role == "admin" and verify(bob.password_hash, "a brand new password")
    assert run("remove", "bob") == 0 and run("remove", "bob") == 2
    assert "no account 'bob'" in capsys.readouterr().err
    assert run("frobnicate", "x") == 2 and "usage:" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # there is no way to give a password as an argument
        main(["user", "add", "dan", "--password", "a long pass phrase", *db])
    with pytest.raises(SystemExit):
        main(["run", "extra", *db])
