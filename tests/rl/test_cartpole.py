import gymnasium
import jax
import jax.numpy as jnp
import numpy as np

from teamsrl_jax.rl import cartpole_env as env_lib
from teamsrl_jax.rl.cartpole import CartPoleConfig, make_train
from teamsrl_jax.rl.cli import parse_config


def test_dynamics_match_gymnasium(x64):
    gym_env = gymnasium.make("CartPole-v1").unwrapped
    gym_env.reset(seed=0)
    rng = np.random.default_rng(0)
    # ordinary states, and states at the edge so that both termination tests fire
    sign = rng.choice([-1.0, 1.0], (200, 1))
    x_edge = rng.uniform(-1, 1, (200, 4)) * [0.05, 2, 0.1, 2] + sign * [2.4, 0, 0, 0]
    theta_edge = rng.uniform(-1, 1, (200, 4)) * [1, 2, 0.01, 2] + sign * [0, 0, 12 * 2 * np.pi / 360, 0]
    states = np.concatenate([rng.uniform(-0.2, 0.2, (200, 4)) * [1, 5, 1, 5], x_edge, theta_edge])
    actions = rng.integers(0, 2, len(states))
    want_state, want_term = [], []
    for s, a in zip(states, actions):
        gym_env.state = s.copy()
        gym_env.steps_beyond_terminated = None
        _, reward, terminated, truncated, _ = gym_env.step(int(a))
        assert reward == 1.0 and not truncated
        want_state.append(gym_env.state)
        want_term.append(terminated)
    got, term = jax.jit(env_lib.dynamics)(jnp.asarray(states), jnp.asarray(actions))
    np.testing.assert_allclose(got, np.array(want_state), rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(term, want_term)
    assert 100 < int(np.sum(want_term)) < 350


def test_reset_range_and_truncation_at_500():
    state, obs = env_lib.reset(jax.random.key(0), 64)
    # uniform in [-0.05, 0.05] as gymnasium's: 256 draws fill most of that range
    assert float(jnp.max(jnp.abs(obs))) <= 0.05 and float(jnp.min(obs)) < -0.04 and float(jnp.max(obs)) > 0.04
    step = jax.jit(env_lib.step)
    state, obs, reward, done, info = step(state, jnp.ones(64, jnp.int32), jax.random.key(1))
    assert not bool(jnp.any(done)) and float(jnp.sum(reward)) == 64
    # an upright chain at its 500th step is truncated (not terminated), counted, and restarted
    state = state._replace(physics=jnp.zeros((64, 4)), t=jnp.full(64, 499), ep_return=jnp.full(64, 499.0))
    state, obs, reward, done, info = step(state, jnp.ones(64, jnp.int32), jax.random.key(2))
    assert bool(jnp.all(done)) and bool(jnp.all(info["truncated"])) and float(state.last_return[0]) == 500.0
    assert float(jnp.max(jnp.abs(info["final_obs"][:, 1]))) > 0.1  # the pushed state, before the reset
    assert int(state.episodes[0]) == 1 and int(state.t[0]) == 0 and float(jnp.max(jnp.abs(obs))) <= 0.05


def test_short_trpo_run_improves_return_deterministically():
    cfg = parse_config(CartPoleConfig, ["--seed", "1", "--total-steps", "12288", "--no-progress"])
    init, train = make_train(cfg)
    _, metrics = train(init())
    returns = np.asarray(metrics["mean_return"])
    assert returns.shape == (12,)
    assert returns[0] < 60 and returns[-1] > 200  # a random policy lasts ~20 steps
    assert float(np.mean(np.asarray(metrics["accepted"]))) > 0.8
    _, again = train(init())
    np.testing.assert_array_equal(np.asarray(again["mean_return"]), returns)
