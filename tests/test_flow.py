"""The customer flow as a pure state machine: timers, transitions, rapid_repeat
flags, one Save per accepted tap. What needs the real kiosk (drawing, the outbox,
restarts) is test_kiosk_flow.py's."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from device.flow import (
    Back,
    ChooseLanguage,
    Flow,
    FlowSettings,
    OpenLanguages,
    Reason,
    Save,
    Saved,
    SaveFailed,
    Skip,
    Tap,
    Tick,
)

REASONS = ("wait_time", "friendliness", "expertise")


def test_tap_highlights_then_saves_then_thanks_then_returns() -> None:
    flow = Flow(FlowSettings(thank_you_s=3))
    effect = flow.handle(Tap(4), now=10.0)
    assert effect == Save(rating=4, scale=5, lang="en", source="touch", flags=())
    assert (flow.state.screen, flow.state.pressed) == ("attract", 4)
    assert flow.handle(Tap(2), now=10.1) is None  # no second answer while saving
    flow.handle(Saved(), now=10.2)
    assert flow.state.screen == "thanks" and flow.next_deadline() == 13.2
    flow.handle(Tick(), now=13.1)
    assert flow.state.screen == "thanks"
    flow.handle(Tick(), now=13.2)
    assert (flow.state.screen, flow.state.pressed) == ("attract", None)


def test_a_failed_save_says_sorry_and_recovers() -> None:
    flow = Flow(FlowSettings(sorry_s=5))
    flow.handle(Tap(1), now=0)
    flow.handle(SaveFailed("disk full"), now=0.1)
    assert flow.state.screen == "sorry"
    flow.handle(Tick(), now=5.1)
    assert flow.state.screen == "attract"


def test_repeats_inside_the_interval_are_flagged_not_dropped() -> None:
    flow = Flow(FlowSettings(thank_you_s=1, repeat_interval_s=5))
    flow.handle(Tap(5), 0.0)
    flow.handle(Saved(), 0.0)
    flow.handle(Tick(), 1.0)
    assert flow.handle(Tap(5), 2.0) == Save(5, 5, "en", "touch", ("rapid_repeat",))
    flow.handle(Saved(), 2.0)
    flow.handle(Tick(), 3.0)
    assert flow.handle(Tap(3), 9.0).flags == ()


def test_out_of_scale_ratings_are_ignored() -> None:
    flow = Flow(FlowSettings(scale=3))
    assert flow.handle(Tap(4), 0) is None and flow.handle(Tap(0), 0) is None


def follow_up_flow(**kw: object) -> Flow:
    return Flow(FlowSettings(reasons=REASONS, languages=("en", "de", "uk"), follow_up_s=20, **kw))  # type: ignore[arg-type]


def test_a_bad_rating_opens_the_follow_up_and_a_reason_is_saved_with_it() -> None:
    flow = follow_up_flow()
    assert flow.handle(Tap(2), 0.0) is None  # nothing to store yet: the reason may come
    assert (flow.state.screen, flow.state.pressed) == ("followup", 2)
    save = flow.handle(Reason("expertise"), 4.0)
    assert save == Save(2, 5, "en", "touch", (), ("expertise",))
    assert save.tapped_at == 0.0  # the answer's time is the rating's tap
    assert flow.state.reason == "expertise" and flow.state.saving
    flow.handle(Saved(), 4.1)
    assert flow.state.screen == "thanks"


def test_skip_saves_the_rating_alone() -> None:
    flow = follow_up_flow()
    flow.handle(Tap(1, "button"), 0.0)
    assert flow.handle(Skip(), 1.0) == Save(1, 5, "en", "button", (), ())


def test_a_follow_up_timeout_saves_the_rating_alone() -> None:
    flow = follow_up_flow()
    flow.handle(Tap(1), 100.0)
    assert flow.next_deadline() == 120.0
    assert flow.handle(Tick(), 119.9) is None
    assert flow.handle(Tick(), 120.0) == Save(1, 5, "en", "touch", (), ())
    assert flow.handle(Tick(), 200.0) is None  # once
    flow.handle(Saved(), 120.1)
    assert flow.state.screen == "thanks"


def test_good_ratings_do_not_ask_why_and_the_ratings_are_configurable() -> None:
    assert follow_up_flow().handle(Tap(5), 0) == Save(5, 5, "en", "touch", ())
    flow = follow_up_flow(follow_up_ratings=frozenset({3}))
    assert flow.handle(Tap(1), 0) is not None
    flow = follow_up_flow(follow_up_ratings=frozenset({3}))
    assert flow.handle(Tap(3), 0) is None and flow.state.screen == "followup"


def test_the_follow_up_ignores_everything_but_its_own_targets() -> None:
    flow = follow_up_flow()
    flow.handle(Tap(2), 0)
    for event in (Tap(5), OpenLanguages(), ChooseLanguage("de"), Reason("not-offered"), Saved()):
        assert flow.handle(event, 1) is None
        assert (flow.state.screen, flow.state.pressed, flow.state.saving) == ("followup", 2, False)


def test_a_flushed_follow_up_saves_the_held_rating() -> None:
    flow = follow_up_flow()
    assert flow.flush(0) is None
    flow.handle(Tap(2), 0)
    assert flow.flush(1) == Save(2, 5, "en", "touch", ())
    assert flow.flush(2) is None


def test_a_tap_on_the_attract_screen_counts() -> None:
    flow = follow_up_flow()
    assert flow.state.screen == "attract"
    assert flow.handle(Tap(4), 0) == Save(4, 5, "en", "touch", ())


def test_the_chosen_language_is_stored_and_the_default_returns_after_the_answer() -> None:
    flow = follow_up_flow(thank_you_s=3)
    flow.handle(OpenLanguages(), 0)
    assert flow.state.screen == "language"
    flow.handle(ChooseLanguage("uk"), 1)
    assert (flow.state.screen, flow.state.lang) == ("rating", "uk")
    assert flow.handle(Tap(4), 2).lang == "uk"
    flow.handle(Saved(), 2)
    assert flow.state.lang == "uk"  # the thank-you in the customer's language
    flow.handle(Tick(), 5)
    assert (flow.state.screen, flow.state.lang) == ("attract", "en")


def test_inactivity_returns_to_attract_in_the_default_language() -> None:
    flow = follow_up_flow(inactivity_s=30)
    flow.handle(OpenLanguages(), 0)
    flow.handle(Tick(), 29.9)
    assert flow.state.screen == "language"
    flow.handle(Tick(), 30)
    assert (flow.state.screen, flow.state.lang) == ("attract", "en")
    flow.handle(OpenLanguages(), 40)
    flow.handle(ChooseLanguage("de"), 41)
    flow.handle(Tick(), 71)
    assert (flow.state.screen, flow.state.lang) == ("attract", "en")


def test_an_unknown_language_is_ignored_and_one_language_has_no_selector() -> None:
    flow = follow_up_flow()
    flow.handle(OpenLanguages(), 0)
    flow.handle(ChooseLanguage("xx"), 1)
    assert (flow.state.screen, flow.state.lang) == ("language", "en")
    single = Flow(FlowSettings(languages=("en",)))
    single.handle(OpenLanguages(), 0)
    assert single.state.screen == "attract"


def test_a_button_press_on_the_thank_you_is_stored_as_a_repeat_not_dropped() -> None:
    flow = follow_up_flow(thank_you_s=3, repeat_interval_s=5)
    flow.handle(Tap(5, "button"), 0)
    flow.handle(Saved(), 0)
    assert flow.handle(Tap(3, "touch"), 1) is None  # no faces on the thank-you to touch
    assert flow.handle(Tap(4, "button"), 1) == Save(4, 5, "en", "button", ("rapid_repeat",))
    flow.handle(Saved(), 1)
    flow.handle(Tap(1, "button"), 2)
    assert flow.state.screen == "followup"  # the button's rating asks why on the screen
    assert flow.handle(Tap(5, "button"), 3) is None  # the held rating comes first


def test_test_mode_flags_answers_test() -> None:
    flow = Flow(FlowSettings(repeat_interval_s=0), test_mode=True)
    assert flow.handle(Tap(3), 0).flags == ("test",)


def test_change_answer_withdraws_the_held_rating_and_stores_nothing() -> None:
    flow = Flow(FlowSettings(reasons=REASONS, follow_up_s=10, repeat_interval_s=5, languages=("en", "de")))
    flow.handle(OpenLanguages(), 0.0)
    flow.handle(ChooseLanguage("de"), 0.5)
    flow.handle(Tap(1), 1.0)
    assert flow.state.screen == "followup" and flow.held() is not None
    assert flow.handle(Back(), 2.0) is None
    assert (flow.state.screen, flow.state.lang, flow.state.pressed) == ("rating", "de", None)
    assert flow.held() is None and flow.flush(2.5) is None  # nothing held, nothing to store at a stop
    assert flow.handle(Tap(4), 3.0) == Save(4, 5, "de", "touch", ())  # the right face: not a rapid repeat


def test_back_leaves_the_language_screen_for_where_the_customer_was() -> None:
    flow = Flow(FlowSettings(languages=("en", "de"), inactivity_s=30))
    flow.handle(OpenLanguages(), 0.0)
    flow.handle(Back(), 1.0)
    assert (flow.state.screen, flow.state.lang) == ("attract", "en")
    flow.handle(OpenLanguages(), 2.0)
    flow.handle(ChooseLanguage("de"), 3.0)
    flow.handle(OpenLanguages(), 4.0)
    flow.handle(Back(), 5.0)
    assert (flow.state.screen, flow.state.lang) == ("rating", "de") and flow.state.until == 35.0
    assert flow.handle(Back(), 6.0) is None and flow.state.screen == "rating"  # nothing to go back to


@given(wait=st.floats(0, 60), late=st.floats(0, 60), reason=st.sampled_from(REASONS))
def test_no_reason_tapped_after_the_timeout_is_attached_to_the_old_rating(wait: float, late: float,
                                                                           reason: str) -> None:
    flow = Flow(FlowSettings(reasons=REASONS, follow_up_s=10, thank_you_s=3))
    flow.handle(Tap(2), 0.0)
    timeout = flow.handle(Tick(), 10.0 + wait)
    assert timeout == Save(2, 5, "en", "touch", ())  # stored alone, the moment the time was up
    flow.handle(Saved(), 10.0 + wait)
    assert flow.handle(Reason(reason), 10.0 + wait + late) is None  # meets the thank-you or the faces
    assert flow.held() is None


inputs = st.one_of(
    st.builds(Tap, st.integers(-1, 7), st.sampled_from(["touch", "button"])),
    st.builds(Reason, st.sampled_from([*REASONS, "bogus"])), st.just(Skip()), st.just(OpenLanguages()),
    st.builds(ChooseLanguage, st.sampled_from(["en", "de", "uk", "xx"])),
    st.just(Tick()), st.just(Back()),
)


def withdraws(before, event) -> bool:
    """The specification of "change answer": Back on an open follow-up withdraws its rating."""
    return isinstance(event, Back) and before.screen == "followup" and not before.saving


def counts(before, event) -> bool:
    """The specification of an accepted rating: faces are on attract and rating; a
    physical button also counts on the language, thank-you and sorry screens; an open
    follow-up or a save in progress takes no new rating."""
    return (isinstance(event, Tap) and not before.saving and 1 <= event.rating <= 5
            and (before.screen in ("attract", "rating")
                 or (event.source == "button" and before.screen in ("language", "thanks", "sorry"))))


@settings(max_examples=400, deadline=None)
@given(steps=st.lists(st.tuples(inputs, st.floats(0, 40), st.booleans()), max_size=60),
       asked=st.frozensets(st.integers(1, 5)), repeat=st.floats(0, 10))
def test_every_accepted_tap_yields_exactly_one_save(steps: list, asked: frozenset, repeat: float) -> None:
    """Like the kiosk: each Save is answered (Saved or SaveFailed) before the next input.
    Whatever the inputs and timers, every face tap the flow accepted is saved exactly
    once, with its rating, language and source, flagged rapid_repeat exactly when it
    came within the interval of the previous accepted tap -- unless the customer
    withdrew it ("change answer"): then it is never saved and does not count as the
    previous tap."""
    flow = Flow(FlowSettings(scale=5, languages=("en", "de", "uk"), reasons=REASONS, follow_up_ratings=asked,
                             repeat_interval_s=repeat, thank_you_s=3, sorry_s=5, follow_up_s=20, inactivity_s=30))
    now = 0.0
    accepted: list[tuple[int, str, str, bool]] = []
    tapped_at: list[float] = []
    saves: list[Save] = []

    def run(effect: Save | None, ok: bool) -> None:
        if effect is not None:
            saves.append(effect)
            flow.handle(Saved() if ok else SaveFailed("disk"), now)

    for event, dt, ok in steps:
        now += dt
        before = flow.state
        if counts(before, event):
            accepted.append((event.rating, before.lang, event.source,
                             bool(tapped_at) and now - tapped_at[-1] < repeat))
            tapped_at.append(now)
        if withdraws(before, event):
            accepted.pop()
            tapped_at.pop()
        run(flow.handle(event, now), ok)
        assert not flow.state.saving  # every Save was answered
        if flow.state.until is not None:
            assert flow.state.until <= now + 30
    run(flow.handle(Tick(), now + 1000), True)  # a held rating times out ...
    run(flow.flush(now + 1000), True)  # ... (nothing left to flush)
    assert [(s.rating, s.lang, s.source, "rapid_repeat" in s.flags) for s in saves] == accepted
    assert all(len(s.reasons) <= 1 and set(s.reasons) <= set(REASONS) for s in saves)
    flow.handle(Tick(), now + 2000)
    assert (flow.state.screen, flow.state.lang) == ("attract", "en")


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.tuples(inputs, st.floats(0, 40)), max_size=40))
def test_no_save_is_lost_when_the_kiosk_stops_at_any_moment(steps: list) -> None:
    """Stopping (flush) at any point saves a rating held by the follow-up: the number of
    Saves equals the number of accepted ratings not withdrawn."""
    flow = Flow(FlowSettings(languages=("en", "de"), reasons=REASONS))
    now, taps, saves = 0.0, 0, 0
    for event, dt in steps:
        now += dt
        before = flow.state
        taps += counts(before, event) - withdraws(before, event)
        if flow.handle(event, now) is not None:
            saves += 1
            flow.handle(Saved(), now)
    saves += flow.flush(now) is not None
    assert saves == taps


old_inputs = st.one_of(
    st.builds(Tap, st.integers(-1, 7), st.sampled_from(["touch", "button"])),
    st.just(Saved()), st.builds(SaveFailed, st.just("x")), st.just(Tick()),
)


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(st.tuples(old_inputs, st.floats(0, 10)), max_size=60))
def test_every_tapped_rating_is_saved_exactly_once(steps: list) -> None:
    """Whatever happens, each Save corresponds to one accepted tap, the flow
    never stays stuck on a timed screen, and a Save always precedes its thanks."""
    flow = Flow(FlowSettings(scale=5, thank_you_s=3, sorry_s=5))
    now = 0.0
    saving = False
    for event, dt in steps:
        now += dt
        before = flow.state
        effect = flow.handle(event, now)
        if effect is not None:
            assert counts(before, event) and not saving
            assert 1 <= effect.rating <= 5
            saving = True
        if isinstance(event, (Saved, SaveFailed)) and saving:
            saving = False
        if flow.state.screen == "thanks":
            assert before.screen == "thanks" or (isinstance(event, Saved) and before.pressed)
        if flow.state.until is not None:
            assert flow.state.until <= now + 5
    flow.handle(Tick(), now + 100)
    assert flow.state.screen == "attract"
