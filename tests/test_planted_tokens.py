"""The planted task in the Transformer spaces: token regimes (N, C, T, 1) with a per-token
scale, the T targets recovered by themselves and told apart from each other."""

from __future__ import annotations

from evonorm_search.config import new_search_config
from evonorm_search.known import get_known
from evonorm_search.planted import (
    CHECK_R2, TOKEN_CHECK_REGIME_NAMES, TOKEN_REGIME_NAMES, get_regime, regime_names, target_slot,
)
from evonorm_search.task import EvalTask
from tests.cli_runner import run_evonorm
from workers.evaluate import evaluate
from workers.planted import check_scores, regime_data


def _r2(layer: str, target: str) -> dict[str, float]:
    result = evaluate(EvalTask(get_known(layer).to_json(), TOKEN_REGIME_NAMES, kind="planted",
                               target_json=get_known(target).to_json()))
    assert result.status == "done", result
    return result.accuracies


def test_token_regimes_are_tokens_with_a_scale_per_token() -> None:
    for name in TOKEN_REGIME_NAMES:
        regime, data = get_regime(name), regime_data(name)
        assert data[0].shape == (regime.batch, regime.channels, regime.size, 1)
        per_token = data[0].square().mean(1)  # (N, T, 1): the tokens' scales differ
        assert per_token.std() > 0.1 * per_token.mean()
    assert regime_names("norm") == TOKEN_REGIME_NAMES
    assert target_slot(get_known("dyt")) == "norm" and target_slot(get_known("evonorm_s0")) == "norm_act"


def test_t_targets_recover_themselves_and_no_other() -> None:
    for target in ("layernorm", "rmsnorm", "dyt"):
        assert min(_r2(target, target).values()) >= 0.999
    assert max(_r2("rmsnorm", "layernorm").values()) < 0.999
    assert max(_r2("no_norm", "rmsnorm").values()) < 0.95  # the per-token scale matters
    assert max(_r2("layernorm", "dyt").values()) < 0.95


def test_planted_search_in_space_t() -> None:
    config = new_search_config({"task": "planted", "space": "T",
                                "target": get_known("rmsnorm").to_json(), "target_name": "rmsnorm"})
    assert config.proxies == TOKEN_REGIME_NAMES
    code, out, err = run_evonorm("evaluate", "rmsnorm", "dyt", "--task", "planted", "--target", "rmsnorm")
    assert code == 0, err
    assert "tokens_b2" in out and "rmsnorm: recovered: identical" in out and "dyt: recovered: no" in out


def test_token_targets_are_confirmed_on_the_unscored_token_regime() -> None:
    target = get_known("rmsnorm").to_json()
    own = check_scores(get_known("rmsnorm"), target)
    assert set(own) == set(TOKEN_CHECK_REGIME_NAMES) == {"tokens_unseen"}
    assert min(own.values()) >= CHECK_R2
    # LayerNorm is not RMSNorm on tokens with an offset: the check tells them apart.
    assert min(check_scores(get_known("layernorm"), target).values()) < CHECK_R2
