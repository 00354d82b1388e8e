import random

import pytest

from waka.controller._addon_names import (
    ADDON_NAME,
    AddonState,
    alternate_attachment,
    check_attachment_name,
    default_attachment,
    managed_state,
    random_addon_name,
)
from waka.controller._errors import InvalidInput
from waka.v1.common_pb2 import DynoState


@pytest.mark.parametrize(
    ("given", "name"),
    [("DATABASE", "DATABASE"), ("cache", "CACHE"), ("MAIN_URL", "MAIN"), ("A1_B", "A1_B")],
)
def test_attachment_names_are_upper_case_without_the_url_suffix(given, name):
    assert check_attachment_name(given) == name


@pytest.mark.parametrize(
    ("given", "rule"),
    [
        ("bad name", "letters, digits and underscores"),
        ("1ST", "starting with a letter"),
        ("", "starting with a letter"),
        ("X" * 31, "up to 30"),
        ("WAKA_DB", "reserved for the platform"),
    ],
)
def test_invalid_attachment_names_are_refused_with_the_rule(given, rule):
    with pytest.raises(InvalidInput, match=rule):
        check_attachment_name(given)


def test_random_addon_names_are_service_adjective_number_and_valid():
    rng = random.Random(3)
    names = {random_addon_name("postgresql", rng) for _ in range(200)}
    assert all(ADDON_NAME.match(n) and n.startswith("postgresql-") for n in names)
    assert all(n.rsplit("-", 1)[1].isdigit() and len(n.rsplit("-", 1)[1]) == 5 for n in names)
    assert len(names) > 190


@pytest.mark.parametrize(
    ("taken", "chosen"),
    [
        (set(), "DATABASE"),
        ({"REDIS"}, "DATABASE"),
        ({"DATABASE"}, "POSTGRESQL_SHINY"),
    ],
)
def test_the_default_attachment_name_steps_aside_when_taken(taken, chosen):
    assert default_attachment("DATABASE", "postgresql-shiny-12345", taken) == chosen


def test_when_both_default_names_are_taken_the_user_must_choose():
    with pytest.raises(InvalidInput, match="choose a name with --as"):
        default_attachment("DATABASE", "postgresql-shiny-1", {"DATABASE", "POSTGRESQL_SHINY"})


def test_alternate_attachment_is_a_valid_attachment_name():
    assert check_attachment_name(alternate_attachment("redis-odd-10203")) == "REDIS_ODD"


UP, CRASHED, STARTING = (
    DynoState.DYNO_STATE_UP,
    DynoState.DYNO_STATE_CRASHED,
    DynoState.DYNO_STATE_STARTING,
)


@pytest.mark.parametrize(
    ("node", "node_state", "dyno", "state", "says"),
    [
        ("vm", "ready", UP, "available", ""),
        ("vm", "ready", STARTING, "starting", ""),
        ("vm", "ready", None, "starting", ""),
        ("vm", "ready", CRASHED, "crashed", "boom"),
        ("vm", "cordoned", UP, "available", ""),
        ("vm", "suspect", UP, "unavailable", "not answering"),
        ("vm", "down", None, "unavailable", "its node vm is down; its data stays there"),
        ("vm", None, None, "unavailable", "its node vm is down"),
        (None, None, None, "unavailable", "its node was removed"),
    ],
)
def test_a_managed_addon_is_only_available_on_its_own_node(node, node_state, dyno, state, says):
    result = managed_state(node, node_state, dyno, "boom")
    assert isinstance(result, AddonState)
    assert result.state == state
    assert says in result.message
