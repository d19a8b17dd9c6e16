"""dev.seed: a big store to try the dashboard at scale, looking like a year of collection."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa


def test_seeded_answers_were_received_when_given_so_a_starting_collector_raises_no_old_alerts(tmp_path) -> None:
    from central.alertrules import AnswerWatcher
    from central.config import from_dict
    from central.store import Store, events
    from dev.seed import seed, seed_config

    url = f"sqlite:///{tmp_path / 'seeded.sqlite3'}"
    config = from_dict({**seed_config(8), "database": {"url": url}}, source="<test>")
    with Store(url) as store:
        store.migrate()
        assert seed(store, config, total=4000, days=30) == 4000
        with store.engine.connect() as conn:
            differ = conn.execute(sa.select(sa.func.count()).where(events.c.received_at != events.c.ts_utc)).scalar()
            oldest = conn.execute(sa.select(sa.func.min(events.c.received_at))).scalar()
        assert differ == 0
        assert oldest is not None and (datetime.now(UTC) - oldest.replace(tzinfo=UTC)).days >= 25
        # A collector starting now looks again only at answers received in the last late_after_min:
        # none of the seed's (with every answer "just received" it raised hundreds of late alerts).
        assert AnswerWatcher(store, config).step() == []
