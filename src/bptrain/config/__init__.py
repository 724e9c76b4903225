"""Configs: YAML (safe, no duplicate keys, file:line kept) -> validated, frozen dataclasses.

This package imports no registry: what a config may name (layers, losses, optimizers,
schedules, datasets) comes in as `parts` (bptrain.parts.PARTS), so the config layer sits below
the parts it checks. Its modules, in the order a config passes through them:

- yaml.py: the YAML reader that keeps the line of every key;
- overrides.py: --set KEY=VALUE and the for_dataset settings;
- schema.py: the typed dataclasses and every check of a raw config;
- load.py: sources (files, stdin, presets) and load_config, which ties them together.
"""

from .load import (
    DEFAULT_PRESET,
    LoadedConfig,
    Source,
    load_config,
    preset_description,
    preset_names,
    presets_dir,
    read_source,
    resolve_data_dir,
)
from .overrides import (
    FOR_DATASET,
    SET_LINE,
    apply_dataset_settings,
    apply_overrides,
    assign,
    parse_key,
    parse_override,
)
from .schema import (
    SECTIONS,
    Config,
    DataConfig,
    ModelConfig,
    TrainConfig,
    from_dict,
    plain_data,
    validate,
)
from .yaml import MAX_YAML_VALUES, parse_yaml

__all__ = [
    "DEFAULT_PRESET",
    "FOR_DATASET",
    "MAX_YAML_VALUES",
    "SECTIONS",
    "SET_LINE",
    "Config",
    "DataConfig",
    "LoadedConfig",
    "ModelConfig",
    "Source",
    "TrainConfig",
    "apply_dataset_settings",
    "apply_overrides",
    "assign",
    "from_dict",
    "load_config",
    "parse_key",
    "parse_override",
    "parse_yaml",
    "plain_data",
    "preset_description",
    "preset_names",
    "presets_dir",
    "read_source",
    "resolve_data_dir",
    "validate",
]
