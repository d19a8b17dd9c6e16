"""Development tools: never shipped, never imported by ``device``, ``display``, ``sync`` or ``central``.

- :mod:`dev.broker` — a private Mosquitto on a free loopback port (the demo, the tests, the benches);
- :mod:`dev.demo` — ``make demo``: broker, central and a kiosk together;
- :mod:`dev.dashboard_screenshots` — ``make screenshots``: the dashboard over a seeded demo store.
"""
