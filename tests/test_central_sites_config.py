"""Central's [sites] and [dashboard] tables: good files load, wrong values fail naming file and key."""

from __future__ import annotations

from datetime import time

import pytest

from central import config
from sync.errors import ConfigError

TOKEN = "k3Jq9-tv-token-for-the-lobby-0001"


def test_sites_desks_hours_and_tokens_load() -> None:
    c = config.from_dict({
        "sites": {"akl": {"name": "Auckland", "timezone": "Pacific/Auckland",
                          "hours": {"default": "08:00-20:00", "sat": "09:00-13:30", "sun": "closed"},
                          "desks": {"desk-1": {"name": "Luggage 1", "feed": "delayed", "delay_min": 30},
                                    "desk-2": {"feed": "aggregated"}}}},
        "dashboard": {"min_answers": 10, "include_flagged": True,
                      "tv": {"lobby": {"token": TOKEN, "site": "akl", "device": "desk-1"}}},
    }, source="central.toml")
    akl = c.site("akl")
    assert (akl.name, akl.tz.key) == ("Auckland", "Pacific/Auckland")
    assert akl.hours[0] == (time(8), time(20)) and akl.hours[5] == (time(9), time(13, 30)) and akl.hours[6] is None
    assert akl.is_open(5, time(13, 29)) and not akl.is_open(5, time(13, 30)) and not akl.is_open(6, time(12))
    assert akl.desk("desk-1").feed == "delayed" and akl.desk("desk-1").delay_min == 30
    assert akl.desk("desk-2").feed == "aggregated" and akl.desk("desk-2").name == "desk-2"
    assert akl.desk("unknown").feed == "live"
    assert (c.dashboard.min_answers, c.dashboard.include_flagged) == (10, True)
    tv = c.dashboard.display_token(TOKEN)
    assert tv is not None and (tv.name, tv.site, tv.device) == ("lobby", "akl", "desk-1")
    assert c.dashboard.display_token(TOKEN[:-1] + "2") is None
    assert TOKEN not in repr(c)  # a secret stays out of logs


def test_an_unknown_site_gets_defaults() -> None:
    other = config.from_dict({}).site("somewhere")
    assert (other.name, other.timezone) == ("somewhere", "UTC")
    assert all(other.is_open(d, time(3)) for d in range(7)) and other.is_open(0, time(23, 59, 59))


@pytest.mark.parametrize(("data", "message"), [
    ({"sites": {"a": {"timezone": "Berlin"}}}, "sites.a.timezone is not a known time zone: 'Berlin' "
                                                "(did you mean Europe/Berlin?)"),
    ({"sites": {"a": {"hours": {"mon": "9-17"}}}}, 'sites.a.hours.mon must look like "08:00-18:00"'),
    ({"sites": {"a": {"hours": {"mon": "25:00-26:00"}}}}, "is not a time of day"),
    ({"sites": {"a": {"hours": {"mon": "18:00-02:00"}}}}, "closes before it opens"),
    ({"sites": {"a": {"hours": {"monday": "08:00-18:00"}}}}, "unknown key sites.a.hours.monday"),
    ({"sites": {"A B": {}}}, "sites.A B: a site slug"),
    ({"sites": {"a": {"desks": {"d": {"feed": "hidden"}}}}}, "sites.a.desks.d.feed must be one of live, delayed"),
    ({"sites": {"a": {"desks": {"d": {"feed": "delayed", "delay_min": 0}}}}}, "delay_min must be at least 1"),
    ({"sites": {"a": {"colour": "red"}}}, "unknown key sites.a.colour"),
    ({"dashboard": {"min_answers": 0}}, "dashboard.min_answers must be between 1"),
    ({"dashboard": {"accounts": {"ann": "hunter2"}}}, "dashboard.accounts.ann must be an argon2 hash"),
    ({"dashboard": {"tv": {"t": {"token": "short", "site": "a"}}}}, "dashboard.tv.t.token must be at least 24"),
    ({"dashboard": {"tv": {"t": {"token": TOKEN}}}}, "dashboard.tv.t.site must name the site"),
    ({"dashboard": {"tv": {"t": {"token": TOKEN, "site": "a"}, "u": {"token": TOKEN, "site": "a"}}}},
     "dashboard.tv.u.token is used by another TV"),
])
def test_wrong_values_fail_with_file_and_key(data, message) -> None:
    with pytest.raises(ConfigError) as err:
        config.from_dict(data, source="central.toml")
    assert str(err.value).startswith("central.toml: ")
    assert message in str(err.value)
