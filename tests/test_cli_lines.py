"""The `keel` command's error lines, exit statuses, preflight places and interrupt lines, in process.

The end-to-end catalogue of bad inputs is in tests/test_cli.py and real signals in
tests/test_interrupts.py; here the pieces are checked one by one, fast.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import keel.cli
from keel.cli import (
    EXIT_REJECTED,
    StoreState,
    check_writable_folder,
    interrupted_line,
    main,
    read_store_state,
)
from keel.errors import MAX_LINE, Interrupted, ParameterError, SourceError

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "credit.csv"


def run(tmp_path: Path, *extra: str) -> Result:
    return CliRunner().invoke(main, ["run", "--source", str(SAMPLE), "--target", "Status",
                                     "--store", str(tmp_path / "s"), "--work-dir",
                                     str(tmp_path / "w"), *extra])


def fails_with(exc: BaseException, monkeypatch: pytest.MonkeyPatch) -> None:
    def raise_it(options: dict) -> dict:
        raise exc

    monkeypatch.setattr(keel.cli, "pipeline_arguments", raise_it)


def only_line(result: Result) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# -- errors -------------------------------------------------------------------------------------
def test_a_bug_in_the_cli_is_one_bounded_escaped_unexpected_line(tmp_path, monkeypatch):
    fails_with(ValueError("boom \x1b[2J\r\n" + "x" * 5000 + " tail"), monkeypatch)
    result = run(tmp_path)
    assert result.exit_code == 1
    line = only_line(result)
    assert line.startswith("keel: error: [keel] unexpected ValueError: boom \\x1b[2J\\r\\nxxx")
    assert line.endswith("run again with --debug to see the traceback)")
    assert len(line) <= MAX_LINE and "\x1b" not in result.stderr


def test_debug_prints_the_traceback_escaped_then_the_line(tmp_path, monkeypatch):
    fails_with(ValueError("boom \x1b[2J"), monkeypatch)
    result = run(tmp_path, "--debug")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last):"
    assert "ValueError: boom \\x1b[2J" in result.stderr and "\x1b" not in result.stderr
    assert lines[-1].startswith("keel: error: [keel] unexpected ValueError: boom")
    assert lines[-1].endswith("the traceback is above)")


def test_a_long_keel_error_is_shortened_keeping_start_and_end(tmp_path, monkeypatch):
    fails_with(SourceError("The source '/data/t.csv' has " + "many " * 1000 + "problems"),
               monkeypatch)
    line = only_line(run(tmp_path))
    assert line.startswith("keel: error: [ingest] The source '/data/t.csv' has many")
    assert line.endswith("many problems") and "characters cut" in line
    assert len(line) <= MAX_LINE


def test_keyboard_interrupt_outside_a_stage_exits_130(tmp_path, monkeypatch):
    fails_with(KeyboardInterrupt(), monkeypatch)
    result = run(tmp_path)
    assert result.exit_code == 130
    assert only_line(result) == "keel: interrupted"


def test_fail_on_reject_is_a_cli_option_with_its_own_status(tmp_path):
    result = CliRunner().invoke(main, ["run", "--help"])
    assert "--fail-on-reject" in result.stdout and str(EXIT_REJECTED) in result.stdout
    assert EXIT_REJECTED == 3


# -- places checked before the first stage ------------------------------------------------------
def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("relative", ["", "store", "a/b/c/store"])
def test_a_writable_folder_passes_and_nothing_is_created(tmp_path, relative):
    (tmp_path / "keep").write_text("x")
    before = listing(tmp_path)
    check_writable_folder(tmp_path / relative, "The 'store' parameter", "publish")
    assert listing(tmp_path) == before


@pytest.mark.parametrize(("path", "reason"), [
    ("{tmp}/file", "{tmp}/file is a file"),
    ("{tmp}/file/below", "{tmp}/file/below cannot be created, as {tmp}/file is a file"),
    ("{tmp}/file/a/b", "{tmp}/file/a/b cannot be created, as {tmp}/file is a file"),
    ("/proc/keel-store", "/proc cannot be written"),
    ("/proc/keel/deeper", "/proc cannot be written"),
    ("{tmp}/" + "n" * 256, "is longer than the 255 bytes"),
    ("/dev/null", "/dev/null is not a folder"),
])
def test_a_place_keel_cannot_write_is_refused_naming_why(tmp_path, path, reason):
    (tmp_path / "file").write_text("x")
    before = listing(tmp_path)
    with pytest.raises(ParameterError) as caught:
        check_writable_folder(Path(path.replace("{tmp}", str(tmp_path))),
                              "The 'store' parameter", "publish")
    assert caught.value.stage == "publish"
    message = caught.value.args[0]
    assert message.startswith("The 'store' parameter must be a folder Keel can write to; ")
    assert reason.replace("{tmp}", str(tmp_path)) in message
    assert listing(tmp_path) == before


def test_a_missing_store_reads_as_empty_without_being_created(tmp_path):
    assert read_store_state(str(tmp_path / "none"), "credit") == StoreState(frozenset(), None)
    assert not (tmp_path / "none").exists()


# -- what an interrupted run says ---------------------------------------------------------------
def state(versions: set[int], production: int | None) -> StoreState:
    return StoreState(frozenset(versions), production)


@pytest.mark.parametrize(("before", "after", "line"), [
    (state({1, 2}, 2), state({1, 2}, 2), "nothing was registered"),
    (state(set(), None), state(set(), None), "nothing was registered"),
    (state({1, 2}, 2), state({1, 2, 3}, 2),
     "version 3 was registered but not promoted (production is still version 2)"),
    (state(set(), None), state({1}, None),
     "version 1 was registered but not promoted (no version is in production)"),
    (state({1, 2}, 2), state({1, 2, 3}, 3), "version 3 was registered and promoted before the "
                                            "interrupt"),
    (state(set(), None), state({1}, 1), "version 1 was registered and promoted before the "
                                        "interrupt"),
    # Another writer at the same time: say what happened, not what this run would have done.
    (state({1, 2}, 2), state({1, 2}, 1),
     "nothing was registered (production moved from version 2 to version 1)"),
    (state({1, 2}, 2), state({1, 2, 3, 4}, 2),
     "versions 3, 4 were registered but not promoted (production is still version 2)"),
    (state({1, 2}, 2), state({1, 2, 3, 4}, 4),
     "versions 3, 4 were registered and promoted (version 4) before the interrupt"),
    (state({1, 2}, 2), state({1, 2, 3}, 1),
     "version 3 was registered but not promoted (production moved from version 2 to version 1)"),
    (None, state({1, 2}, 2), "the store holds versions 1, 2, production is version 2"),
    (state({1}, 1), None, "the store could not be read to say what it holds; see `keel models "
                          "list`"),
])
def test_the_interrupted_line_says_what_the_store_now_holds(before, after, line):
    assert interrupted_line(before, after) == f"keel: interrupted: {line}"


def test_interrupted_is_raised_once_and_not_inside_a_shielded_section():
    from keel.local_run import _Interrupts

    interrupts = _Interrupts()
    with pytest.raises(Interrupted) as caught:
        interrupts.handle(signal.SIGTERM, None)
    assert caught.value.exit_status == 143
    interrupts.handle(signal.SIGINT, None)  # a second signal is ignored: cleanup goes on

    shielded = _Interrupts()
    done = []
    with pytest.raises(Interrupted) as caught, shielded.shielded():
        shielded.handle(signal.SIGINT, None)  # deferred...
        done.append("cleanup finished")
    assert done == ["cleanup finished"] and caught.value.exit_status == 130
