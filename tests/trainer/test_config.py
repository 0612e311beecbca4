"""Config values that make no sense are refused when the config is loaded, naming the key."""

from __future__ import annotations

import pytest

from trainer.config import load_config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"data.batch_size": "eight"}, "data.batch_size must be of type int, got 'eight'"),
        ({"data.batch_size": 2.5}, "data.batch_size must be of type int"),
        ({"data.batch_size": 0}, "data.batch_size must be >= 1, got 0"),
        ({"data.batch_size": -1}, "data.batch_size must be >= 1"),
        ({"data.num_frames": 0}, "data.num_frames must be >= 1"),
        ({"optim.lr": float("nan")}, "optim.lr must be > 0, got nan"),
        ({"optim.betas": [0.9]}, "optim.betas must be of type tuple"),
        ({"optim.betas": [0.9, 1.5]}, "optim.betas must lie in"),
        ({"epochs": 0}, "epochs must be a number > 0"),
        ({"max_steps": -3}, "max_steps must be >= 0"),
        ({"model.init_checkpoint": 3}, "model.init_checkpoint must be of type str | None"),
        ({"data": 3}, "config section 'data' must be a JSON object"),
        ({"data.batch_size.x": 1}, "cannot set data.batch_size.x: batch_size is a value"),
    ],
)
def test_override_of_the_wrong_type_or_out_of_range_is_refused_naming_its_key(
    overrides: dict, message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        load_config("tiny", overrides)
    assert message in str(caught.value)


def test_every_named_config_passes_the_checks_and_an_int_learning_rate_is_a_float() -> None:
    from trainer.config import available_configs

    for name in available_configs():
        load_config(name)
    assert load_config("tiny", {"optim.lr": 1}).optim.lr == 1
