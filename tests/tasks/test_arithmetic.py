import numpy as np
import pytest

from diffvm.tasks import FAMILY, ArithmeticTask


def test_same_seed_same_batch_and_no_global_random_state_is_read():
    task = ArithmeticTask("(a+b)*c")
    np.random.seed(0)
    state = np.random.get_state()[1].copy()
    x1, y1 = task.sample(np.random.default_rng(7), 16)
    x2, y2 = task.sample(np.random.default_rng(7), 16)
    assert all(np.array_equal(x1[k], x2[k]) for k in x1) and np.array_equal(y1, y2)
    assert np.array_equal(np.random.get_state()[1], state)


@pytest.mark.parametrize("name", FAMILY)
def test_targets_are_the_function_and_heldout_inputs_are_larger_than_training(name):
    task = ArithmeticTask(name)
    rng = np.random.default_rng(0)
    x, y = task.sample(rng, 500)
    assert np.abs(np.stack(list(x.values()))).max() <= 10
    assert np.array_equal(y, FAMILY[name].fn(x["a"], x["b"], x["c"]))
    h, _ = task.sample(rng, 500, heldout=True)
    magnitude = np.abs(np.stack(list(h.values())))
    assert magnitude.min() > 10 and magnitude.max() <= 100


def test_unknown_function_is_named():
    with pytest.raises(ValueError, match="unknown arithmetic function 'a/b'"):
        ArithmeticTask("a/b")


def test_exact_match_is_exact_and_rounded_match_rounds():
    assert ArithmeticTask.exact_match([3.0, 3.01], [3.0, 3.0]).tolist() == [True, False]
    assert ArithmeticTask.rounded_match([3.4, 3.6], [3.0, 3.0]).tolist() == [True, False]
