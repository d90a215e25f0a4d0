"""``hhhlab demo`` from the command line: stages chosen by flag, the report's path printed,
bad settings named before any work. (The full stage set on a tiny model: test_report_html.)"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from hhhlab.cli import app
from hhhlab.errors import HHHLabError

TINY = "tiny:llama,layers=2,hidden=64,heads=4,kv_heads=2"


def test_demo_cli_writes_the_report_and_prints_its_path(tmp_path):
    out = tmp_path / "r.html"
    args = ["demo", "--model", TINY, "--dtype", "float32", "--stages", "sanity", "--output", str(out),
            "--workdir", str(tmp_path / "w"), "--no-progress"]
    res = CliRunner().invoke(app, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert res.output.strip().splitlines()[-1] == str(out.resolve())
    html = out.read_text()
    assert 'id="sanity" data-status="ok"' in html and 'id="evals" data-status="no-data"' in html
    res = CliRunner().invoke(app, args, catch_exceptions=False)  # a rerun reuses the stage
    assert "sanity    reused" in res.output


@pytest.mark.parametrize("args, match", [(["--stages", "sanity,bogus"], "unknown stage 'bogus'"),
                                         (["--eval-items", "0"], "eval_items"),
                                         (["--dtype", "int8"], "int8")])
def test_bad_demo_settings_are_named(tmp_path, args, match):
    with pytest.raises(HHHLabError, match=match):
        CliRunner().invoke(app, ["demo", "--model", TINY, *args, "--workdir", str(tmp_path)],
                           catch_exceptions=False, standalone_mode=False)
    assert not (tmp_path / "sanity").exists()  # nothing ran
