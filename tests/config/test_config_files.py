"""A config file YAML cannot use is one error naming the file (and the line): a tab, a
syntax error, an empty file, a top level that is not a mapping, a missing _BASE_."""
import pytest

from fewshot_det.config import ConfigError, load_cfg


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def _error(path):
    with pytest.raises(ConfigError) as info:
        load_cfg(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_tab_names_the_file_line_and_column(tmp_path):
    path = write(tmp_path, "x.yaml", "SOLVER:\n  MAX_ITER: 10\n\tBASE_LR: 0.1\n")
    assert _error(path).startswith(f"{path} line 3, column 1: YAML does not allow tabs for "
                                   f"indentation; use spaces")


def test_a_syntax_error_names_the_file_line_and_column(tmp_path):
    path = write(tmp_path, "x.yaml", "SOLVER:\n  STEPS: [100, 200\n  MAX_ITER: 10\n")
    message = _error(path)
    assert message.startswith(f"{path} line 3, column ") and "expected ',' or ']'" in message


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_an_empty_file_is_named(tmp_path, text):
    path = write(tmp_path, "x.yaml", text)
    assert _error(path) == (f"{path} is empty: a config file sets keys (KEY: value lines) or "
                            f"inherits them (_BASE_: other.yaml)")


@pytest.mark.parametrize("text, kind", [("- SOLVER\n- MODEL\n", "list"),
                                        ("just words\n", "str"), ("42\n", "int")])
def test_a_top_level_that_is_not_a_mapping_is_named(tmp_path, text, kind):
    path = write(tmp_path, "x.yaml", text)
    assert _error(path).startswith(f"{path}: the top level must be a mapping of keys (KEY: "
                                   f"value lines), got a {kind}")


def test_errors_in_a_base_file_name_the_base_file(tmp_path):
    base = write(tmp_path, "base.yaml", "MODEL:\n\tDEVICE: cpu\n")
    child = write(tmp_path, "child.yaml", "_BASE_: base.yaml\nSOLVER:\n  MAX_ITER: 10\n")
    assert _error(child).startswith(f"{base} line 2, column 1: YAML does not allow tabs")
    empty = write(tmp_path, "empty_base.yaml", "")
    child = write(tmp_path, "child2.yaml", "_BASE_: empty_base.yaml\n")
    assert _error(child).startswith(f"{empty} is empty")
    child = write(tmp_path, "child3.yaml", "_BASE_: no_such.yaml\n")
    assert _error(child) == f"{child}: _BASE_ file not found: {tmp_path / 'no_such.yaml'}"
