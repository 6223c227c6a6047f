""".dockerignore by docker's rules: parents, **, ! exceptions, the last match decides."""

from berth_docker import dockerignore


def _matcher(text):
    return dockerignore.Matcher(dockerignore.parse(text))


def test_patterns_match_paths_and_everything_under_a_directory():
    m = _matcher("# comment\n\nignored\n*.log\n/build/\n")
    assert m.excluded("ignored") and m.excluded("ignored/sub/file")
    assert m.excluded("a.log") and not m.excluded("dir/a.log")
    assert m.excluded("build/x") and not m.excluded("src/build")


def test_double_star_matches_any_number_of_directories():
    m = _matcher("**/tmp\ndocs/**/*.md\n")
    assert m.excluded("tmp") and m.excluded("a/b/tmp/x")
    assert m.excluded("docs/a.md") and m.excluded("docs/x/y/a.md") and not m.excluded("docs/a.txt")


def test_exceptions_and_spaces_as_docker_trims_them():
    m = _matcher(" ignored \n!ignored/keep\n! ignored/also  \n*.txt\n!important.txt\n")
    assert m.excluded("ignored/file")
    assert not m.excluded("ignored/keep") and not m.excluded("ignored/also")
    assert m.excluded("a.txt") and not m.excluded("important.txt")
    # The last pattern that matches decides.
    assert _matcher("!a\na\n").excluded("a")


def test_cleaned_patterns():
    m = _matcher("./a//b/../c\n#x\n")
    assert m.excluded("a/c") and not m.excluded("#x")
