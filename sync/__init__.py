"""Store-and-forward sync: the SQLite outbox, the MQTT protocol and the sender.

``sync.protocol`` is the one home of the wire protocol that the device and
central share: topic names, JSON Schemas and the strict codec.
"""
