"""The Dockerfile frontend: directives, continuations, heredocs, stages, words and variables."""

import pytest

from services.build import dockerfile as df
from services.common.errors import InvalidArgument


def test_stages_meta_args_and_names():
    f = df.parse("ARG BASE=busybox\nFROM $BASE AS Build\nRUN make\nFROM scratch\nCOPY --from=build /a /a\n")
    assert [a.args for a in f.meta_args] == ["BASE=busybox"]
    assert [(s.index, s.name, s.base) for s in f.stages] == [(0, "build", "$BASE"), (1, "", "scratch")]
    assert f.stage("BUILD") is f.stages[0] and f.stage("1") is f.stages[1]
    copy = f.stages[1].instructions[0]
    assert copy.keyword == "COPY" and copy.flag("from") == "build" and copy.args == "/a /a"


def test_continuations_skip_comments_and_blank_lines_and_keep_the_first_line():
    f = df.parse("FROM busybox\n\n# c\nRUN echo a \\\n  # inside\n\n  b\nCMD x\n")
    run, cmd = f.stages[0].instructions
    assert run.args == "echo a   b" and run.line == 4
    assert cmd.line == 8


def test_escape_directive_and_syntax_directive():
    f = df.parse("# escape=`\n# syntax=docker/dockerfile:1.4\nFROM busybox\nRUN dir c:\\ `\n  x\n")
    assert f.escape == "`" and f.syntax == "docker/dockerfile:1.4"
    assert f.stages[0].instructions[0].args == "dir c:\\   x"
    with pytest.raises(InvalidArgument, match="Dockerfile:1: .*own Dockerfile frontend"):
        df.parse("# syntax=example.com/other-frontend\nFROM busybox\n")


def test_heredocs_are_read_to_their_terminator():
    f = df.parse("FROM busybox\nRUN <<EOF\necho one\necho two\nEOF\nCOPY <<-'X' /f\n\thello $A\n\tX\nCMD y\n")
    run, copy, cmd = f.stages[0].instructions
    assert run.heredocs == (df.Heredoc("EOF", "echo one\necho two\n", False),)
    assert copy.heredocs == (df.Heredoc("X", "hello $A\n", True),)
    assert cmd.keyword == "CMD" and cmd.line == 9


@pytest.mark.parametrize("text, line, message", [
    ("FROM busybox\nFOO bar\n", 2, "unknown instruction: FOO"),
    ("RUN x\n", 1, "before the first FROM"),
    ("FROM busybox\nCOPY --bogus=1 a b\n", 2, "unknown flag for COPY: --bogus"),
    ("FROM busybox\nRUN <<EOF\nnever ends\n", 2, "heredoc EOF is not terminated"),
    ("FROM a AS x\nFROM b AS x\n", 2, "duplicate stage name"),
])
def test_errors_name_the_line(text, line, message):
    with pytest.raises(InvalidArgument, match=f"Dockerfile:{line}: .*{message}"):
        df.parse(text)


def test_no_from_is_refused():
    with pytest.raises(InvalidArgument, match="no FROM"):
        df.parse("# only a comment\n")


def test_words_quotes_and_substitution():
    env = {"A": "1", "E": ""}
    assert df.split_words('a "b c" \'d $A\' $A${A}x', env=env) == ["a", "b c", "d $A", "11x"]
    assert df.expand("${E:-dflt}/${A:+set}/${U-unset}/\\$A", env) == "dflt/set/unset/$A"
    with pytest.raises(InvalidArgument, match="missing"):
        df.expand("${A", env, line=3)


def test_exec_form_and_key_values():
    ins = df.parse('FROM b\nCMD ["a", "b c"]\nENV K=v Q="x y" \\\n  R=$K\nENV OLD form value\n').stages[0].instructions
    assert ins[0].json_args() == ["a", "b c"]
    assert df.key_values(ins[1], "\\", {"K": "v0"}) == [("K", "v"), ("Q", "x y"), ("R", "v0")]
    assert df.key_values(ins[2], "\\", {}) == [("OLD", "form value")]
