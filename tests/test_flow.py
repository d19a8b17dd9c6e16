"""The customer flow as a pure state machine."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from device.flow import Flow, FlowSettings, Save, Saved, SaveFailed, Tap, Tick


def test_tap_highlights_then_saves_then_thanks_then_returns() -> None:
    flow = Flow(FlowSettings(thank_you_s=3))
    effect = flow.handle(Tap(4), now=10.0)
    assert effect == Save(rating=4, scale=5, lang="en", source="touch", flags=())
    assert (flow.state.screen, flow.state.pressed) == ("rating", 4)
    assert flow.handle(Tap(2), now=10.1) is None  # no second answer while saving
    flow.handle(Saved(), now=10.2)
    assert flow.state.screen == "thanks" and flow.next_deadline() == 13.2
    flow.handle(Tick(), now=13.1)
    assert flow.state.screen == "thanks"
    flow.handle(Tick(), now=13.2)
    assert (flow.state.screen, flow.state.pressed) == ("rating", None)


def test_a_failed_save_says_sorry_and_recovers() -> None:
    flow = Flow(FlowSettings(sorry_s=5))
    flow.handle(Tap(1), now=0)
    flow.handle(SaveFailed("disk full"), now=0.1)
    assert flow.state.screen == "sorry"
    flow.handle(Tick(), now=5.1)
    assert flow.state.screen == "rating"


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


inputs = st.one_of(
    st.builds(Tap, st.integers(-1, 7), st.sampled_from(["touch", "button"])),
    st.just(Saved()), st.builds(SaveFailed, st.just("x")), st.just(Tick()),
)


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(st.tuples(inputs, st.floats(0, 10)), max_size=60))
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
            assert isinstance(event, Tap) and not saving and before.screen == "rating"
            assert 1 <= effect.rating <= 5
            saving = True
        if isinstance(event, (Saved, SaveFailed)) and saving:
            saving = False
        if flow.state.screen == "thanks":
            assert before.screen == "thanks" or (isinstance(event, Saved) and before.pressed)
        if flow.state.until is not None:
            assert flow.state.until <= now + 5
    flow.handle(Tick(), now + 100)
    assert flow.state.screen == "rating"
