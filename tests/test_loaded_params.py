"""A trained model's parameters read back from a run directory are checked leaf by leaf
against the model they are for (chex): flax restores them by structure alone, so a leaf
of another shape would only fail later, inside the model, or broadcast silently."""

import jax
import pytest
from flax import serialization

from jaxnas import spaces
from jaxnas.nn import ModelConfig, make_model
from jaxnas.search import RunDir, RunDirectoryError


def test_a_parameter_of_another_shape_is_named_in_one_line(tmp_path):
    space = spaces.get("mlp")
    model = make_model(space, (8, 8, 1), 10, ModelConfig(width=8))
    five_classes = make_model(space, (8, 8, 1), 5, ModelConfig(width=8))
    like = model.init(jax.random.key(0))
    blob = serialization.to_bytes(five_classes.init(jax.random.key(0)))
    with pytest.raises(RunDirectoryError) as raised:
        RunDir(tmp_path).best_params(blob, like)
    message = str(raised.value)
    assert message.endswith("params.msgpack does not fit the model: parameter 'head/bias': "
                            "shapes: (5,) != (10,)."), message
    assert len(message.splitlines()) == 1
    same = RunDir(tmp_path).best_params(serialization.to_bytes(like), like)
    assert jax.tree.structure(same) == jax.tree.structure(like)
