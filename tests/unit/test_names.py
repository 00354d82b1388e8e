import random

import pytest

from waka.controller._config_vars import check_config_name, check_config_size
from waka.controller._errors import InvalidInput
from waka.controller._names import APP_NAME, check_app_name, random_app_name


@pytest.mark.parametrize("name", ["hello", "my-app-2", "a1", "x" * 30])
def test_valid_app_names(name):
    assert check_app_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "a", "Hello", "1app", "-app", "my_app", "x" * 31, "app.", "héllo"]
)
def test_invalid_app_names_are_refused_with_the_rule(name):
    with pytest.raises(InvalidInput, match="lowercase letters, digits and dashes"):
        check_app_name(name)


def test_random_app_names_follow_the_rule():
    rng = random.Random(7)
    names = {random_app_name(rng) for _ in range(200)}
    assert all(APP_NAME.match(n) for n in names)
    assert len(names) > 190


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "cannot be empty"),
        ("MY-VAR", "only letters, digits and underscores"),
        ("1ABC", "cannot start with a digit"),
        ("__X", "cannot start with '__'"),
        ("WAKA_TOKEN", "reserved for the platform"),
        ("waka_x", "reserved for the platform"),
    ],
)
def test_each_config_name_rule_has_its_own_message(name, fragment):
    with pytest.raises(InvalidInput, match=fragment):
        check_config_name(name)


def test_config_size_limit_is_32_kb():
    check_config_size({"A": "x" * (32 * 1024 - 1)})
    with pytest.raises(InvalidInput, match="at most 32768 bytes"):
        check_config_size({"A": "x" * (32 * 1024)})
