"""A remote survey configuration, turned into the kiosk's flow settings and texts.

The sender validates and keeps the configuration (:mod:`sync.survey`); this
module maps it onto what the kiosk runs: the scale, the follow-up, timings,
languages, and the texts central sent (question, follow-up question, reason
labels), which take the place of the built-in ones where given. Languages the
kiosk has no translation for are left out (its own screens could not be shown).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from device.flow import FlowSettings
from display import texts

#: (text key, language) -> text central sent.
CustomTexts = dict[tuple[str, str], str]


def apply(base: FlowSettings, config: dict[str, Any]) -> tuple[FlowSettings, CustomTexts]:
    """Flow settings and custom texts for a validated remote ``config``."""
    languages = tuple(lang for lang in config.get("languages", base.languages) if lang in texts.LANGUAGES)
    languages = languages or base.languages
    default = config.get("default_lang", base.default_lang)
    if default not in languages:
        default = languages[0]
    if "reasons" in config:
        reasons = tuple(r["key"] for r in config["reasons"])
    elif "reason_preset" in config:
        reasons = texts.PRESETS[config["reason_preset"]]
    else:
        reasons = base.reasons
    settings = replace(
        base,
        scale=config["scale"],
        default_lang=default,
        languages=languages,
        thank_you_s=config.get("thank_you_s", base.thank_you_s),
        repeat_interval_s=config.get("repeat_interval_s", base.repeat_interval_s),
        follow_up_ratings=frozenset(config.get("followup_ratings", base.follow_up_ratings)),
        reasons=reasons,
        follow_up_s=config.get("followup_timeout_s", base.follow_up_s),
    )
    custom: CustomTexts = {}
    for lang, text in config.get("question", {}).items():
        custom[("question", lang)] = text
    for lang, text in config.get("followup_question", {}).items():
        custom[("follow_up", lang)] = text
    for reason in config.get("reasons", []):
        labels = reason["label"]
        for lang in languages:
            # A label in the customer's language, else English, else any: never a bare key.
            custom[(f"reason_{reason['key']}", lang)] = labels.get(lang) or labels.get("en") or next(
                iter(labels.values()))
    return settings, custom
