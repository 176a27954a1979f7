"""``--help`` of every command: each option says what it takes and its default, descriptions are whole
sentences, and ``sa4depth bench --help`` shows the bench parser's own options."""

import argparse

import pytest

from sa4depth.apps import bench
from sa4depth.apps.cli import build_parser, main


def parsers() -> dict[str, argparse.ArgumentParser]:
    """Every parser a user can ask for help: ``sa4depth``, each subcommand, and the bench parser."""
    top = build_parser()
    found = {"sa4depth": top}
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update({f"sa4depth {name}": p for name, p in action.choices.items()})
    found["sa4depth bench"] = bench.build_parser()  # cli's "bench" only hands its arguments over
    return found


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        a
        for a in parser._actions
        if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)
        and a.help != argparse.SUPPRESS
    ]


def shown_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help text as ``--help`` prints it (``%(default)s`` and the like filled in)."""
    return parser._get_formatter()._expand_help(action) if action.help else ""


CASES = [(name, a) for name, p in parsers().items() for a in options(p)]


@pytest.mark.parametrize("command, action", CASES, ids=[f"{n} {a.dest}" for n, a in CASES])
def test_every_option_says_what_it_takes_and_its_default(command, action):
    parser = parsers()[command]
    text = shown_help(parser, action)
    assert text.strip(), f"{command} {action.option_strings or action.dest}: no help text"
    takes_value = action.option_strings and action.nargs != 0  # not a flag, not a positional
    if takes_value and not action.required:
        assert "default" in text, f"{command} {action.option_strings}: help does not give the default"
        if isinstance(action.default, int | float | str) and action.default != argparse.SUPPRESS:
            assert str(action.default) in text, f"{command} {action.option_strings}: default not shown"


def test_every_command_is_listed_with_a_summary_and_descriptions_are_whole_sentences():
    top = build_parser()
    (sub,) = [a for a in top._actions if isinstance(a, argparse._SubParsersAction)]
    assert {c.dest for c in sub._choices_actions} == set(sub.choices)
    assert all(c.help and len(c.help) > 20 for c in sub._choices_actions)
    description = bench.build_parser().description
    # It once stopped after "(with a per-component split),", the first line of a two-line sentence.
    assert description.endswith("resolution and batch size.") and "\n" not in description


def test_bench_help_through_the_main_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: sa4depth bench") and "--repeats" in out and "(default: 3)" in out


def test_export_offers_the_weights_format_the_exporter_knows():
    from sa4depth.apps.export import FORMATS

    export = parsers()["sa4depth export"]
    (fmt,) = [a for a in export._actions if a.dest == "format"]
    assert tuple(fmt.choices) == FORMATS
