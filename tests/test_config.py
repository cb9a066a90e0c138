"""The config: YAML validation, one-line errors naming the key, --set overrides, paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from dlw.config import Config
from dlw.spec import apply_overrides, json_schema, load_spec, parse_override, validate
from dlw.errors import ConfigError, DlwError

BASE = "data:\n  source: table.csv\n  target: label\n"


@pytest.fixture
def table(tmp_path) -> Path:
    path = tmp_path / "table.csv"
    path.write_text("x,label\n1,a\n2,b\n3,a\n", encoding="utf-8")
    return path


def write_yaml(folder: Path, text: str, name: str = "my.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(source, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        load_spec(source, **kwargs)
    message = str(info.value)
    assert "\n" not in message, "errors are one line"
    return message


# --- keys and values ----------------------------------------------------------------


def test_minimal_config_gets_every_default(tmp_path, table):
    config = load_spec(write_yaml(tmp_path, BASE))
    assert config.data.target == "label"
    assert config.data.source == str(table.resolve())
    assert config.name == "my"
    assert config.task == "auto"
    # Tables default to tabm: its batch size and epochs are planned from the train rows (issue 11).
    assert config.model.kind == "tabm" and config.train.epochs == "auto" and config.train.batch_size == "auto"
    assert config.model.hidden_units == [128, 128] and config.train.optimizer == "adamw"
    assert config.data.split.validation == 0.2 and config.data.split.test == 0.2
    assert config.train.early_stopping.patience == 20


def test_unknown_top_level_key_is_named_with_a_suggestion(tmp_path, table):
    path = write_yaml(tmp_path, BASE + "trian:\n  epochs: 3\n")
    message = config_error(path)
    assert str(path) in message
    assert "unknown key 'trian'" in message
    assert "did you mean 'train'?" in message


def test_unknown_nested_key_is_named_with_its_path_and_a_suggestion(tmp_path, table):
    message = config_error(write_yaml(tmp_path, BASE + "train:\n  epoch: 3\n"))
    assert "unknown key 'train.epoch'" in message
    assert "did you mean 'epochs'?" in message


def test_unknown_key_without_a_close_name_lists_the_known_keys(tmp_path, table):
    message = config_error(write_yaml(tmp_path, BASE + "model:\n  zzzzzz: 1\n"))
    assert "unknown key 'model.zzzzzz'" in message
    assert "hidden_layers" in message and "dropout" in message


def test_unknown_key_in_split_section_is_named(tmp_path, table):
    message = config_error(write_yaml(tmp_path, BASE + "  split:\n    sead: 3\n"))
    assert "'data.split.sead'" in message
    assert "'seed'" in message


def test_wrong_type_names_the_key_and_the_value(tmp_path, table):
    message = config_error(write_yaml(tmp_path, BASE + "train:\n  epochs: lots\n"))
    assert "'train.epochs'" in message
    assert "'lots'" in message
    assert "integer" in message


def test_list_expected_names_the_key(tmp_path, table):
    message = config_error(write_yaml(tmp_path, BASE + "model:\n  hidden_layers: 64\n"))
    assert "'model.hidden_layers'" in message
    assert "list" in message


def test_negative_epochs_is_refused(tmp_path, table):
    message = config_error(write_yaml(tmp_path, BASE + "train:\n  epochs: -5\n"))
    assert "'train.epochs'" in message
    assert "-5" in message


@pytest.mark.parametrize(
    "extra, key",
    [
        ("model:\n  hidden_layers: [64, 0]\n", "model.hidden_layers"),
        ("model:\n  dropout: 1.5\n", "model.dropout"),
        ("train:\n  learning_rate: 0\n", "train.learning_rate"),
        ("train:\n  batch_size: 0\n", "train.batch_size"),
        ("train:\n  optimizer: adamm\n", "train.optimizer"),
        ("task: classify\n", "task"),
        ("  split:\n    test: 1.2\n", "data.split.test"),
        ("  split:\n    order: sorted\n", "data.split.order"),
        ("train:\n  early_stopping:\n    patience: 0\n", "train.early_stopping.patience"),
    ],
)
def test_bad_values_name_their_key(tmp_path, table, extra, key):
    message = config_error(write_yaml(tmp_path, BASE + extra))
    assert f"'{key}'" in message


def test_early_stopping_true_means_defaults_and_false_turns_it_off(tmp_path, table):
    on = load_spec(write_yaml(tmp_path, BASE + "train:\n  early_stopping: true\n"))
    assert on.train.early_stopping.patience == 20
    off = load_spec(write_yaml(tmp_path, BASE + "train:\n  early_stopping: false\n", "off.yaml"))
    assert off.train.early_stopping is False


def test_malformed_yaml_names_the_file_and_line(tmp_path, table):
    text = BASE + "model:\n  dropout: 0.1\n  hidden_layers: [64, 32}\n  activation: relu\n"
    path = write_yaml(tmp_path, text)
    message = config_error(path)
    assert str(path) in message
    assert "malformed YAML at line 6" in message


def test_bad_indentation_names_the_line(tmp_path, table):
    path = write_yaml(tmp_path, "data:\n  source: table.csv\n  target: label\n train:\n  epochs: 3\n")
    message = config_error(path)
    assert "malformed YAML at line 4" in message


def test_empty_config_file(tmp_path):
    message = config_error(write_yaml(tmp_path, ""))
    assert "empty" in message and "dlw init" in message


def test_config_that_is_not_a_mapping(tmp_path):
    message = config_error(write_yaml(tmp_path, "- data\n- model\n"))
    assert "mapping" in message and "list" in message


def test_missing_source_is_named(tmp_path):
    message = config_error(write_yaml(tmp_path, "data:\n  target: label\n"))
    assert "missing key 'data.source'" in message


def test_missing_target_says_how_to_give_one(tmp_path, table):
    message = config_error(write_yaml(tmp_path, "data:\n  source: table.csv\n"))
    assert "--target" in message
    message = config_error(str(table))
    assert "--target" in message


def test_binary_config_file_is_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"\xff\xfe\x00\x01garbage\x80\x81")
    message = config_error(path)
    assert str(path) in message


def test_missing_config_file_is_named(tmp_path):
    path = tmp_path / "nowhere.yaml"
    message = config_error(path)
    assert str(path) in message and "not found" in message


def test_missing_data_file_is_named(tmp_path):
    path = tmp_path / "nowhere.csv"
    message = config_error(str(path), target="y")
    assert str(path) in message and "not found" in message


def test_unknown_source_lists_the_builtins():
    message = config_error("no_such_thing")
    assert "'no_such_thing'" in message
    for name in ("penguins", "iris", "wine", "breast_cancer", "diabetes"):
        assert name in message


def test_config_errors_are_dlw_errors():
    assert issubclass(ConfigError, DlwError)


# --- --set overrides -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, path, value",
    [
        ("train.epochs=50", ["train", "epochs"], 50),
        ("model.hidden_layers=[64,32]", ["model", "hidden_layers"], [64, 32]),
        ("model.hidden_layers=[128, 64, 16]", ["model", "hidden_layers"], [128, 64, 16]),
        ("train.early_stopping=false", ["train", "early_stopping"], False),
        ("train.learning_rate=0.01", ["train", "learning_rate"], 0.01),
        ("data.split.order=time:date", ["data", "split", "order"], "time:date"),
        ("data.types={zip: categorical}", ["data", "types"], {"zip": "categorical"}),
        ("name=my run", ["name"], "my run"),
        ("data.features=", ["data", "features"], None),
    ],
)
def test_parse_override(text, path, value):
    assert parse_override(text) == (path, value)


@pytest.mark.parametrize("text", ["train.epochs", "=5", "  =5"])
def test_override_without_key_or_value_is_refused(text):
    with pytest.raises(ConfigError) as info:
        parse_override(text)
    assert "KEY=VALUE" in str(info.value)


def test_override_with_invalid_yaml_value_is_refused():
    with pytest.raises(ConfigError) as info:
        parse_override("model.hidden_layers=[64,32")
    assert "model.hidden_layers" in str(info.value)
    assert "\n" not in str(info.value)


def test_apply_overrides_creates_sections_and_leaves_the_input_alone():
    raw = {"data": {"source": "x.csv"}, "train": {"epochs": 5}}
    result = apply_overrides(raw, ["train.epochs=7", "model.hidden_layers=[8]", "data.split.seed=3"])
    assert result["train"]["epochs"] == 7
    assert result["model"] == {"hidden_layers": [8]}
    assert result["data"] == {"source": "x.csv", "split": {"seed": 3}}
    assert raw == {"data": {"source": "x.csv"}, "train": {"epochs": 5}}


def test_override_into_a_value_is_refused():
    with pytest.raises(ConfigError) as info:
        apply_overrides({"train": {"epochs": 5}}, ["train.epochs.x=1"])
    assert "'train.epochs' is a value, not a section" in str(info.value)


def test_override_can_set_early_stopping_after_it_was_false():
    result = apply_overrides({"train": {"early_stopping": False}}, ["train.early_stopping.patience=3"])
    assert result["train"]["early_stopping"] == {"patience": 3}


def test_overrides_win_over_the_yaml_and_are_validated(tmp_path, table):
    path = write_yaml(tmp_path, BASE + "train:\n  epochs: 5\n")
    config = load_spec(path, overrides=["train.epochs=9", "model.hidden_layers=[16,8,4]", "train.early_stopping=false"])
    assert config.train.epochs == 9
    assert config.model.hidden_layers == [16, 8, 4]
    assert config.train.early_stopping is False
    with pytest.raises(ConfigError) as info:
        load_spec(path, overrides=["train.epochs=-1"])
    assert "(with --set)" in str(info.value) and "'train.epochs'" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_spec(path, overrides=["trian.epochs=1"])
    assert "unknown key 'trian'" in str(info.value) and "'train'" in str(info.value)


def test_target_argument_replaces_the_config_target(tmp_path, table):
    config = load_spec(write_yaml(tmp_path, BASE), target="x")
    assert config.data.target == "x"


def test_data_file_with_target_and_overrides(table):
    config = load_spec(str(table), target="label", overrides=["train.epochs=3"])
    assert config.data.source == str(table.resolve())
    assert config.data.target == "label"
    assert config.name == "table"
    assert config.train.epochs == 3


def test_builtin_name_needs_no_target():
    config = load_spec("penguins", overrides=["train.epochs=5"])
    assert config.data.source == "penguins"
    assert config.data.target == "species"
    assert config.name == "penguins"
    assert config.train.epochs == 5


def test_dict_config(table):
    config = load_spec({"data": {"source": str(table), "target": "label"}, "train": {"epochs": 4}})
    assert config.train.epochs == 4


# --- paths ---------------------------------------------------------------------------


def test_relative_source_is_resolved_from_the_yaml_folder_not_the_cwd(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "t.csv").write_text("x,label\n1,a\n2,b\n", encoding="utf-8")
    config_dir = tmp_path / "configs" / "deep"
    config_dir.mkdir(parents=True)
    path = write_yaml(config_dir, "data:\n  source: ../../data/t.csv\n  target: label\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_spec(path)
    assert Path(config.data.source) == (data_dir / "t.csv").resolve()
    assert Path(config.data.source).is_file()
    # The same YAML given by a relative path from another cwd resolves to the same file.
    monkeypatch.chdir(tmp_path)
    assert Path(load_spec("configs/deep/my.yaml").data.source) == (data_dir / "t.csv").resolve()


def test_relative_data_file_is_resolved_from_the_cwd(tmp_path, table, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_spec("table.csv", target="label")
    assert config.data.source == str(table.resolve())


def test_builtin_source_in_yaml_stays_a_name(tmp_path):
    config = load_spec(write_yaml(tmp_path, "data:\n  source: iris\n  target: target\n"))
    assert config.data.source == "iris"


# --- round trip and schema -------------------------------------------------------------


def test_to_yaml_round_trips(tmp_path, table):
    config = load_spec(write_yaml(tmp_path, BASE), overrides=["model.hidden_layers=[7,5]", "train.early_stopping=false"])
    again = validate(yaml.safe_load(config.to_yaml()), "again")
    assert again == config


def test_json_schema_documents_every_section():
    schema = json_schema()
    json.dumps(schema)  # plain JSON
    properties = schema["properties"]
    for key in ("name", "data", "task", "model", "train", "loss", "metrics"):
        assert key in properties
    assert "data" in schema["required"]
    defs = schema["$defs"]
    for section in ("DataConfig", "SplitConfig", "ModelConfig", "TrainConfig", "EarlyStoppingConfig"):
        assert section in defs
    assert set(defs["TrainConfig"]["properties"]) >= {"epochs", "batch_size", "optimizer", "learning_rate", "early_stopping", "seed"}
    epochs = defs["TrainConfig"]["properties"]["epochs"]["anyOf"]
    assert {"type": "integer", "exclusiveMinimum": 0} in epochs and {"const": "auto", "type": "string"} in epochs
    assert "source" in defs["DataConfig"]["required"]
    assert defs["DataConfig"]["properties"]["source"]["description"]
    assert set(defs["ModelConfig"]["properties"]) == set(Config.model_fields["model"].annotation.model_fields)
