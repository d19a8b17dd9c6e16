"""Survey configurations published from the dashboard: the form, the device's own checks, versions, MQTT.

A survey is written on ``/admin/surveys/<site>`` for the whole site or one desk,
checked exactly as a kiosk checks it (the protocol's ``config`` schema, then
:func:`sync.survey.check`), and published as the retained ``config`` on
``deskpulse/v1/{site}/config`` or ``deskpulse/v1/{site}/{device}/config`` with
QoS 1, as central's own MQTT user (``broker`` in central.toml: the collectors'
user, whose ACL or role allows configs out; docs/security.md). Each publish gets
a version above every one published before and every one a kiosk of the site
reports in force, kept in ``surveys`` with who published it (and in the audit).

A kiosk reports in its retained status the version in force (``survey``) and
why it refused the last one offered (``config_error``); :func:`verdicts` puts
them beside the survey.
"""

from __future__ import annotations

import json
import math
import re
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import sqlalchemy as sa

from central.sites import record
from central.store import RETIRED, Store, devices, surveys
from sync import protocol
from sync.broker import BrokerSettings, make_client
from sync.errors import ProtocolError
from sync.survey import check

#: The kiosk's languages (it ships screens for these only; others would be left out).
KIOSK_LANGUAGES: Final = ("en", "de", "fr", "es", "uk", "el")
PRESETS: Final = ("service_desk", "luggage_office", "pharmacy", "hotel")
#: Seconds to wait for the broker when publishing.
PUBLISH_TIMEOUT_S: Final = 10.0


