"""``advisor report``: markdown and JSON from real runs, PNG plots beside the report and linked from it,
comparisons, bad input, and names from the user's script rendered as text, never as markup."""

import html
import json
import re

import pytest
from markdown_it import MarkdownIt

from advisor.cli import main
from advisor.report.escape import code, plain
from advisor.report.markdown import table
from conftest import (FINDINGS, WEIRD_FILE, WEIRD_NAME, copy_recorded_run, no_advisor_traceback, run_advisor,
                      with_findings)

PNG = b"\x89PNG\r\n\x1a\n"


def rendered_text(markdown: str) -> tuple[str, str]:
    """The HTML GitHub-flavoured markdown renders to, and its text with the tags stripped."""
    page = MarkdownIt("gfm-like").render(markdown)
    return page, html.unescape(re.sub(r"<[^>]+>", "", page))


@pytest.fixture(scope="session")
def recorded(tmp_path_factory):
    return copy_recorded_run(tmp_path_factory.mktemp("report"))


def test_markdown_report_with_plots(recorded, tmp_path, capsys):
    out = tmp_path / "out" / "cnn.md"
    assert main(["report", str(recorded), "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    text = out.read_text()
    for heading in ("# advisor report: `tiny_cnn_train.py`", "## Environment", "## Summary",
                    "## Where a step goes", "## Hot ops", "## Memory", "## Findings", "## Recommendations",
                    "## Collectors"):
        assert heading in text
    assert "| torch | 2.13" in text and "No findings recorded." in text
    # recorded before advisor measured peaks: no roof, no bound, and no roofline plot
    assert "| `aten::convolution_backward` | 90.00 | 70.1% | 8 | 3.7 | - |  | `8x16x32x32, 8x16x32x32, 16x16x3x3` | " \
           "`tests/scripts/tiny_cnn_train.py:20` |" in text  # names as code, readable as text
    for plot in ("breakdown", "memory", "gains"):
        assert f"](<cnn-{plot}.png>)" in text
        assert (out.parent / f"cnn-{plot}.png").read_bytes().startswith(PNG)
    assert not (out.parent / "cnn-roofline.png").exists() and "**Roofline**" not in text
    assert "```python\nmodel = model.to(memory_format=torch.channels_last)" in text
    assert re.search(r"\| `channels_last` \| [\d.]+x \| [\d.]+x ±\d+% \|", text)  # estimated, measured, spread


def test_plots_of_a_report_named_with_spaces_and_parentheses(recorded, tmp_path):
    from markdown_it import MarkdownIt

    out = tmp_path / "my report (v1).md"
    assert main(["report", str(recorded), "-o", str(out)]) == 0
    html = MarkdownIt("gfm-like").render(out.read_text())
    for plot in ("breakdown", "memory", "gains"):
        assert f'src="my%20report%20(v1)-{plot}.png"' in html
        assert (tmp_path / f"my report (v1)-{plot}.png").is_file()


def test_json_report(recorded, tmp_path):
    out = tmp_path / "r.json"
    assert main(["report", str(recorded), "-o", str(out)]) == 0  # the format follows the suffix
    data = json.loads(out.read_text())
    assert data["steps"]["count"] == 4 and data["recommendations"] and data["run_dir"] == str(recorded)


def test_comparison(recorded, weird_run, tmp_path):
    out = tmp_path / "cmp.md"
    assert main(["report", "--compare", str(recorded), str(weird_run), "-o", str(out)]) == 0
    text = out.read_text()
    assert "# advisor comparison" in text and "B takes" in text and "## Hot ops that moved the most" in text
    assert (tmp_path / "cmp-breakdown.png").read_bytes().startswith(PNG)
    assert main(["report", "--compare", str(recorded), str(weird_run), "--format", "json", "-o",
                 str(tmp_path / "cmp.json")]) == 0
    data = json.loads((tmp_path / "cmp.json").read_text())
    assert data["step_ms"]["ratio"] > 0 and data["hot_ops"]


def test_user_names_render_as_text(weird_run, tmp_path):
    out = tmp_path / "weird.md"
    assert main(["report", str(weird_run), "-o", str(out)]) == 0
    page, text = rendered_text(out.read_text())
    assert "<script" not in page and "<b>" not in page and "<em>bold" not in page
    assert f"{WEIRD_NAME}Backward" in text  # the autograd op, whole, as text
    assert f"{WEIRD_FILE}:" in text  # the call sites in the script
    assert text.split("Target: ")[1].splitlines()[0].endswith(f"/{WEIRD_FILE}")


def test_findings_in_the_report(tmp_path):
    out = tmp_path / "f.md"
    assert main(["report", str(with_findings(tmp_path)), "-o", str(out)]) == 0
    _, text = rendered_text(out.read_text())
    assert f"{FINDINGS[0]['title']} (61.0% at stake)\n{FINDINGS[0]['evidence']}" in text


#: names and sentences that markdown would read as markup, were they not escaped
MARKUP = [WEIRD_NAME, WEIRD_FILE, "a\\|b", "a\\", "\\*x\\*", "`a``b`", "``", "1. x", "2) y", "# h", "- a", "+ b",
          "> q", "===", "---", "x_y _z_ __d__", "~~s~~ ~t~", "&amp; &#60; <!-- c --> <br>", "[l](u) ![i](u)", "[r]: u",
          "[l] [s][l]", "***", "two  lines\n of it", "<i>a</i>", "| a | b |"]


@pytest.mark.parametrize("write", [code, plain])
@pytest.mark.parametrize("name", MARKUP)
def test_names_and_text_render_as_written(write, name):
    """In a table cell, a list item, a paragraph and a heading, a name (as code) or a sentence (as plain text)
    renders as exactly its text, whitespace aside, and as nothing but advisor's own markup (and, in a
    sentence, the renderer's links on what reads as an address, ``name.py`` here, which show it as written)."""
    written = " ".join(name.split())
    doc = "\n\n".join([table(["h"], [[write(name)]]), f"- **x**: {write(name)}", write(name), f"### {write(name)} 1%"])
    page, _ = rendered_text(doc)
    assert set(re.findall(r"<(\w+)", page)) <= {"table", "thead", "tbody", "tr", "th", "td", "ul", "li", "strong",
                                                 "p", "h3", *(["code"] if write is code else ["a"])}
    for href, label in re.findall(r'<a href="([^"]*)">([^<]*)</a>', page):
        assert href == f"http://{label}"
    blocks = re.findall(r"<td>(.*?)</td>|<li>(.*?)</li>|<p>(.*?)</p>|<h3>(.*?)</h3>", page)
    shown = [html.unescape(re.sub(r"<[^>]+>", "", inner)) for groups in blocks for inner in groups if inner]
    assert shown == [written, f"x: {written}", written, f"{written} 1%"]


def test_names_are_code_and_text_is_escaped_only_where_it_would_be_markup():
    assert code("aten::convolution_backward") == "`aten::convolution_backward`"
    assert code("a`b") == "``a`b``" and code("`a") == "`` `a ``" and code("") == ""
    assert plain("batch 32 -> 64 (x2), channels_last: 1.5x; see torch.compile") == \
           "batch 32 -> 64 (x2), channels_last: 1.5x; see torch.compile"
    assert plain("- a *b* <i> [c](d) [8, 3]") == "\\- a \\*b\\* &lt;i> \\[c](d) [8, 3]"


@pytest.mark.parametrize("case", ["missing run", "not a run", "unwritable output"])
def test_bad_input(case, recorded, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    args = {"missing run": ["report", tmp_path / "nope"], "not a run": ["report", tmp_path],
            "unwritable output": ["report", recorded, "-o", blocker / "r.md"]}[case]
    proc = run_advisor(*args)
    assert proc.returncode == (13 if case == "unwritable output" else 10)
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("advisor: error:")
    assert no_advisor_traceback(proc.stderr)
