"""Test helpers shared by the suite and by later issues: broker, kiosk, pins."""
