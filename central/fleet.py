"""``deskpulse-central device …`` and ``deskpulse-central broker …``: kiosks' broker credentials.

On a Mosquitto with the dynamic-security plugin, central's administrator
client creates and deletes clients and roles at run time through the
plugin's ``$CONTROL`` topic (what to create comes from :mod:`sync.dynsec`):

* ``broker init FILE`` writes the plugin's first file with the administrator
  (its password from a prompt or standard input), offline;
* ``broker setup`` creates the collectors' and the dashboard's clients,
  their passwords written to files;
* ``device add SITE/DEVICE`` creates the device's client (client id bound),
  its role and a random password, and writes the provisioning file
  (:mod:`sync.provision`) that ``install.sh kiosk --provision`` takes;
* ``device remove SITE/DEVICE`` deletes the client (the broker drops its
  connection), clears its retained status and configuration and marks it
  retired in the store;
* ``device list`` lists the devices the broker knows.

Brokers without the plugin keep the generated ``acl_file`` (``python -m sync.acl``).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from central.config import DEFAULT_PATH, CentralConfig, load
from sync import dynsec, protocol
from sync import provision as provisioning
from sync.broker import BrokerSettings, make_client
from sync.errors import DeskPulseError


class FleetError(DeskPulseError):
    """The broker refused the administrator or a command; the message says which and why."""


class BrokerAdmin:
    """A connection as the dynamic-security plugin's administrator.

    Args:
        settings: the broker and the administrator's credentials.
        timeout: seconds to wait for each answer of the broker.

    Raises:
        FleetError: the broker cannot be reached or refuses the administrator.
    """

    def __init__(self, settings: BrokerSettings, timeout: float = 10.0) -> None:
        self.settings, self.timeout = settings, timeout
        self._cond = threading.Condition()
        self._connack: ReasonCode | None = None
        self._responses: dict[str, dict[str, Any]] = {}
        self._acks: dict[int, int] = {}
        self._subscribed: list[int] | None = None
        self.client = make_client(f"{settings.username}-{uuid.uuid4().hex[:8]}", settings)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        try:
            self.client.connect(settings.host, settings.port, keepalive=30)
        except OSError as exc:
            raise FleetError(f"cannot reach the broker {settings.url}: {exc}") from None
        self.client.loop_start()
        try:
            self._wait(lambda: self._connack is not None, "the broker's answer to the administrator's login")
            assert self._connack is not None
            if self._connack.is_failure:
                raise FleetError(f"the broker {settings.url} refused the administrator {settings.username!r}: "
                                 f"{self._connack} (check fleet.admin_username and fleet.admin_password_file)")
            self.client.subscribe(dynsec.RESPONSE_TOPIC, qos=1)
            self._wait(lambda: self._subscribed is not None, "the subscription to the plugin's answers")
            if not self._subscribed or self._subscribed[0] >= 0x80:
                raise FleetError(f"the broker {settings.url} would not let {settings.username!r} read "
                                 f"{dynsec.RESPONSE_TOPIC}: is it the plugin's administrator?")
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> BrokerAdmin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Disconnect (safe to call twice)."""
        self.client.disconnect()
        self.client.loop_stop()

    # ------------------------------------------------------------------ paho callbacks (network thread)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: ReasonCode,
                    props: Properties | None) -> None:
        with self._cond:
            self._connack = reason
            self._cond.notify_all()

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: list[ReasonCode],
                      props: Properties | None) -> None:
        with self._cond:
            self._subscribed = [r.value for r in reasons]
            self._cond.notify_all()

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: ReasonCode,
                    props: Properties | None) -> None:
        with self._cond:
            self._acks[mid] = reason.value
            self._cond.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            answers = json.loads(message.payload)["responses"]
        except (ValueError, KeyError, TypeError):
            return
        with self._cond:
            for answer in answers:
                if isinstance(answer, dict) and isinstance(answer.get("correlationData"), str):
                    self._responses[answer["correlationData"]] = answer
            self._cond.notify_all()

    def _wait(self, condition: Any, what: str) -> None:
        with self._cond:
            if not self._cond.wait_for(condition, self.timeout):
                raise FleetError(f"the broker {self.settings.url} did not answer within {self.timeout:g} s "
                                 f"({what})")

    # ------------------------------------------------------------------ commands

    def command(self, name: str, **fields: Any) -> dict[str, Any]:
        """Send one plugin command and return its answer (``error`` set when the plugin refused it)."""
        correlation = uuid.uuid4().hex
        body = {"commands": [{"command": name, **fields, "correlationData": correlation}]}
        self.client.publish(dynsec.CONTROL_TOPIC, json.dumps(body), qos=1)
        self._wait(lambda: correlation in self._responses, f"the plugin's answer to {name}")
        with self._cond:
            self._acks.clear()  # the command's own PUBACK: nobody waits for it
            return self._responses.pop(correlation)

    def check(self, name: str, *, allow: tuple[str, ...] = (), **fields: Any) -> dict[str, Any]:
        """:meth:`command`, raising FleetError when the plugin refused it (except for errors in ``allow``)."""
        answer = self.command(name, **fields)
        error = answer.get("error")
        if error and not any(a in error for a in allow):
            raise FleetError(f"the broker refused {name} {_subject(fields)}: {error}")
        return answer

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish with QoS 1 and wait for the PUBACK.

        Raises:
            FleetError: the broker refused it.
        """
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        self._wait(lambda: info.mid in self._acks, f"the PUBACK for {topic}")
        with self._cond:
            code = self._acks.pop(info.mid)
        if code >= 0x80:
            raise FleetError(f"the broker refused the administrator's publish on {topic}: 0x{code:02x}")

    # ------------------------------------------------------------------ what DeskPulse does with them

    def client_exists(self, username: str) -> bool:
        """Whether the broker has a client called ``username``."""
        answer = self.command("getClient", username=username)
        return not answer.get("error")

    def ensure_role(self, rolename: str, acls: list[dict[str, Any]], text: str) -> None:
        """Create a role with ``acls``; an existing role keeps its ACLs."""
        self.check("createRole", rolename=rolename, textname=text, acls=acls, allow=("already exists",))

    def add_client(self, username: str, password: str, rolename: str, text: str, *,
                   clientid: str | None = None) -> None:
        """Create a client with one role (and its client id bound when ``clientid`` is given).

        Raises:
            FleetError: the client exists already, or the plugin refused it.
        """
        fields: dict[str, Any] = {"username": username, "password": password, "textname": text,
                                  "roles": [{"rolename": rolename, "priority": 0}]}
        if clientid is not None:
            fields["clientid"] = clientid
        self.check("createClient", **fields)

    def list_clients(self) -> list[str]:
        """Every client the plugin knows, by user name."""
        answer = self.check("listClients", verbose=False)
        clients = answer.get("data", {}).get("clients", [])
        return sorted(c if isinstance(c, str) else c.get("username", "") for c in clients)


def admin_settings(config: CentralConfig) -> BrokerSettings:
    """Central's broker settings with the administrator's credentials.

    Raises:
        FleetError: ``fleet.admin_password_file`` is not configured.
    """
    if config.fleet.admin_password is None:
        raise FleetError(f"{config.source}: fleet.admin_password_file is not set: the broker administrator's "
                         "password is needed (see docs/security.md, 'Device credentials')")
    return replace(config.broker, username=config.fleet.admin_username, password=config.fleet.admin_password)


def add_device(config: CentralConfig, site: str, device: str, out: Path, *, timeout: float = 10.0) -> Path:
    """Create a device's role and client on the broker and write its provisioning file.

    Returns:
        The provisioning file's path.

    Raises:
        FleetError: the device exists on the broker, the file exists, or the broker refused.
        ConfigError: the CA file cannot be read.
    """
    name = dynsec.device_name(site, device)
    if out.exists():
        raise FleetError(f"{out} exists: move it away or choose another --out (nothing was created)")
    ca_pem = _ca_text(config)
    password = dynsec.new_password()
    with BrokerAdmin(admin_settings(config), timeout) as admin:
        if admin.client_exists(name):
            raise FleetError(f"the broker has a client {name!r} already: 'deskpulse-central device remove "
                             f"{site}/{device}' first to give it new credentials")
        admin.ensure_role(dynsec.device_role(site, device), dynsec.device_acls(site, device),
                          f"DeskPulse kiosk {site}/{device}: its own topics")
        admin.add_client(name, password, dynsec.device_role(site, device), f"DeskPulse kiosk {site}/{device}",
                         clientid=name)
    provisioning.write(provisioning.Provision(
        site=site, device=device, broker_url=config.fleet.device_broker_url or config.broker.url,
        username=name, password=password, ca_pem=ca_pem), out)
    _unretire(config, site, device)
    return out


def remove_device(config: CentralConfig, site: str, device: str, *, timeout: float = 10.0) -> list[str]:
    """Delete a device's client and role, clear its retained topics, mark it retired.

    Returns:
        What was done, one sentence each (a client already gone is said, not an error).
    """
    name = dynsec.device_name(site, device)
    done = []
    with BrokerAdmin(admin_settings(config), timeout) as admin:
        answer = admin.check("deleteClient", username=name, allow=("not found",))
        done.append(f"client {name} not found on the broker" if answer.get("error")
                    else f"deleted client {name} (its connection, if any, is closed)")
        admin.check("deleteRole", rolename=dynsec.device_role(site, device), allow=("not found",))
        for topic in (protocol.status_topic(site, device), protocol.device_config_topic(site, device)):
            admin.publish(topic, b"", retain=True)
        done.append("cleared its retained status and configuration")
    if _store_missing(config):
        done.append(f"central's database {config.safe_database_url} does not exist yet: nothing to mark retired")
        return done
    from central.store import Store

    with Store(config.database_url) as store:
        store.retire_device(site, device)
    done.append(f"marked {site}/{device} retired in {config.safe_database_url} (its answers stay)")
    return done


def _store_missing(config: CentralConfig) -> bool:
    """Whether central's SQLite file is missing. The commands never create it (nor migrate): run
    as root, they would leave a root-owned database or migration lock the service cannot write."""
    from sqlalchemy.engine import make_url

    url = make_url(config.database_url)
    return url.drivername.startswith("sqlite") and not Path(url.database or "").exists()


def setup_central(config: CentralConfig, secrets_dir: Path, *, timeout: float = 10.0) -> list[str]:
    """Create the collectors' and the dashboard's roles and clients; passwords into ``secrets_dir``.

    An existing client is left as it is (its password file is not touched).

    Returns:
        What was done, one sentence per client.
    """
    done = []
    with BrokerAdmin(admin_settings(config), timeout) as admin:
        for client, role, acls, text in (
            (dynsec.COLLECTOR_CLIENT, dynsec.COLLECTOR_ROLE, dynsec.collector_acls(), "DeskPulse collectors"),
            (dynsec.DASHBOARD_CLIENT, dynsec.DASHBOARD_ROLE, dynsec.dashboard_acls(), "DeskPulse dashboard"),
        ):
            admin.ensure_role(role, acls, text)
            path = secrets_dir / f"{client}.password"
            if admin.client_exists(client):
                done.append(f"client {client} exists: kept (its password is unchanged)")
                continue
            password = dynsec.new_password()
            admin.add_client(client, password, role, text)
            provisioning.write_private(path, password + "\n")
            done.append(f"created client {client}; its password is in {path}")
    return done


def _ca_text(config: CentralConfig) -> str | None:
    path = config.fleet.device_ca_file or config.broker.ca_file
    if path is None:
        return None
    try:
        return path.read_text("utf-8")
    except OSError as exc:
        raise FleetError(f"{config.source}: the CA for provisioning files ({path}) cannot be read: {exc}") from None


def _unretire(config: CentralConfig, site: str, device: str) -> None:
    if _store_missing(config):
        return
    from central.store import Store

    with Store(config.database_url) as store:
        store.unretire_device(site, device)


def _subject(fields: dict[str, Any]) -> str:
    for key in ("username", "rolename"):
        if key in fields:
            return repr(fields[key])
    return ""


# ---------------------------------------------------------------------- command line

EPILOG = """\
examples:
  deskpulse-central broker init /var/lib/mosquitto/dynamic-security.json   (asks for the admin password)
  deskpulse-central broker setup --secrets-dir /etc/deskpulse
  deskpulse-central device add hotel-berlin/front-desk --out front-desk.provision.toml
  deskpulse-central device remove hotel-berlin/front-desk
  deskpulse-central device list

