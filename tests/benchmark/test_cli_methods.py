import json

from click.testing import CliRunner

from benchmark.cli import main
from sie_models import list_methods, method_defaults


def test_methods_lists_every_method_with_its_defaults():
    result = CliRunner().invoke(main, ["methods"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:2] == ["method", "action"]
    assert [line.split()[0] for line in lines[1:]] == list_methods()
    sie = next(line for line in lines if line.startswith("sie "))
    assert "256+256" in sie and "inv 1024-1024-1024, equi 1024-1024-1024" in sie and "equi_factor=0.45" in sie


def test_methods_name_shows_one_method_as_json():
    result = CliRunner().invoke(main, ["methods", "sie-rotcolor"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["defaults"] == method_defaults("sie-rotcolor")
    assert info["action"] == "rotation+color (6)" and info["has_predictor"] is True


def test_unknown_method_is_one_clear_line():
    result = CliRunner().invoke(main, ["methods", "sie2"])
    assert result.exit_code == 1
    assert "unknown method 'sie2'; valid methods: vicreg, simclr, sie" in result.output
