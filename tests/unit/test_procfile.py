import pytest

from waka.agent._procfile import ProcfileError, parse_procfile, parse_release_yaml


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("web: gunicorn app:app\n", {"web": "gunicorn app:app"}),
        ("web: a\nworker: b --flag=1\n", {"web": "a", "worker": "b --flag=1"}),
        ("# comment\n\nweb:   spaced out  \n", {"web": "spaced out"}),
        ("web: echo a:b:c\n", {"web": "echo a:b:c"}),
        ("release: ./migrate\nweb_2-x: y\n", {"release": "./migrate", "web_2-x": "y"}),
        ("", {}),
    ],
)
def test_procfile_lines_become_process_types(text, expected):
    assert parse_procfile(text) == expected


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("web: a\nthis line has no colon\n", 2, "expected `name: command`"),
        ("web a b\n", 1, "expected `name: command`"),
        ("we b: x\n", 1, "invalid process type"),
        ("web.1: x\n", 1, "invalid process type"),
        ("web:\n", 1, "has no command"),
        ("web: a\n\nweb: b\n", 3, "defined twice"),
    ],
)
def test_malformed_procfile_line_is_an_error_with_its_number(text, line, fragment):
    with pytest.raises(ProcfileError) as caught:
        parse_procfile(text)
    assert caught.value.line_number == line
    assert f"line {line}" in str(caught.value)
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("--- {}\n", {}),
        ("---\ndefault_process_types:\n  web: gunicorn app:app\n", {"web": "gunicorn app:app"}),
        (
            "---\naddons: []\ndefault_process_types:\n  web: 'npm start'\n  worker: \"x y\"\n",
            {"web": "npm start", "worker": "x y"},
        ),
        ("---\nconfig_vars:\n  LANG: C\n", {}),
    ],
)
def test_release_yaml_default_process_types(text, expected):
    assert parse_release_yaml(text) == expected


def test_release_yaml_with_a_broken_entry_is_refused():
    with pytest.raises(ValueError, match="line 3"):
        parse_release_yaml("---\ndefault_process_types:\n  not a mapping entry\n")
