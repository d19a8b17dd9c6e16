"""Kiosk screens drawn with pygame.

Screens are functions of a small view model (:mod:`display.view`) that the
kiosk hands in; this package knows nothing of the flow, the outbox or MQTT.
Layout is computed in millimetres from the real surface size and the panel's
physical size, and the whole screen can be rotated in code.
"""
