"""Overrides are read by the field's declared type, never coerced: a wrong value is refused naming field and value."""
import re

import pytest

from genprune_nb.config import ConfigError, get_preset, override
from genprune_nb.errors import GenpruneError

SMOKE = get_preset("smoke")


@pytest.mark.parametrize(
    "assignment, field, expected",
    [
        ("train.warmup_steps=3", ("train", "warmup_steps"), 3),
        ("train.warmup_steps= 4 ", ("train", "warmup_steps"), 4),
        ("train.val_tokens=4_096", ("train", "val_tokens"), 4096),
        ("train.val_tokens=1e3", ("train", "val_tokens"), 1000),  # scientific notation of a whole number
        ("inner.token_milestones=25e6,2.5e7,100", ("inner", "token_milestones"), (25_000_000, 25_000_000, 100)),
        ("train.lr=1e-3", ("train", "lr"), 0.001),
        ("train.lr=2", ("train", "lr"), 2.0),
        ("train.shuffle=on", ("train", "shuffle"), True),
        ("train.shuffle=No", ("train", "shuffle"), False),
        ("inner.seeds=3, 4", ("inner", "seeds"), (3, 4)),
        ("inner.conditions=Connectome,NoConnectome", ("inner", "conditions"), ("Connectome", "NoConnectome")),
        ("train.keep_checkpoints=5,10", ("train", "keep_checkpoints"), (5, 10)),
        ("eval.stories=", ("eval", "stories"), ()),
        ("data.shard_prefix=123", ("data", "shard_prefix"), "123"),  # a string field keeps the text
    ],
)
def test_text_values_are_read_by_the_declared_type(assignment, field, expected):
    value = getattr(getattr(override(SMOKE, [assignment]), field[0]), field[1])
    assert value == expected and type(value) is type(expected)
    if isinstance(value, tuple):
        assert all(type(v) is type(e) for v, e in zip(value, expected))


@pytest.mark.parametrize(
    "assignment, message",
    [
        ("train.warmup_steps=1e-3", "train.warmup_steps='1e-3': expected an integer"),  # was read as 0
        ("train.warmup_steps=2.0", "train.warmup_steps='2.0': expected an integer"),
        ("train.warmup_steps=2.5e0", "expected an integer"),
        ("train.warmup_steps=three", "expected an integer"),
        ("train.shuffle=maybe", "train.shuffle='maybe': expected a bool"),
        ("train.lr=nan", "train.lr='nan': expected a finite number"),  # nan <= 0 is False: it passed validation
        ("train.lr=fast", "expected a number"),
        ("inner.seeds=a,b", "inner.seeds='a,b': item 0 ('a'): expected an integer"),  # were strings
        ("train.keep_checkpoints=10,2.5", "item 1 ('2.5'): expected an integer"),
        ("inner.token_milestones=1e6,lots", "item 1 ('lots')"),
    ],
)
def test_text_values_of_another_type_are_refused(assignment, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        override(SMOKE, [assignment])


@pytest.mark.parametrize(
    "assignments, message",
    [
        ({"inner.keep_every": 3.5}, "inner.keep_every=3.5: expected an integer"),  # was accepted as a float
        ({"inner.keep_every": True}, "inner.keep_every=True: expected an integer"),
        ({"inner.seeds": [1, "x"]}, "item 1 ('x'): expected an integer"),
        ({"inner.seeds": 3}, "inner.seeds=3: expected a list"),
        ({"inner.conditions": ["Connectome", 2]}, "item 1 (2): expected a string"),
        ({"data.shard_prefix": 7}, "data.shard_prefix=7: expected a string"),
        ({"train.lr": "0.1x"}, "train.lr='0.1x': expected a number"),
        ({"train.shuffle": 2}, "train.shuffle=2: expected a bool"),
    ],
)
def test_python_values_are_type_checked(assignments, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        override(SMOKE, assignments)


def test_python_values_are_parsed_when_given_as_text():
    preset = override(SMOKE, {"inner.keep_every": "3", "inner.seeds": "5,6", "train.lr": 1, "train.shuffle": 0,
                              "inner.conditions": ("NoConnectome",)})
    assert preset.inner.keep_every == 3 and preset.inner.seeds == (5, 6) and preset.inner.conditions == (
        "NoConnectome",)
    assert preset.train.lr == 1.0 and type(preset.train.lr) is float and preset.train.shuffle is False


def test_config_errors_are_package_errors_and_value_errors():
    with pytest.raises(GenpruneError):
        override(SMOKE, ["train.stepz=1"])
    with pytest.raises(ValueError):  # callers that catch ValueError keep working
        get_preset("gpt5")

