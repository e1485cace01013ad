"""``keel sample``: write a seeded, credit-shaped table of any size (see :mod:`keel.sample`).

The folder of ``--out`` is checked before the first row is generated, like every place Keel
writes; the table is written in chunks to a temporary file renamed into place at the end, so an
error or an interrupt leaves no partial file. Progress goes to standard error, one line per
tenth of a large table; the result to standard output (one JSON line with ``--json``).
"""

from __future__ import annotations

from collections.abc import Callable

import click

DEBUG = "keel.debug"  # the key keel.cli's --debug uses in click's ctx.meta (as keel serve)
#: tables of at least this many rows print their progress (one line per tenth)
PROGRESS_ROWS = 500_000


def _remember_debug(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    ctx.meta[DEBUG] = ctx.meta.get(DEBUG, False) or value
    return value


def _size(count: int) -> str:
    """A byte count for people: ``2.5 MiB``."""
    value = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{count} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def progress_printer() -> Callable[[int, int], None]:
    """``progress(written, rows)``: one line on stderr per new tenth of a large table."""
    from keel.cli import say

    reported = 0

    def progress(written: int, total: int) -> None:
        nonlocal reported
        tenth = written * 10 // total
        if total >= PROGRESS_ROWS and tenth > reported:
            reported = tenth
            say(f"  sample      {written:,} of {total:,} rows ({written * 100 // total}%)",
                err=True)

    return progress


@click.command("sample")
@click.option("--rows", type=int, required=True, metavar="N", help="Rows to generate (1 or more).")
@click.option("--out", "out", required=True, metavar="FILE",
              help="File to write; its suffix names the format: .csv, .csv.gz or .parquet.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the generator: the same seed and rows give the same bytes.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON line.")
@click.option("--debug", is_flag=True, help="Show tracebacks.", callback=_remember_debug,
              is_eager=True)
def sample(rows: int, out: str, seed: int, overwrite: bool, as_json: bool, debug: bool) -> None:
    """Write a seeded, credit-shaped table (target Status: good/bad) of any size."""
    from keel.cli import check_writable_folder, echo_json, say
    from keel.errors import ParameterError
    from keel.sample import STAGE, check_output, check_rows, check_seed, write_sample

    if "://" in out:
        raise ParameterError(f"The --out of sample must be a local file path. Got {out!r}.",
                             stage=STAGE)
    check_rows(rows)
    check_seed(seed)
    path = check_output(out, overwrite)
    check_writable_folder(path.parent, "The folder of --out", STAGE)
    say(f"Sampling {rows:,} rows (seed {seed}) into {path}", err=True)
    result = write_sample(path, rows, seed, progress=progress_printer(), overwrite=overwrite)
    if as_json:
        echo_json(result.to_dict())
    else:
        say(f"Wrote {result.rows:,} rows ({result.format}, {_size(result.bytes)}) to "
            f"{result.path}")