class SurveyError(ValueError):
    """A survey that cannot be published: ``field`` names the form field (or ``publish``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def from_form(form: Mapping[str, list[str]]) -> dict[str, Any]:
    """A survey configuration (without ``schema`` and ``version``) from the editor's form.

    Fields: ``languages`` (checkboxes), ``default_lang``, ``scale``, ``followup_ratings``
    (checkboxes), ``question_<lang>``, ``followup_question_<lang>``, ``reason_source``
    (``own``, a preset or ``kiosk``), ``reason_keys`` (one per line), ``reason_labels_<lang>``
    (one per line, in the keys' order), ``thank_you_s``, ``followup_timeout_s``, ``repeat_interval_s``.

    Raises:
        SurveyError: naming the field and what is wrong.
    """
    def one(name: str) -> str:
        return (form.get(name) or [""])[0].strip()

    langs = [lang for lang in KIOSK_LANGUAGES if lang in form.get("languages", [])]
    if not langs:
        raise SurveyError("languages", "languages: tick at least one language the kiosk offers")
    config: dict[str, Any] = {"languages": langs}
    default = one("default_lang") or langs[0]
    config["default_lang"] = default
    try:
        config["scale"] = int(one("scale"))
    except ValueError:
        raise SurveyError("scale", f"scale: {one('scale')!r} is not 3, 4 or 5") from None
    ratings = []
    for value in form.get("followup_ratings", []):
        if not value.isdigit():
            raise SurveyError("followup_ratings", f"follow-up ratings: {value!r} is not a rating")
        ratings.append(int(value))
    config["followup_ratings"] = sorted(set(ratings))
    for key, field in (("question", "question"), ("followup_question", "followup_question")):
        texts = {lang: one(f"{field}_{lang}") for lang in langs if one(f"{field}_{lang}")}
        if texts:
            config[key] = texts
    source = one("reason_source") or "kiosk"
    if source == "own":
        keys = [k.strip() for k in one("reason_keys").splitlines() if k.strip()]
        reasons = []
        labels = {lang: [x.strip() for x in one(f"reason_labels_{lang}").splitlines() if x.strip()] for lang in langs}
        for lang, lines in labels.items():
            if lines and len(lines) != len(keys):
                raise SurveyError(f"reason_labels_{lang}", f"reason labels ({lang}): {len(lines)} lines for "
                                                           f"{len(keys)} reason keys; write one label per key, "
                                                           "in the same order (or none)")
        for i, key in enumerate(keys):
            label = {lang: lines[i] for lang, lines in labels.items() if lines}
            if not label:
                raise SurveyError("reason_labels_" + default, f"reason labels: reason {key!r} has no label in "
                                                              "any language")
            reasons.append({"key": key, "label": label})
        config["reasons"] = reasons
    elif source in PRESETS:
        config["reason_preset"] = source
    elif source != "kiosk":
        raise SurveyError("reason_source", f"reasons: {source[:40]!r} is not a choice")
    for key in ("thank_you_s", "followup_timeout_s", "repeat_interval_s"):
        if one(key):
            try:
                config[key] = float(one(key).replace(",", "."))
            except ValueError:
                raise SurveyError(key, f"{key}: {one(key)!r} is not a number of seconds") from None
            if not math.isfinite(config[key]):
                raise SurveyError(key, f"{key}: {one(key)!r} is not a number of seconds")
            if config[key].is_integer():
                config[key] = int(config[key])
    return config


def validate(config: dict[str, Any]) -> None:
    """Check a full configuration exactly as a kiosk does (schema, then :func:`sync.survey.check`).

    Raises:
        SurveyError: the kiosk's own message, with the form field it is about.
    """
    try:
        protocol.validate("config", config)
        check(config)
    except ProtocolError as exc:
        message = str(exc)
        # "config payload invalid at reasons/0/key: …" (schema) or "config invalid at followup_ratings: …".
        field = re.split(r"[/.\[:]", message.split(" at ", 1)[1], maxsplit=1)[0] if " at " in message else "survey"
        raise SurveyError(field, message) from None


def sample(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with the schema and a placeholder version: what the preview checks and draws."""
    return {"schema": 1, "version": 1, **config}


@dataclass(frozen=True, slots=True)
class Published:
    """A survey published to a site (``device`` empty) or one desk."""

    version: int
    site: str
    device: str
    config: dict[str, Any]
    at: datetime
    by: str


def latest(store: Store, site: str) -> dict[str, Published]:
    """The newest survey published per scope of ``site``: ``""`` for the whole site, else the desk."""
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(surveys).where(surveys.c.site == site).order_by(surveys.c.version)).all()
    out: dict[str, Published] = {}
    for r in rows:
        at = r.published_at if r.published_at.tzinfo else r.published_at.replace(tzinfo=UTC)
        body = json.loads(r.body)
        if body is None:  # a desk's own survey removed (clear_desk)
            out.pop(r.device, None)
        else:
            out[r.device] = Published(int(r.version), r.site, r.device, body, at, r.published_by)
    return out


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one kiosk did with the survey meant for it."""

    device: str
    state: str
    in_force: int | None
    expected: int | None
    outcome: str  # accepted | refused | waiting | none
    reason: str


def verdicts(store: Store, site: str, published: Mapping[str, Published]) -> list[Verdict]:
    """Every kiosk of ``site`` (from its retained status): the version in force, and whether it took
    the newest survey meant for it (its desk's own, else the site's) or refused it, with its reason."""
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(devices.c.device, devices.c.state, devices.c.health, devices.c.config_error)
                            .where(devices.c.site == site, devices.c.state != RETIRED)
                            .order_by(devices.c.device)).all()
    out = []
    for r in rows:
        health = json.loads(r.health) if r.health else {}
        in_force = health.get("survey") if isinstance(health.get("survey"), int) else None
        error = json.loads(r.config_error) if r.config_error else None
        meant = published.get(r.device) or published.get("")
        expected = meant.version if meant else None
        refused = error.get("version") if isinstance(error, dict) else None
        if isinstance(error, dict) and (expected is None or refused is None or refused >= expected) \
                and refused != in_force:
            # The kiosk refused the newest it was offered (ours, or one published by someone else).
            outcome = "refused"
            reason = f"version {refused}: {error.get('reason', '')}" if refused is not None \
                else str(error.get("reason", ""))
        elif expected is None:
            outcome, reason = "none", ""
        elif in_force == expected:
            outcome, reason = "accepted", ""
        else:
            outcome, reason = "waiting", ""
        out.append(Verdict(r.device, r.state, in_force, expected, outcome, reason))
    return out


def next_version(store: Store, site: str) -> int:
    """A version above every survey published here and every one a kiosk of ``site`` reports (in force,
    or refused: a survey someone else published), so each kiosk sees the numbers grow."""
    with store.engine.connect() as conn:
        top = conn.execute(sa.select(sa.func.max(surveys.c.version))).scalar() or 0
        for health, error in conn.execute(sa.select(devices.c.health, devices.c.config_error)
                                          .where(devices.c.site == site)):
            reported = [json.loads(health).get("survey") if health else None,
                        (json.loads(error) or {}).get("version") if error else None]
            top = max([top, *(v for v in reported if isinstance(v, int) and not isinstance(v, bool))])
    return int(top) + 1


def publish(store: Store, broker: BrokerSettings, site: str, device: str, config: dict[str, Any],
            account: str, *, timeout: float = PUBLISH_TIMEOUT_S) -> Published:
    """Check, number, publish (retained, QoS 1, acknowledged by the broker) and record a survey.

    The row and its audit entry are written in a transaction committed only once the
    broker acknowledged the message: a publish that failed leaves no trace but the error.

    Raises:
        SurveyError: the survey fails the kiosk's checks, or the broker refused or did not answer.
    """
    protocol.check_slug(site, "site")
    if device:
        protocol.check_slug(device, "desk")
    version = next_version(store, site)
    body = {"schema": 1, "version": version, **config}
    validate(body)
    payload = protocol.encode("config", body)
    topic = protocol.device_config_topic(site, device) if device else protocol.site_config_topic(site)
    now = datetime.now(UTC)
    try:
        with store.engine.begin() as conn:
            conn.execute(surveys.insert().values(version=version, site=site, device=device,
                                                 body=json.dumps(body, ensure_ascii=False), published_at=now,
                                                 published_by=account))
            record(conn, account, "survey", f"{site}/{device}" if device else site,
                   {"version": version, "topic": topic, "survey": body})
            send_retained(broker, topic, payload, timeout=timeout)
    except sa.exc.IntegrityError:
        raise SurveyError("publish", f"version {version} was just taken by another publish; publish again") from None
    return Published(version, site, device, body, now, account)


def clear_desk(store: Store, broker: BrokerSettings, site: str, device: str, account: str, *,
               timeout: float = PUBLISH_TIMEOUT_S) -> Published | None:
    """Remove a desk's own survey (an empty retained ``config`` on its topic), so the site's applies again.

    A kiosk keeps the survey in force until another arrives, so the site's survey is published
    again under a new version right after (every kiosk of the site gets the same survey with a
    higher number). Returns that republished survey, or None when the site has none (the desk
    then keeps running its last one).

    Raises:
        SurveyError: the desk has no survey of its own, or the broker refused or did not answer.
    """
    protocol.check_slug(site, "site")
    protocol.check_slug(device, "desk")
    current = latest(store, site)
    if device not in current:
        raise SurveyError("device", f"desk {device} has no survey of its own; it runs the site's")
    marker = next_version(store, site)
    topic = protocol.device_config_topic(site, device)
    with store.engine.begin() as conn:
        conn.execute(surveys.insert().values(version=marker, site=site, device=device, body="null",
                                             published_at=datetime.now(UTC), published_by=account))
        record(conn, account, "survey-removed", f"{site}/{device}",
               {"topic": topic, "removed_version": current[device].version})
        send_retained(broker, topic, b"", timeout=timeout)
    site_survey = current.get("")
    if site_survey is None:
        return None
    again = {k: v for k, v in site_survey.config.items() if k not in ("schema", "version")}
    return publish(store, broker, site, "", again, account, timeout=timeout)


def send_retained(broker: BrokerSettings, topic: str, payload: bytes, *, timeout: float) -> None:
    """Publish one retained QoS 1 message as central's MQTT user and wait for the broker's PUBACK.

    Raises:
        SurveyError: the broker cannot be reached, refused the user or the publish, or did not answer.
    """
    cond = threading.Condition()
    state: dict[str, Any] = {}
    client = make_client(f"deskpulse-central-survey-{uuid.uuid4().hex[:12]}", broker)

    def on_connect(client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        with cond:
            state["connack"] = reason
            cond.notify_all()

    def on_publish(client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with cond:
            state.setdefault("acks", {})[mid] = reason
            cond.notify_all()

    client.on_connect = on_connect
    client.on_publish = on_publish
    try:
        client.connect(broker.host, broker.port, keepalive=30)
    except OSError as exc:
        raise SurveyError("publish", f"cannot reach the broker {broker.url}: {exc}; nothing was published") from None
    client.loop_start()
    try:
        with cond:
            if not cond.wait_for(lambda: "connack" in state, timeout):
                raise SurveyError("publish", f"the broker {broker.url} did not answer within {timeout:g} s; "
                                             "nothing was published")
            if state["connack"].is_failure:
                raise SurveyError("publish", f"the broker {broker.url} refused central's user: {state['connack']}")
        info = client.publish(topic, payload, qos=1, retain=True)
        with cond:
            if not cond.wait_for(lambda: info.mid in state.get("acks", {}), timeout):
                raise SurveyError("publish", f"the broker {broker.url} did not acknowledge {topic} within "
                                             f"{timeout:g} s")
            reason = state["acks"][info.mid]
        if reason.is_failure:
            raise SurveyError("publish", f"the broker refused central's publish on {topic}: {reason} (does central's "
                                         "MQTT user may write configs? docs/security.md)")
    finally:
        client.disconnect()
        client.loop_stop()