device and broker setup log in to broker.url as fleet.admin_username with the
password in fleet.admin_password_file (central.toml). See docs/security.md.
Exit status: 0 done, 1 the broker or a file said no, 2 a bad option or configuration.
"""


def parser() -> argparse.ArgumentParser:
    """The ``device`` and ``broker`` commands' parser."""
    p = argparse.ArgumentParser(
        prog="deskpulse-central",
        description="Manage kiosks' broker credentials on a Mosquitto with the dynamic-security plugin.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    groups = p.add_subparsers(dest="group", metavar="{device,broker}", required=True)

    def add_config(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("-c", "--config", type=Path, default=DEFAULT_PATH, metavar="FILE",
                         help=f"central TOML file (default: {DEFAULT_PATH})")

    device = groups.add_parser("device", help="add, remove or list kiosks on the broker")
    dev = device.add_subparsers(dest="action", metavar="{add,remove,list}", required=True)
    add = dev.add_parser("add", help="create a kiosk's client, role and password; write its provisioning file",
                         description="Create the kiosk's broker client (client id bound to its user name), a "
                         "role with exactly its topics and a random password, and write the provisioning file "
                         "(mode 0600) for 'install.sh kiosk --provision FILE'.")
    add.add_argument("desk", metavar="SITE/DEVICE", help="e.g. hotel-berlin/front-desk")
    add.add_argument("--out", type=Path, metavar="FILE",
                     help="the provisioning file to write (default: SITE.DEVICE.provision.toml here); "
                     "never overwritten")
    add_config(add)
    remove = dev.add_parser("remove", help="delete a kiosk's client, clear its retained topics, mark it retired",
                            description="Delete the kiosk's broker client and role (its connection is closed "
                            "and it cannot log in again), clear its retained status and configuration, and "
                            "mark it retired in central's store. Its answers stay.")
    remove.add_argument("desk", metavar="SITE/DEVICE")
    add_config(remove)
    lst = dev.add_parser("list", help="list the kiosks the broker knows")
    add_config(lst)

    broker = groups.add_parser("broker", help="set up the dynamic-security plugin for DeskPulse")
    br = broker.add_subparsers(dest="action", metavar="{init,setup}", required=True)
    init = br.add_parser("init", help="write the plugin's first file with the DeskPulse administrator",
                         description="Write the dynamic-security plugin's configuration file with one client, "
                         "the DeskPulse administrator, whose password is asked twice (or read as one line "
                         "from standard input). Offline: point plugin_opt_config_file at it and restart "
                         "Mosquitto. An existing file is never overwritten.")
    init.add_argument("file", type=Path, metavar="FILE", help="e.g. /var/lib/mosquitto/dynamic-security.json")
    init.add_argument("--admin", default=dynsec.DEFAULT_ADMIN, metavar="NAME",
                      help=f"the administrator's user name (default {dynsec.DEFAULT_ADMIN})")
    setup = br.add_parser("setup", help="create the collectors' and the dashboard's clients",
                          description="Create the roles and clients deskpulse-central (the collectors) and "
                          "deskpulse-dashboard with random passwords, written to SECRETS_DIR/NAME.password "
                          "(mode 0640). Existing clients are kept.")
    setup.add_argument("--secrets-dir", type=Path, required=True, metavar="DIR",
                       help="where to write the new clients' password files")
    add_config(setup)
    return p


def _desk(p: argparse.ArgumentParser, text: str) -> tuple[str, str]:
    site, sep, device = text.partition("/")
    if not sep:
        p.error(f"{text!r}: write the device as SITE/DEVICE, e.g. hotel-berlin/front-desk")
    try:
        return protocol.check_slug(site, "site"), protocol.check_slug(device, "device")
    except ValueError as exc:
        p.error(str(exc))


def main(argv: list[str]) -> int:
    """Run a ``device`` or ``broker`` command; returns the exit status."""
    p = parser()
    args = p.parse_args(argv)
    try:
        if args.group == "broker" and args.action == "init":
            return _init(args)
        config = load(args.config)
        if args.group == "broker":
            for line in setup_central(config, args.secrets_dir):
                print(line)
            return 0
        if args.action == "list":
            with BrokerAdmin(admin_settings(config)) as admin:
                for name in admin.list_clients():
                    print(name)
            return 0
        site, device = _desk(p, args.desk)
        if args.action == "add":
            out = args.out or Path(f"{site}.{device}.provision.toml")
            add_device(config, site, device, out)
            print(f"created {site}/{device} on the broker; provisioning file {out} (secret: carry it to the "
                  "kiosk, install it with 'install.sh kiosk --provision FILE', then delete it)")
            return 0
        for line in remove_device(config, site, device):
            print(line)
        return 0
    except FleetError as exc:
        print(f"deskpulse-central: {exc}", file=sys.stderr)
        return 1
    except DeskPulseError as exc:
        print(f"deskpulse-central: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"deskpulse-central: {exc}", file=sys.stderr)
        return 1


def _init(args: argparse.Namespace) -> int:
    if sys.stdin.isatty():
        import getpass

        password = getpass.getpass(f"Password for the broker administrator {args.admin}: ")
        if password != getpass.getpass("Again: "):
            print("deskpulse-central: the two passwords differ; nothing written", file=sys.stderr)
            return 2
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 12:
        print("deskpulse-central: use an administrator password of at least 12 characters", file=sys.stderr)
        return 2
    try:
        dynsec.write_initial_config(args.file, args.admin, password)
    except FileExistsError:
        print(f"deskpulse-central: {args.file} exists: not overwritten (the broker's clients are in it)",
              file=sys.stderr)
        return 1
    print(f"wrote {args.file} with the administrator {args.admin}; load it in mosquitto.conf with\n"
          f"  plugin /usr/lib/<arch>/mosquitto_dynamic_security.so\n  plugin_opt_config_file {args.file}")
    return 0
