"""The batched environment: shapes, one batched call per role per step, determinism, reset semantics."""

import numpy as np
import pytest

from teamsrl_jax.backends.base import Backend
from teamsrl_jax.env.simulator import SimulatedBackend
from teamsrl_jax.env.environment import ENV_PRESETS, EnvConfig, InstructionEnv
from teamsrl_jax.env.features import hashed_text, text_stats
from teamsrl_jax.env.operations import OperationSet
from teamsrl_jax.env.seeds import SeedPool

INFO_KEYS = {"parents", "rewrites", "instructions", "operations", "eliminated", "reviewer_notes", "score_sources",
             "instructor_replies", "reviewer_replies", "reward_components", "step", "episode"}


class Spy(Backend):
    """Forwards to a backend and logs (role, batch size) of every call."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []
        self.name, self.model, self.accounting = inner.name, inner.model, inner.accounting

    def generate(self, prompts, params, role, sample_indices=None):
        self.calls.append((role, len(prompts)))
        return self.inner.generate(prompts, params, role, sample_indices)


def make_env(preset="default", seed=0, backend_seed=0, **overrides):
    spy = Spy(SimulatedBackend(seed=backend_seed))
    return InstructionEnv(EnvConfig.from_preset(preset, seed=seed, **overrides), spy), spy


def rollout(env, policy_seed=0):
    rng = np.random.default_rng(policy_seed)
    obs = [env.reset()]
    rewards, infos = [], []
    for _ in range(env.config.horizon):
        o, r, d, info = env.step(rng.integers(0, env.num_actions, env.config.num_chains))
        obs.append(o), rewards.append(r), infos.append(info)
    return np.stack(obs), np.stack(rewards), d, infos


def test_default_shapes_info_and_one_batched_call_per_role_per_step():
    env, spy = make_env(num_chains=8)
    assert env.obs_dim == 256 + 6 + 1 + 4 and env.num_actions == 6
    obs, rewards, done, infos = rollout(env)
    assert obs.shape == (7, 8, env.obs_dim) and obs.dtype == np.float32
    assert rewards.shape == (6, 8) and rewards.dtype == np.float32 and np.all(rewards >= 0)
    assert done.dtype == bool and done.all()
    roles = [role for role, _ in spy.calls]
    assert roles == ["instructor", "reviewer"] * 6
    for (_, n_inst), (_, n_rev), info in zip(spy.calls[::2], spy.calls[1::2], infos):
        assert n_inst == 8 and n_rev == sum(1 for e in info["eliminated"] if not e)
    info = infos[-1]
    assert set(info) == INFO_KEYS and info["step"] == 6 and info["episode"] == 0
    assert set(info["reward_components"]) == {"kept", "score", "quality", "novelty", "from_logprobs"}
    assert all(len(info[k]) == 8 for k in INFO_KEYS - {"reward_components", "step", "episode"})
    kept = [not e for e in info["eliminated"]]
    assert [i if k else p for i, p, k in zip(info["rewrites"], info["parents"], kept)] == info["instructions"]
    assert env.texts == info["instructions"]
    texts, prev = infos[0]["instructions"], [env.operations.index(name) for name in infos[0]["operations"]]
    layout = np.concatenate([hashed_text(texts, 256), np.eye(6, dtype=np.float32)[prev], np.full((8, 1), 1 / 6),
                             text_stats(texts)], axis=1)  # [hashed text | previous action | t/H | stats]
    assert np.array_equal(obs[1], layout.astype(np.float32))


def test_records_cover_every_chain_and_step():
    env, _ = make_env(num_chains=4)
    rollout(env)
    records = env.pop_records()
    assert len(records) == 4 * 6 and env.pop_records() == []
    first = records[0]
    assert set(first) == {"episode", "step", "chain", "seed", "operation", "parent", "instruction", "kept",
                          "eliminated", "reward", "components", "reviewer_note", "backend", "model"}
    assert first["backend"] == "simulated" and first["step"] == 1 and first["parent"] == first["seed"]
    assert [r["step"] for r in records[::4]] == [1, 2, 3, 4, 5, 6]


def test_deterministic_for_a_seed():
    a = rollout(make_env(num_chains=6, seed=3)[0])
    b = rollout(make_env(num_chains=6, seed=3)[0])
    c = rollout(make_env(num_chains=6, seed=4)[0])
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert [i["instructions"] for i in a[3]] == [i["instructions"] for i in b[3]]
    assert a[3][0]["parents"] != c[3][0]["parents"]  # another seed draws other seed instructions


def test_default_reset_draws_fresh_seeds_and_enforces_the_horizon():
    env, _ = make_env(num_chains=16, horizon=2)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(16, int))
    env.reset()
    first = env.texts
    for _ in range(2):
        env.step(np.zeros(16, int))
    with pytest.raises(RuntimeError, match="ended after 2 steps"):
        env.step(np.zeros(16, int))
    env.reset()
    assert env.episode == 1 and not set(first) & set(env.texts)  # 48 bundled seeds: 32 distinct draws


def test_paper_preset_one_hot_state_and_persistent_chain():
    env, spy = make_env("paper")
    assert env.config.num_chains == 1 and env.obs_dim == 6 and env.config.reward.kind == "paper"
    assert env.config.instructor.temperature == 1.0 and env.config.instructor.top_k == 40
    obs = env.reset()
    assert obs.tolist() == [[0.0] * 6]
    start = env.texts
    for a in (2, 0, 5, 1, 3, 4):
        obs, r, done, info = env.step(np.array([a]))
        assert obs[0].tolist() == [float(i == a) for i in range(6)]
        assert r[0] in (0.0, 1.0)
        assert set(info["reward_components"]) == {"kept", "not_equal", "verdict_parsed", "from_logprobs"}
    end = env.texts
    assert end != start
    assert env.reset().tolist() == [[0.0] * 6] and env.texts == end  # never reset between episodes
    fresh, _ = make_env("paper", reset_chains="fresh_seeds")
    fresh.reset()
    fresh.step(np.array([0]))
    before = fresh.texts
    fresh.reset()
    assert fresh.texts != before


def test_bad_config_and_actions_are_one_line_errors():
    for kwargs, field in [({"num_chains": 0}, "num_chains"), ({"num_chains": "8"}, "num_chains"),
                          ({"feature_dim": 4}, "feature_dim"), ({"seed": None}, "seed"),
                          ({"reset_chains": "never"}, "reset_chains"),
                          ({"features": "bert"}, "features"), ({"held_out_fraction": 1.0}, "held_out_fraction"),
                          ({"operations_mode": "append"}, "operations_mode"), ({"horizon": 0}, "horizon")]:
        with pytest.raises(ValueError, match=f"EnvConfig.{field}"):
            EnvConfig.from_preset("default", **kwargs)
    with pytest.raises(ValueError, match="unknown env preset 'fast'"):
        EnvConfig.from_preset("fast")
    with pytest.raises(ValueError, match="unknown EnvConfig field.*chains"):
        EnvConfig.from_preset("default", chains=3)
    with pytest.raises(ValueError, match="reward.kind"):
        EnvConfig.from_preset("default", reward={"kind": "likert"})
    env, _ = make_env(num_chains=3)
    env.reset()
    for bad in (np.zeros(2, int), np.zeros(3), np.array([0, 1, 6])):
        with pytest.raises(ValueError, match="actions"):
            env.step(bad)
    assert set(ENV_PRESETS) == {"default", "paper"}


def test_preset_overrides_merge_nested_values():
    config = EnvConfig.from_preset("paper", reward={"novelty_weight": 0.5}, instructor={"temperature": 0.2})
    assert config.reward.kind == "paper" and config.reward.novelty_weight == 0.5
    assert config.instructor.temperature == 0.2 and config.instructor.top_k == 40


def test_held_out_split_and_custom_operations(tmp_path):
    ops_file = tmp_path / "ops.yaml"
    ops_file.write_text("- name: counterfactual\n  kind: depth\n"
                        "  template: 'Make it harder.\n\n<<<\n{instruction}\n>>>'\n")
    config = EnvConfig.from_preset("default", num_chains=2, held_out_fraction=0.25, operations_file=str(ops_file))
    env = InstructionEnv(config, SimulatedBackend())
    assert env.num_actions == 7 and env.operations.names[-1] == "counterfactual"
    assert len(env.seed_pool) == 36 and len(env.held_out_seeds) == 12
    env.reset()
    _, _, _, info = env.step(np.array([6, 6]))
    assert info["operations"] == ["counterfactual"] * 2 and all(r is not None for r in info["rewrites"])


def test_everything_eliminated_skips_the_reviewer():
    spy = Spy(SimulatedBackend(refusal_rate=1.0, echo_rate=0.0))
    env = InstructionEnv(EnvConfig.from_preset("default", num_chains=3), spy,
                         seeds=SeedPool(["Explain tides.", "Describe rain.", "Name a bird."]),
                         operations=OperationSet())
    env.reset()
    _, rewards, _, info = env.step(np.array([0, 1, 2]))
    assert spy.calls == [("instructor", 3)] and rewards.tolist() == [0.0] * 3
    assert info["eliminated"] == ["refusal"] * 3 and info["instructions"] == info["parents"]


def _json_roundtrip(state):
    """What a checkpoint does: arrays kept as arrays, everything else through JSON."""
    import json

    if isinstance(state, np.ndarray):
        return state.copy()
    if isinstance(state, dict):
        return {k: _json_roundtrip(v) for k, v in state.items()}
    return json.loads(json.dumps(state))


def _finish_and_play_one_more(env):
    """The rest of the current episode, then a whole new one (new seed draws, novelty memory in use)."""
    rng, out = np.random.default_rng(1), []
    for _ in range(2):
        done = False
        while not done:
            obs, rewards, dones, info = env.step(rng.integers(0, env.num_actions, env.config.num_chains))
            out.append((obs.tolist(), rewards.tolist(), info["instructions"]))
            done = dones.all()
        out.append((env.reset().tolist(), None, env.texts))
    return out


@pytest.mark.parametrize("preset", ["default", "paper"])
def test_state_dict_resumes_exactly(preset):
    overrides = {"num_chains": 5, "horizon": 3} if preset == "default" else {}
    env, _ = make_env(preset, seed=7, **overrides)
    env.reset()
    env.step(np.zeros(env.config.num_chains, int))
    state = _json_roundtrip(env.state_dict())
    resumed, _ = make_env(preset, seed=7, **overrides)
    resumed.load_state_dict(state)
    assert _finish_and_play_one_more(resumed) == _finish_and_play_one_more(env)
    other, _ = make_env(preset, seed=7, num_chains=2)
    with pytest.raises(ValueError, match="chains"):
        other.load_state_dict(state)


def test_a_short_batch_from_the_backend_is_an_error():
    class Short(Spy):
        def generate(self, prompts, params, role, sample_indices=None):
            return super().generate(prompts, params, role, sample_indices)[:-1]

    env = InstructionEnv(EnvConfig.from_preset("default", num_chains=3), Short(SimulatedBackend()))
    env.reset()
    with pytest.raises(RuntimeError, match="instructor backend returned 2 completions for 3 prompts"):
        env.step(np.zeros(3, int))


def test_groups_stepped_in_chain_order_equal_one_step():
    """``step_chains`` over two groups, interleaved as a pipelined driver does, equals ``step`` exactly."""
    from teamsrl_jax.env.environment import run_step

    whole, _ = make_env(num_chains=6, seed=2)
    split, _ = make_env(num_chains=6, seed=2)
    rng = np.random.default_rng(0)
    for env in (whole, split):
        env.reset()
    for _ in range(3):
        actions = rng.integers(0, 6, 6)
        obs, rewards, _, info = whole.step(actions)
        first, second = split.step_chains(0, 3, actions[:3]), split.step_chains(3, 6, actions[3:])
        a_inst, b_inst = next(first), next(second)           # both instructor calls in flight
        a_rev = first.send(a_inst.send(split.backend))
        b_rev = second.send(b_inst.send(split.backend))
        parts = []
        for gen, request in ((first, a_rev), (second, b_rev)):
            with pytest.raises(StopIteration) as end:
                gen.send(request.send(split.backend))
            parts.append(end.value.value)  # the generator's return value
        np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), obs)
        np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), rewards)
        assert parts[0][3]["instructions"] + parts[1][3]["instructions"] == info["instructions"]
    assert split.texts == whole.texts and split.pop_records()[-1] == whole.pop_records()[-1]
    np.testing.assert_array_equal(split.state_dict()["novelty"]["bits"], whole.state_dict()["novelty"]["bits"])
    # a group may not score a step before every chain finished the previous one
    run_step(split.step_chains(0, 3, np.zeros(3, int)), split.backend)
    with pytest.raises(RuntimeError, match="before every chain finished"):
        run_step(split.step_chains(0, 3, np.zeros(3, int)), split.backend)
    with pytest.raises(RuntimeError, match="different steps"):
        split.state_dict()
