"""The `>>>` examples of docs/python.md are real: doctest runs them (in a
temporary directory, since they write files) and compares the output."""
import doctest
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_python_md_examples(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = ROOT / "docs" / "python.md"
    # A code fence ends an example's expected output, as a blank line does.
    text = "\n".join("" if line.startswith("```") else line for line in path.read_text().splitlines())
    test = doctest.DocTestParser().get_doctest(text, {}, path.name, str(path), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    result = runner.run(test)
    assert result.attempted >= 20, f"only {result.attempted} examples found in {path}"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {path} differ (printed above)"
