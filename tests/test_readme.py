"""The README stays true: its config reference is the one the code generates."""

from pathlib import Path

from dlw.reference import config_reference

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_config_reference_is_current():
    text = README.read_text(encoding="utf-8")
    start = text.index("<!-- config-reference:start -->\n") + len("<!-- config-reference:start -->\n")
    end = text.index("<!-- config-reference:end -->")
    assert text[start:end] == config_reference(), "regenerate it with `dlw schema --markdown`"


def test_readme_names_the_test_command_that_ci_runs():
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "\npytest\n" in README.read_text(encoding="utf-8")
    assert "\npytest\n" in ci
