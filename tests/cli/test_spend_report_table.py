"""spend-report's table: a labelled total, the terminal's width, and `--json`."""

from __future__ import annotations

import json

from tests.cli.conftest import walletd
from tests.report.conftest import Books


def _history(books: Books) -> None:
    books.pay("alpha", "a1", 3000)
    books.pay("beta", "b1", 5000)
    books.pay("beta", "b2", 9000)  # over beta's 0.008 daily: refused


def test_the_ungrouped_table_has_one_row_labelled_total(books: Books) -> None:
    _history(books)
    proc = walletd("spend-report", "--db-url", books.url)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if "0.008000" in line]
    assert len(rows) == 1, proc.stdout  # not the body and the total twice
    assert "TOTAL" in rows[0]


def test_the_grouped_table_keeps_its_rows_and_the_total(books: Books) -> None:
    _history(books)
    proc = walletd("spend-report", "--db-url", books.url, "--group-by", "client")
    lines = proc.stdout.splitlines()
    assert any("alpha" in line and "0.003000" in line for line in lines), proc.stdout
    assert any("beta" in line and "0.005000" in line for line in lines), proc.stdout
    assert any("TOTAL" in line and "0.008000" in line for line in lines), proc.stdout


def test_the_table_fits_the_terminal_width(books: Books) -> None:
    _history(books)
    for columns in ("80", "100"):
        proc = walletd("spend-report", "--db-url", books.url, "--group-by", "client",
                       COLUMNS=columns)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        widths = [len(line) for line in proc.stdout.splitlines()]
        assert max(widths) <= int(columns), proc.stdout
        # figures are never cut: every amount is still printed whole
        for figure in ("0.003000 (1)", "0.005000 (1)", "0.008000 (2)", "0.009000 (1)"):
            assert figure in proc.stdout, proc.stdout
    wide = walletd("spend-report", "--db-url", books.url, "--group-by", "client", COLUMNS="220")
    assert len(wide.stdout.splitlines()) < len(proc.stdout.splitlines())  # one row per client


def test_json_flag_is_format_json(books: Books) -> None:
    _history(books)
    flag = walletd("spend-report", "--db-url", books.url, "--json")
    fmt = walletd("spend-report", "--db-url", books.url, "--format", "json")
    assert flag.returncode == 0, flag.stderr
    doc, same = json.loads(flag.stdout), json.loads(fmt.stdout)
    doc.pop("generated_at")
    same.pop("generated_at")
    assert doc == same
    clash = walletd("spend-report", "--db-url", books.url, "--json", "--format", "csv")
    assert clash.returncode == 2
