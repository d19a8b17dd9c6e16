"""Customer-facing text, per language. Every word a customer reads comes from here."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "question": "How was our service today?",
        "anonymous": "Answers are anonymous",
        "thanks": "Thank you!",
        "thanks_body": "Your answer helps us improve.",
        "sorry": "Sorry, something went wrong",
        "sorry_body": "Your answer could not be saved. Please tell our staff.",
        "label_5_1": "Very poor", "label_5_2": "Poor", "label_5_3": "Okay",
        "label_5_4": "Good", "label_5_5": "Very good",
        "label_4_1": "Very poor", "label_4_2": "Poor", "label_4_3": "Good", "label_4_4": "Very good",
        "label_3_1": "Poor", "label_3_2": "Okay", "label_3_3": "Good",
    },
}


def text(lang: str, key: str) -> str:
    """The text for ``key`` in ``lang``, falling back to English."""
    return TEXTS.get(lang, TEXTS["en"]).get(key) or TEXTS["en"][key]


def labels(lang: str, scale: int) -> tuple[str, ...]:
    """Face labels for a scale, worst first."""
    return tuple(text(lang, f"label_{scale}_{r}") for r in range(1, scale + 1))
