"""`3die train --option NAME=VALUE` with a value of the wrong type or out of range: exit status 1, one
`Error:` line naming the option, the value and what is expected, and no run folder written."""

import pytest
from click.testing import CliRunner

from benchmark.cli import main
from benchmark.pipeline import BenchmarkConfig, run_benchmark
from benchmark.train import ConfigError

TINY = ["--preset", "tiny", "--image-size", "16", "--batch-size", "4", "--epochs", "1", "--no-progress"]

#: (method, --option, the part of the error line after "method 'NAME': option ").
BAD_OPTIONS = [
    ("sie", "equi_factor=abc", 'equi_factor="abc" is not valid; expected a number from 0 to 1e+06'),
    ("sie", "projector=[1,2]", "projector=[1, 2] is not valid; expected a projector spec"),
    ("sie", "sim_coeff=null", "sim_coeff=null is not valid; expected a number from 0 to 1e+06"),
    ("sen", "sigma=0", "sigma=0 is not valid; expected a number from 1e-06 to 1e+06"),
    ("sie", "predictor_variance=maybe", 'predictor_variance="maybe" is not valid; expected true or false'),
    ("simclr", "temperature=0", "temperature=0 is not valid; expected a number from 1e-06 to 1e+06"),
    ("vicreg", "cov_coeff=NaN", "cov_coeff=NaN is not valid; expected a number from 0 to 1e+06"),
    ("sie-mlp", "predictor_layers=1.5", "predictor_layers=1.5 is not valid; expected an integer >= 1"),
]


def _train(method, data, out, *extra):
    command = ["train", "--method", method, "--data", str(data), "--out", str(out), *TINY, *extra]
    return CliRunner().invoke(main, command)


@pytest.mark.parametrize(("method", "option", "message"), BAD_OPTIONS)
def test_a_bad_option_value_exits_with_one_error_line_and_writes_nothing(
    synthetic_dataset, tmp_path, method, option, message
):
    run = tmp_path / "run"
    result = _train(method, synthetic_dataset.root, run, "--option", option)
    assert result.exit_code == 1, result.output
    (line,) = result.output.splitlines()
    assert line.startswith(f"Error: method '{method}': option {message}"), line
    assert not (run / "config.json").exists()
    assert not run.exists()


def test_a_bad_option_in_an_existing_run_folder_leaves_it_as_it_was(synthetic_dataset, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("kept\n")
    result = _train("sie", synthetic_dataset.root, run, "--option", "equi_factor=abc")
    assert result.exit_code == 1 and result.output.startswith("Error: method 'sie': option equi_factor")
    assert sorted(path.name for path in run.iterdir()) == ["notes.txt"]


def test_good_option_values_of_every_type_train(synthetic_dataset, tmp_path):
    options = ["equi_factor=1", "std_coeff=2.5", "predictor_variance=false", "projector=32-32", "stem=small"]
    result = _train(
        "sie", synthetic_dataset.root, tmp_path / "run", *[f"--option={item}" for item in options]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "config.json").exists()


def test_the_benchmark_checks_method_options_before_rendering(tmp_path):
    config = BenchmarkConfig(
        method="sen", preset="tiny", out=tmp_path / "bench", train_options={"method_options": {"sigma": 0}}
    )
    with pytest.raises(ConfigError, match=r"^method 'sen': option sigma=0 is not valid; expected"):
        run_benchmark(config, progress=False)
    assert not (tmp_path / "bench").exists()


@pytest.mark.parametrize(
    ("option", "source"),
    [("num_classes=3", "the dataset (its number of classes)"), ("width=8", "--width")],
)
def test_an_option_training_sets_itself_names_where_it_comes_from(
    synthetic_dataset, tmp_path, option, source
):
    result = _train("sie", synthetic_dataset.root, tmp_path / "run", "--option", option)
    assert result.exit_code == 1, result.output
    (line,) = result.output.splitlines()
    name = option.split("=")[0]
    assert line == f"Error: --option {name}: {name} comes from {source}; remove it from --option"
    assert not (tmp_path / "run").exists(), "refused before the run folder is made"
    unknown = _train("sie", synthetic_dataset.root, tmp_path / "run", "--option", "foo=1")
    listed = unknown.output.split("valid options: ")[1].strip().split(", ")
    assert "projector" in listed and not {"image_size", "width", "num_classes"} & set(listed)
