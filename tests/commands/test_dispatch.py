"""paramscope.commands: the command is the first word only, and every command is wired the same way."""

from __future__ import annotations

import importlib
import json

import pytest

from paramscope.commands import COMMANDS, USAGE_LIMIT, build_parser, with_command

from ._run import run, safetensors


@pytest.mark.parametrize(("argv", "parsed"), [
    ([], ["inspect"]),
    (["model.safetensors"], ["inspect", "model.safetensors"]),
    (["--format", "json", "diff"], ["inspect", "--format", "json", "diff"]),  # a command only as first word
    (["./diff"], ["inspect", "./diff"]),
    (["--", "memory"], ["inspect", "--", "memory"]),
    (["diff", "a", "b"], ["diff", "a", "b"]),
    (["memory", "a"], ["memory", "a"]),
    (["inspect", "diff"], ["inspect", "diff"]),
    (["--help"], ["--help"]),
    (["--version"], ["--version"]),
])
def test_the_command_is_the_first_word_only(argv, parsed):
    assert with_command(argv) == parsed


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_registers_its_run(name):
    module = importlib.import_module(f"paramscope.commands.{name}")
    argv = {"diff": [name, "a", "b"], "scan": [name, "a"]}.get(name, [name])
    args = build_parser().parse_args(argv)
    assert args.func is module.run
    assert args.command == name and args.debug is False
    assert all(hasattr(args, dest) for dest in args.reads)


def test_files_named_like_commands_are_read_as_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    safetensors(tmp_path / "diff", {"w": (3, 5)})
    safetensors(tmp_path / "memory", {"w": (7,)})
    for argv, total in ((["./diff"], 15), (["inspect", "diff"], 15), (["./memory"], 7), (["inspect", "memory"], 7)):
        code, out, err = run(*argv, "--format", "json")
        assert (code, err, json.loads(out)["total"]) == (0, "", total), argv
    # as the first word, the name is the command: diff wants two sources
    assert run("diff") == (2, "", "paramscope: error: the following arguments are required: A, B "
                                  "(see 'paramscope diff --help')\n")


def test_help_says_how_to_read_a_file_named_like_a_command():
    code, out, err = run("--help")
    assert (code, err) == (0, "")
    assert "'paramscope ./diff'" in out and "'paramscope inspect diff'" in out
    for name in COMMANDS:
        assert f"\n    {name} " in out  # each command listed with its one-line help


@pytest.mark.parametrize("argv", [["--help"], ["inspect", "--help"], ["diff", "-h"], ["memory", "--help"],
                                  ["--version"], ["diff", "--version"]])
def test_help_and_version_go_to_the_given_stdout(argv, capsys):
    code, out, err = run(*argv)
    assert (code, err) == (0, "")
    assert out.startswith("usage: paramscope") or out.startswith("paramscope ")
    assert capsys.readouterr() == ("", "")  # nothing reached the process's own streams


@pytest.mark.parametrize(("argv", "line"), [
    (["--depth", "-1"], "argument --depth: must be 0 or more, got -1 (see 'paramscope inspect --help')"),
    (["--nope"], "unrecognized arguments: --nope (see 'paramscope inspect --help')"),
    (["memory", "--format", "html"],
     "argument -f/--format: invalid choice: 'html' (choose from 'tree', 'table', 'markdown', 'json', 'csv') "
     "(see 'paramscope memory --help')"),
    (["diff", "a", "b", "--format", "yaml"],
     "argument -f/--format: invalid choice: 'yaml' (choose from 'text', 'json', 'markdown') "
     "(see 'paramscope diff --help')"),
    (["--args", "[" * 100_000],
     "argument --args: not valid JSON: maximum recursion depth exceeded while decoding a JSON array from a "
     "unicode string (see 'paramscope inspect --help')"),
])
def test_usage_errors_are_one_line_on_the_given_stderr(argv, line, capsys):
    assert run(*argv) == (2, "", f"paramscope: error: {line}\n")
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize(("argv", "name", "prog"), [
    ([""], "SOURCE", "inspect"), (["memory", ""], "SOURCE", "memory"), (["diff", "", "b"], "A", "diff"),
    (["diff", "a", ""], "B", "diff"),
])
def test_an_empty_source_is_bad_usage_not_the_current_directory(argv, name, prog, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    safetensors(tmp_path / "model.safetensors", {"w": (2,)})  # what '' used to read: the current directory
    assert run(*argv) == (2, "", f"paramscope: error: argument {name}: empty; give a path, a spec or a repository "
                                 f"(see 'paramscope {prog} --help')\n")


def test_a_huge_argument_makes_a_bounded_usage_line():
    code, out, err = run("--format", "x" * 100_000)
    assert (code, out, err.count("\n")) == (2, "", 1)
    assert err.startswith("paramscope: error: argument -f/--format: invalid choice: 'xxx")
    assert "xxx...xxx" in err and err.endswith("'html') (see 'paramscope inspect --help')\n")  # the middle is cut
    assert len(err) == len("paramscope: error: ") + USAGE_LIMIT + len(" (see 'paramscope inspect --help')\n")


def test_a_hostile_command_line_is_clean_under_the_limits(tmp_path):
    from ..hostile._limits import assert_clean, run_cli

    safetensors(tmp_path / "diff", {"w": (4, 4)})
    assert "16" in assert_clean(run_cli("./diff", "-f", "csv", cwd=tmp_path), expect=0).stdout
    for argv in (["--args", "[" * 100_000], ["--kwargs", "{\"a\": " * 20_000], ["--args", "[1" + "0" * 5000 + "]"],
                 ["diff"], ["memory", "--zero", "3", "--fsdp"], ["--zero", "3"], ["--memory", "--by", "type"]):
        result = assert_clean(run_cli(*argv), expect=2)
        assert result.stderr.startswith("paramscope: error: ") and len(result.stderr) < 1200


@pytest.mark.parametrize("argv", [
    ["m.safetensors"], ["m.safetensors", "--format=json", "-o", "out.json", "--depth", "2", "--by", "dtype"],
    ["--", "diff"], ["inspect", "--", "x"], ["m.safetensors", "--memory", "--context", "8", "--optimizer", "adam"],
    ["memory", "m", "--seq", "128", "--debug"], ["diff", "a", "b", "--format", "json"], ["scan", "a", "b"],
    ["m.safetensors", "-fjson", "--top", "3", "--no-color", "--args", "[1]", "--input-shape", "1,3"], [],
])
def test_a_command_parsed_alone_is_what_the_top_level_parser_makes_of_it(argv):
    from paramscope.commands import parse

    alone = parse(argv)
    whole = build_parser().parse_args(with_command(argv))  # argparse's route: the command's subparser
    assert vars(alone) == vars(whole)
    assert alone.command == with_command(argv)[0]
