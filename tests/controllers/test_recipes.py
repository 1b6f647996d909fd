"""Task recipes: each task's documented default configuration is valid, fits the task's longest
evaluation sequences, and is what `diffvm train TASK` uses unless an option says otherwise."""

import dataclasses

import numpy as np
import pytest

from diffvm.controllers.cli import _parser, config_from_args
from diffvm.controllers.model import ModelConfig
from diffvm.controllers.trainer import TrainConfig
from diffvm.tasks import TASKS
from diffvm.tasks.base import GrowingTask


def _fields(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_recipe_names_fields_with_values_of_their_type(name):
    task_cls = TASKS[name]
    fields = {**_fields(task_cls.Config), **_fields(ModelConfig), **_fields(TrainConfig)}
    for key, value in task_cls.recipe.items():
        assert key in fields, f"{name}: recipe names {key!r}, not a field of its configs"
        assert type(value) is type(fields[key].default), f"{name}: recipe {key} = {value!r}"


@pytest.mark.parametrize("name", sorted(TASKS))
def test_train_parser_defaults_are_the_recipe_and_validate(name):
    args = _parser(name).parse_args(["train", name])
    task_cls = TASKS[name]
    for key, value in task_cls.recipe.items():
        assert getattr(args, key) == value
    task = task_cls(config_from_args(task_cls.Config, args))
    model = config_from_args(ModelConfig, args)
    config_from_args(TrainConfig, args)
    # The longest sequence of every split fits the memory (a stack keeps a row per step).
    rng = np.random.default_rng(0)
    for split in task.splits:
        if isinstance(task, GrowingTask) and split != "train":
            steps = task.episodes(rng, 1, task.split_ranges()[split][1]).inputs.shape[1]
        elif isinstance(task, GrowingTask):
            steps = task.episodes(rng, 1, task.knob_bounds()[1]).inputs.shape[1]
        else:
            steps = task.sample_split(rng, 1, split).inputs.shape[1]
        model.check_length(steps)


def test_an_option_on_the_command_line_beats_the_recipe():
    assert TASKS["reversal"].recipe["memory"] == "stack"
    args = _parser("reversal").parse_args(["train", "reversal", "--memory", "none", "--curriculum", "--hidden", "7"])
    assert (args.memory, args.curriculum, args.hidden) == ("none", True, 7)


def test_help_shows_the_recipe_and_the_generic_default(capsys):
    with pytest.raises(SystemExit):
        _parser("reversal").parse_args(["train", "reversal", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 'stack', this task's recipe; generic: 'none')" in text
