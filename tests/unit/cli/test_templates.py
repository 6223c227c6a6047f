"""docker's Go-template language (--format, inspect -f): one test per feature."""

from __future__ import annotations

import pytest

from berth_cli import format as fmt
from berth_cli.templates import Struct, TemplateError, parse

DATA = Struct({"Name": "web", "Id": "abc", "N": 3, "Ratio": 1.5, "Up": True, "Empty": "",
               "Labels": {"b": "2", "a": "1"}, "List": ["x", "y"], "None": None,
               "State": {"Status": "running", "Pid": 12, "Health": None},
               "Label": lambda key: {"k": "v"}.get(key, "")}, type_name="*formatter.ContainerContext")


def render(source: str, data=DATA, **kw) -> str:
    return parse(source).render(data, **kw)


def test_text_and_field_access():
    assert render("name={{.Name}} id={{.Id}}") == "name=web id=abc"


def test_nested_fields_and_map_keys():
    assert render("{{.State.Status}}/{{.State.Pid}}/{{.Labels.a}}") == "running/12/1"


def test_missing_struct_field_is_an_error_naming_docker_type():
    with pytest.raises(TemplateError, match=r"can't evaluate field Bogus in type \*formatter.ContainerContext"):
        render("{{.Bogus}}")


def test_missing_map_key_is_no_value_or_an_error_for_inspect():
    assert render("{{.Labels.zz}}") == "<no value>"
    with pytest.raises(TemplateError, match='map has no entry for key "zz"'):
        render("{{.Labels.zz}}", missing_key_error=True)


def test_dot_and_dollar():
    assert render("{{with .State}}{{.Status}} {{$.Name}}{{end}}") == "running web"


def test_method_with_argument():
    assert render('{{.Label "k"}}|{{.Label "other"}}') == "v|"


def test_index():
    assert render('{{index .Labels "b"}} {{index .List 1}}') == "2 y"
    with pytest.raises(TemplateError, match="index out of range"):
        render("{{index .List 5}}")


def test_json_is_go_marshal():
    # Maps sorted by key, struct fields in order, compact, HTML characters escaped, methods left out.
    assert render("{{json .Labels}}") == '{"a":"1","b":"2"}'
    assert render('{{json "<a&b>"}}') == '"\\u003ca\\u0026b\\u003e"'
    assert render("{{json .List}} {{json .None}} {{json .Up}}") == '["x","y"] null true'
    assert render("{{json .}}").startswith('{"Name":"web","Id":"abc"') and '"Label"' not in render("{{json .}}")


def test_join_split():
    assert render('{{join .List ", "}}') == "x, y"
    assert render('{{join (split "a:b:c" ":") "-"}}') == "a-b-c"


def test_upper_lower_title():
    assert render('{{upper .Name}} {{lower "ABC"}} {{title "hello big world"}}') == "WEB abc Hello Big World"


def test_len():
    assert render("{{len .List}} {{len .Labels}} {{len .Name}}") == "2 2 3"


def test_printf_verbs():
    assert render('{{printf "%s:%d:%q:%v:%t:%5s|%-4d|%x" .Name .N .Name .List .Up "ab" 7 255}}') == \
        'web:3:"web":[x y]:true:   ab|7   |ff'
    assert render('{{printf "%.2f" .Ratio}}') == "1.50"


def test_println_and_print():
    assert render("{{println .Name .N}}") == "web 3\n"
    assert render("{{print .Name .N}}") == "web3"


def test_pipelines():
    assert render('{{.Name | upper}} {{.State.Pid | printf "%04d"}}') == "WEB 0012"


def test_if_else_if_else():
    t = "{{if eq .N 1}}one{{else if eq .N 3}}three{{else}}other{{end}}"
    assert render(t) == "three"
    assert render("{{if .Empty}}yes{{else}}no{{end}} {{if not .Up}}down{{else}}up{{end}}") == "no up"
    assert render("{{if and .Up .N}}both{{end}}{{if or .Empty .None}}x{{else}}neither{{end}}") == "bothneither"


def test_comparisons():
    assert render("{{lt 1 2}} {{le 2 2}} {{gt 1 2}} {{ge 3 2}} {{ne .Name \"db\"}} {{eq .Name \"db\" \"web\"}}") == \
        "true true false true true true"


def test_range_over_lists_maps_with_variables_and_else():
    assert render("{{range .List}}[{{.}}]{{end}}") == "[x][y]"
    assert render("{{range $i, $e := .List}}{{$i}}={{$e}} {{end}}") == "0=x 1=y "
    assert render("{{range $k, $v := .Labels}}{{$k}}:{{$v}};{{end}}") == "a:1;b:2;"
    assert render("{{range .None}}x{{else}}nothing{{end}}") == "nothing"


def test_variables():
    assert render("{{$n := .Name}}{{$n}}-{{$n = \"db\"}}{{$n}}") == "web-db"


def test_trim_markers():
    assert render("a  {{- .Name -}}  b") == "awebb"


def test_literals():
    assert render('{{"str"}} {{`raw\\n`}} {{42}} {{true}} {{1.5}}') == "str raw\\n 42 true 1.5"


def test_values_print_as_go_does():
    assert render("{{.List}} {{.Labels}} {{.None}} {{.Up}}") == "[x y] map[a:1 b:2] <nil> true"


@pytest.mark.parametrize("source", ["{{.Name", "{{if .Up}}x", "{{end}}", "{{else}}", "{{(.Name}}",
                                    "{{nosuchfunc .Name}}"])
def test_bad_templates_are_template_errors(source):
    with pytest.raises(TemplateError):
        render(source)


def test_table_prints_docker_headers_and_aligns():
    rows = [Struct({"ID": "abc", "Names": "web", "Label": lambda k: "v"}),
            Struct({"ID": "abcdef123456", "Names": "db", "Label": lambda k: ""})]
    out = fmt.formatted('table {{.ID}}\\t{{.Names}}\\t{{.Label "k"}}', rows,
                        {"ID": "CONTAINER ID", "Names": "NAMES", "Label": "LABEL"})
    assert out.splitlines() == ["CONTAINER ID   NAMES     LABEL", "abc            web       v", "abcdef123456   db        "]


def test_json_and_plain_formats_per_row():
    rows = [Struct({"ID": "a"}), Struct({"ID": "b"})]
    assert fmt.formatted("json", rows, {}) == '{"ID":"a"}\n{"ID":"b"}\n'
    assert fmt.formatted("{{.ID}}", rows, {}) == "a\nb\n"
    assert fmt.formatted("", rows, {}) is None and fmt.formatted("table", rows, {}) is None
