"""Simulation: curve summaries on hand-made tables, the stage off by default, and a real 2-round
simulation through `dvc repro` on tiny data with nested MLflow runs."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from activeseg.simulation import area_under_curve, labels_to_target, learning_curves, penalty_matrix, summarize

from conftest import PLAIN_ARCHITECTURE, REPO_ROOT, copy_project, pixelwise_model, run, set_params


def runs_table(rows):
    return pd.DataFrame(rows, columns=["strategy", "seed", "round", "labeled", "dice"])


RUNS = runs_table([
    # mc_dropout: seeds 1 and 2; random: seeds 1 and 2; labeled 4 → 6 → 8
    ("mc_dropout", 1, 0, 4, 0.5), ("mc_dropout", 1, 1, 6, 0.8), ("mc_dropout", 1, 2, 8, 0.9),
    ("mc_dropout", 2, 0, 4, 0.5), ("mc_dropout", 2, 1, 6, 0.6), ("mc_dropout", 2, 2, 8, 0.9),
    ("random", 1, 0, 4, 0.5), ("random", 1, 1, 6, 0.6), ("random", 1, 2, 8, 0.8),
    ("random", 2, 0, 4, 0.5), ("random", 2, 1, 6, 0.6), ("random", 2, 2, 8, 0.9),
])
REFERENCES = pd.DataFrame({"seed": [1, 2], "labeled": [20, 20], "dice": [0.9, 0.9]})


def test_area_under_curve_is_the_mean_dice_over_the_labeled_range():
    # trapezoids: (0.5+0.7)/2*2 + (0.7+0.9)/2*2 = 1.2 + 1.6 = 2.8, over a width of 4
    assert area_under_curve(np.array([4, 6, 8]), np.array([0.5, 0.7, 0.9])) == pytest.approx(0.7)
    assert area_under_curve(np.array([4]), np.array([0.3])) == 0.3


def test_labels_to_target_is_the_first_count_reaching_it():
    assert labels_to_target(np.array([4, 6, 8]), np.array([0.5, 0.7, 0.9]), 0.7) == 6
    assert labels_to_target(np.array([4, 6, 8]), np.array([0.5, 0.7, 0.9]), 0.95) is None


def test_learning_curves_average_over_seeds_and_keep_the_spread():
    table = learning_curves(RUNS, ["mc_dropout", "random"])
    assert table["labeled"].tolist() == [4, 6, 8]
    np.testing.assert_allclose(table["mc_dropout"], [0.5, 0.7, 0.9])
    np.testing.assert_allclose(table["random"], [0.5, 0.6, 0.85])
    np.testing.assert_allclose(table["mc_dropout_min"], [0.5, 0.6, 0.9])
    np.testing.assert_allclose(table["mc_dropout_max"], [0.5, 0.8, 0.9])
    assert table["mc_dropout_std"][1] == pytest.approx(np.std([0.8, 0.6], ddof=1), abs=1e-6)


def test_summary_labels_to_target_ratio_and_aulc():
    summary = summarize(RUNS, REFERENCES, ["mc_dropout", "random"], target_fraction=0.9)
    assert summary["full_pool_dice"] == pytest.approx(0.9) and summary["target_dice"] == pytest.approx(0.81)
    mc, rnd = summary["strategies"]["mc_dropout"], summary["strategies"]["random"]
    assert mc["labels_to_target"] == 8 and rnd["labels_to_target"] == 8    # 0.85 and 0.9 ≥ 0.81 at 8
    assert mc["labels_ratio_to_random"] == 1.0
    # per seed AULC: mc (0.75, 0.65) → 0.7 ± 0.05; random (0.625, 0.65)
    assert mc["aulc"] == pytest.approx(0.7) and mc["aulc_std"] == pytest.approx(0.05)
    assert rnd["aulc"] == pytest.approx(0.6375)
    lower = summarize(RUNS, REFERENCES, ["mc_dropout", "random"], target_fraction=0.75)   # target 0.675
    assert lower["strategies"]["mc_dropout"]["labels_to_target"] == 6
    assert lower["strategies"]["random"]["labels_to_target"] == 8
    assert lower["strategies"]["mc_dropout"]["labels_ratio_to_random"] == 0.75
    never = summarize(RUNS, REFERENCES.assign(dice=1.0), ["mc_dropout", "random"], target_fraction=1.0)
    assert never["strategies"]["random"]["labels_to_target"] is None
    assert never["strategies"]["mc_dropout"]["labels_ratio_to_random"] is None


def test_labels_ratio_interval_bootstraps_over_seeds_on_a_fixed_table():
    """Target 0.675: mc_dropout needs 6 labels on seed 1's curve, 8 on seed 2's, 6 on their mean;
    random needs 8 on every one. Drawing 2 seeds of 2 gives seed 1 twice (ratio 0.75) a quarter of
    the time, seed 2 twice (ratio 1.0) a quarter, both (0.75) half: the 90% interval is [0.75, 1.0]."""
    from activeseg.simulation import labels_ratio_interval

    summary = summarize(RUNS, REFERENCES, ["mc_dropout", "random"], target_fraction=0.75)
    assert summary["seeds"] == 2
    assert summary["strategies"]["mc_dropout"]["labels_ratio_ci90"] == [0.75, 1.0]
    assert summary["strategies"]["random"]["labels_ratio_ci90"] == [1.0, 1.0]
    # target 0.81 at 0.9: seed 1 of mc_dropout and both means reach it at 8, so does random; seed 1
    # of random never does (0.8): a seed-1-only draw is 8 / infinity = 0, which the interval keeps
    assert labels_ratio_interval(RUNS, REFERENCES, "mc_dropout", 0.9) == [0.0, 1.0]
    assert labels_ratio_interval(RUNS, REFERENCES.assign(dice=1.0), "mc_dropout", 1.0) == [None, None]
    identical = RUNS.assign(dice=RUNS["dice"].where(RUNS["seed"] == 1, RUNS["dice"].shift(3)))
    assert labels_ratio_interval(identical, REFERENCES, "mc_dropout", 0.75) == [0.75, 0.75]


def test_labels_ratio_interval_resamples_the_same_seeds_for_the_strategy_and_for_random():
    """random's curve is mc_dropout's (of RUNS), seed by seed. At target 0.675 seed 1 needs 6 labels, seed 2
    needs 8, a mix of both 6. Paired (the same seeds drawn for both), every ratio is 1. Unpaired, a
    strategy draw needing 6 against a random draw of seed 2 twice (8) has a chance of 3/4 * 1/4 = 19%,
    and the reverse too: the 90% interval would be [0.75, 1.3333]."""
    from activeseg.simulation import labels_ratio_interval

    mc_rows = RUNS[RUNS["strategy"] == "mc_dropout"]
    same = pd.concat([mc_rows, mc_rows.assign(strategy="random")], ignore_index=True)
    per_seed = [labels_to_target(rows["labeled"].to_numpy(), rows["dice"].to_numpy(), 0.675)
                for _, rows in mc_rows.groupby("seed")]
    assert per_seed == [6, 8]   # the seeds differ: an unpaired draw would see it
    for seed in (0, 1, 2):
        assert labels_ratio_interval(same, REFERENCES, "mc_dropout", 0.75, seed=seed) == [1.0, 1.0]


def test_summary_averages_the_score_error_signal_over_scored_rounds():
    runs = RUNS.assign(spearman=[None, 0.2, 0.4, None, 0.6, None, None, 0.0, 0.1, None, -0.1, 0.0],
                       error_lift=[None, 1.5, 2.5, None, 2.0, None, None, 1.0, 1.0, None, 0.7, 1.3])
    summary = summarize(runs, REFERENCES, ["mc_dropout", "random"], target_fraction=0.9)["strategies"]
    assert summary["mc_dropout"]["score_error_spearman"] == pytest.approx(0.4)    # (0.2 + 0.4 + 0.6) / 3
    assert summary["mc_dropout"]["error_lift"] == pytest.approx(2.0)
    assert summary["random"]["score_error_spearman"] == pytest.approx(0.0)
    assert summary["random"]["error_lift"] == pytest.approx(1.0)
    never = summarize(runs.assign(spearman=None), REFERENCES, ["mc_dropout"], 0.9)["strategies"]["mc_dropout"]
    assert never["score_error_spearman"] is None


def test_simulation_params_are_checked(tiny_params):
    from activeseg.errors import ActivesegError

    with pytest.raises(ActivesegError, match="simulation.strategies"):
        tiny_params(simulation__strategies=["mc_dropout", "coin"])
    with pytest.raises(ActivesegError, match="simulation.strategies"):
        tiny_params(simulation__strategies="random")
    with pytest.raises(ActivesegError, match="simulation.rounds"):
        tiny_params(simulation__rounds=0)
    assert tiny_params().simulation.enabled is False


def test_a_pool_without_hidden_masks_cannot_be_simulated():
    from activeseg.errors import ActivesegError
    from activeseg.preprocess import SplitArrays, Transform
    from activeseg.simulation import SimulationData

    def empty(n, has_mask):
        return SplitArrays(np.array([str(i) for i in range(n)]), np.zeros((n, 32, 32, 3), np.uint8),
                           np.zeros((n, 32, 32, 1), np.uint8), np.full(n, has_mask))

    transform = Transform(32, 3, "unit", (0.0,), (1.0,))
    with pytest.raises(ActivesegError, match="split.simulate: true"):
        SimulationData(transform, empty(2, True), empty(3, False), empty(1, True), empty(1, True))


def test_stage_is_off_by_default_and_leaves_an_empty_curve_table_and_a_placeholder(tmp_path):
    (tmp_path / "params.yaml").write_text((REPO_ROOT / "params.yaml").read_text())
    result = subprocess.run([sys.executable, str(REPO_ROOT / "stages" / "simulate.py"), "--plan", "nowhere.json", "--prepared", "nowhere",
                             "--run-record", "nowhere.json", "--out", "sim", "--figures", "figures",
                             "--metrics", "sim.json"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "sim.json").read_text()) == {"enabled": False}
    assert (tmp_path / "sim" / "learning_curves.csv").read_text().strip() == \
        "labeled,mc_dropout,entropy,bald,margin,random"
    assert [path.name for path in (tmp_path / "figures").iterdir()] == ["simulation_off.png"]


@pytest.mark.slow
def test_two_round_simulation_through_dvc_with_nested_mlflow_runs(finished_project, tmp_path):
    # the shared finished run: its data stages and its train run (the parent of the simulation's) are reused
    project = copy_project(finished_project, tmp_path / "project")
    set_params(project, simulation__enabled=True, simulation__strategies=["mc_dropout", "random"],
               simulation__rounds=2, simulation__images_per_round=2, simulation__epochs_per_round=1,
               simulation__seeds=1, **PLAIN_ARCHITECTURE)
    run(["dvc", "repro", "simulate"], project)
    curves = pd.read_csv(project / "metrics" / "simulation" / "learning_curves.csv")
    runs = pd.read_csv(project / "metrics" / "simulation" / "runs.csv")
    split = pd.read_csv(project / "data" / "split" / "split.csv")
    initial = int((split["split"] == "train").sum())
    assert curves["labeled"].tolist() == [initial, initial + 2, initial + 4]
    assert len(runs) == 2 * 3 and set(runs["strategy"]) == {"mc_dropout", "random"}
    assert ((runs["dice"] >= 0) & (runs["dice"] <= 1)).all()
    round_zero = runs[runs["round"] == 0]["dice"]
    assert round_zero.nunique() == 1                      # round 0 is shared by the strategies
    pool_ids = set(split.loc[split["split"] == "pool", "id"])
    for _, curve in runs.sort_values("round").groupby("strategy"):
        added = [str(ids).split() if isinstance(ids, str) else [] for ids in curve["added_ids"]]
        assert [len(ids) for ids in added] == [0, 2, 2]   # K images revealed per round, none at round 0
        revealed = added[1] + added[2]
        assert set(revealed) <= pool_ids and len(set(revealed)) == 4   # pool images, never twice
    summary = json.loads((project / "metrics" / "simulation.json").read_text())
    assert summary["enabled"] is True and set(summary["strategies"]) == {"mc_dropout", "random"}
    assert {"score_error_spearman", "error_lift"} <= set(summary["strategies"]["random"])
    assert {"spearman", "error_lift"} <= set(runs.columns)
    assert 0 <= summary["full_pool_dice"] <= 1
    figures = sorted(path.name for path in (project / "metrics" / "simulation_figures").iterdir())
    assert figures == ["aulc.png", "labels_to_target.png", "learning_curves.png"]

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    parent = json.loads((project / "models" / "mlflow_run.json").read_text())["run_id"]
    children = mlflow.search_runs(experiment_ids=[json.loads((project / "models" / "mlflow_run.json")
                                                             .read_text())["experiment_id"]],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    assert sorted(children["params.strategy"]) == ["mc_dropout", "random"]
    history = mlflow.MlflowClient().get_metric_history(children["run_id"][0], "test_dice")
    assert sorted(point.step for point in history) == curves["labeled"].tolist()
    assert "simulation_random_aulc" in mlflow.get_run(parent).data.metrics

    shown = run(["dvc", "plots", "show", "--json"], project).stdout
    assert "simulated learning curves" in shown


def test_each_round_trains_a_fresh_model_that_learns(tiny_params):
    """Every fit starts from the seed's initial weights and the optimizer as built (its learning
    rate included: a reset that zeroed the optimizer's variables trained with a rate of 0), and
    with steps_per_epoch it takes that many steps whatever the number of labeled images."""
    from activeseg import synthetic
    from activeseg.preprocess import SplitArrays, Transform
    from activeseg.simulation import SimulationData, Trainer

    transform = Transform(32, 3, "unit", (0.0,), (1.0,))
    items = list(synthetic.generate(8, 32, 2, 3, seed=0))

    def arrays(chosen, has_mask=True):
        return SplitArrays(np.array([items[i][0] for i in chosen]), np.stack([items[i][1] for i in chosen]),
                           np.stack([items[i][2][..., None] // 255 for i in chosen]), np.full(len(chosen), has_mask))

    data = SimulationData(transform, arrays([0, 1]), arrays([2, 3, 4]), arrays([5]), arrays([6, 7]))
    params = tiny_params(train__architecture="unet_plain", train__plain_filters=4, train__batch_size=2,
                         simulation__epochs_per_round=1, simulation__steps_per_epoch=3)
    trainer = Trainer(params, data)
    trainable = lambda model: [w.numpy().copy() for w in model.trainable_weights]  # noqa: E731
    model = trainer.fit(data.labeled_with([]), seed=1)
    assert int(model.optimizer.iterations.numpy()) == 3
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(params.train.learning_rate)
    first = trainable(model)
    trainer.reset(seed=1)
    initial = trainable(trainer.model)
    assert any(not np.array_equal(a, b) for a, b in zip(first, initial)), "training changed no weight"
    trainer.fit(data.labeled_with([0, 1, 2]), seed=1)     # continued training would start from `first`
    assert int(model.optimizer.iterations.numpy()) == 3
    again = trainer.fit(data.labeled_with([]), seed=1)
    for a, b in zip(first, trainable(again)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_simulation_carries_ignore_regions_into_training_and_test_dice():
    from activeseg.preprocess import SplitArrays, Transform
    from activeseg.simulation import SimulationData, dice_on_test

    def arrays(n, has_mask=True):
        masks = np.zeros((n, 8, 8, 1), np.uint8)
        masks[:, :4] = 1
        ignore = np.zeros_like(masks)
        ignore[:, :2] = 1  # half the foreground rows
        return SplitArrays(np.array([str(i) for i in range(n)]), np.zeros((n, 8, 8, 3), np.uint8), masks,
                           np.full(n, has_mask), ignore)

    class AllForeground:
        def __call__(self, images, **_):
            return np.ones(images.shape[:3] + (1,), np.float32)

    data = SimulationData(Transform(8, 3, "unit", (0.0,), (1.0,)), arrays(2), arrays(3), arrays(1), arrays(2))
    labeled = data.labeled_with([0, 2])
    np.testing.assert_array_equal(labeled.ignore, np.concatenate([data.train.ignore, data.pool.ignore[[0, 2]]]))
    # on the 6 counted rows the truth has 2 x 8 foreground pixels of 6 x 8: Dice 2*16 / (16 + 48)
    assert dice_on_test(AllForeground(), data, 0.5) == pytest.approx(0.5)


def _one_image_data(pool_ids, images, masks):
    """A pool of these images and hidden masks; the first image alone is train, val and test."""
    from activeseg import simulation
    from activeseg.preprocess import SplitArrays, Transform

    pool = SplitArrays(pool_ids, images, masks, np.ones(len(pool_ids), bool))
    train = SplitArrays(np.array(["t"]), images[:1], masks[:1], np.ones(1, bool))
    return simulation.SimulationData(Transform(32, 3, "unit", (0.0,), (1.0,)), train, pool, train, train)


def _fixed_model_trainer(on_fit):
    """A Trainer whose every fit returns one fixed pixel-wise model, calling ``on_fit(labeled, seed)``."""
    class FixedModelTrainer:
        def __init__(self, params, data):
            self.model = pixelwise_model()

        def fit(self, labeled, seed, start=None):
            on_fit(labeled, seed)
            return self.model

    return FixedModelTrainer


def test_each_strategy_picks_what_it_scores_and_the_oracle_reveals_the_hidden_masks(tiny_params, monkeypatch):
    """With a model that is unsure exactly on the mid-grey pool images, entropy must reveal those
    two first and random must not; and every revealed mask is the pool's hidden one, not a blank."""
    from activeseg import simulation

    greys = {"black": 5, "dark": 30, "mid": 128, "near_mid": 118, "light": 215, "white": 255, "pale": 240}
    pool_ids = np.array(list(greys))
    images = np.stack([np.full((32, 32, 3), grey, np.uint8) for grey in greys.values()])
    masks = np.zeros((len(greys), 32, 32, 1), np.uint8)
    for index in range(len(greys)):
        masks[index, index:index + 5, 2 * index:2 * index + 7] = 1   # a different hidden mask each
    data = _one_image_data(pool_ids, images, masks)
    fitted = []
    monkeypatch.setattr(simulation, "Trainer", _fixed_model_trainer(lambda labeled, seed: fitted.append(labeled)))
    params = tiny_params(simulation__enabled=True, simulation__strategies=["entropy", "random"],
                         simulation__rounds=1, simulation__images_per_round=2, simulation__seeds=1)
    runs, _ = simulation.simulate(params, data)
    added = {row.strategy: set(row.added_ids.split()) for row in runs[runs["round"] == 1].itertuples()}
    assert added["entropy"] == {"mid", "near_mid"}
    assert added["random"] != {"mid", "near_mid"}
    revealed = [labeled for labeled in fitted if 1 < len(labeled) < 1 + len(greys)]
    assert len(revealed) == 2                                  # one round per strategy
    hidden = dict(zip(pool_ids, masks))
    for labeled in revealed:
        for image_id, mask in zip(labeled.ids[1:], labeled.masks[1:]):
            np.testing.assert_array_equal(mask, hidden[image_id])

    # the round's score/error signal, worked out from the model's formula: every image is predicted
    # all foreground (grey > 127.5) or all background; each hidden mask has 35 of 1024 pixels; no two
    # greys are equally far from 127.5, so no two scores tie (float32 would break a tie either way)
    from activeseg.acquisition import binary_entropy, score_error_agreement

    probability = 1 / (1 + np.exp(-10 * (np.array(list(greys.values())) / 255 - 0.5)))
    errors = np.where(probability > 0.5, 1 - 2 * 35 / (1024 + 35), 1.0)
    expected = score_error_agreement(binary_entropy(probability), errors, 2)
    entropy_round = runs[(runs["strategy"] == "entropy") & (runs["round"] == 1)].iloc[0]
    assert entropy_round["spearman"] == pytest.approx(expected["spearman"])
    assert entropy_round["error_lift"] == pytest.approx(expected["error_lift"])
    random_round = runs[(runs["strategy"] == "random") & (runs["round"] == 1)].iloc[0]
    assert random_round["error_lift"] != pytest.approx(expected["error_lift"])   # random scored its own way


def _tiny_simulation_data(size: int = 32):
    from activeseg import synthetic
    from activeseg.preprocess import SplitArrays, Transform
    from activeseg.simulation import SimulationData

    items = list(synthetic.generate(10, size, 2, 3, seed=0))

    def arrays(chosen):
        return SplitArrays(np.array([items[i][0] for i in chosen]), np.stack([items[i][1] for i in chosen]),
                           np.stack([items[i][2][..., None] // 255 for i in chosen]), np.ones(len(chosen), bool))

    return SimulationData(Transform(size, 3, "unit", (0.0,), (1.0,)), arrays([0, 1]), arrays([2, 3, 4, 5, 6]),
                          arrays([7]), arrays([8, 9]))


@pytest.mark.parametrize("warm_start", [True, False])
def test_each_round_starts_from_its_own_strategys_previous_model_and_round_1_from_round_0s(
        tiny_params, monkeypatch, warm_start):
    """With the real Trainer (which reuses one model) and two strategies of two rounds: with
    warm_start every round's training starts from exactly the weights its strategy's previous round
    ended with (round 1 from round 0's, for the second strategy too, not from the first strategy's
    last model); without it, from the seed's fresh weights. Either way the model score_pool gets in
    a round is the previous round's of that strategy: round 0's in round 1, for every strategy."""
    from activeseg import simulation

    starts, ends, scored = [], [], []

    class RecordingTrainer(simulation.Trainer):
        def fit(self, labeled, seed, start=None):
            original_fit = self.model.fit

            def recording_fit(*args, **kwargs):
                starts.append([value.copy() for value in self.model.get_weights()])
                return original_fit(*args, **kwargs)

            self.model.fit = recording_fit
            try:
                model = super().fit(labeled, seed, start)
            finally:
                del self.model.fit
            ends.append([value.copy() for value in model.get_weights()])
            return model

    def recording_score_pool(model, *args, **kwargs):
        scored.append([value.copy() for value in model.get_weights()])
        return score_pool(model, *args, **kwargs)

    score_pool = simulation.score_pool
    monkeypatch.setattr(simulation, "Trainer", RecordingTrainer)
    monkeypatch.setattr(simulation, "score_pool", recording_score_pool)
    params = tiny_params(train__architecture="unet_plain", train__plain_filters=4, train__batch_size=2,
                         simulation__enabled=True, simulation__strategies=["entropy", "random"], simulation__rounds=2,
                         simulation__images_per_round=1, simulation__seeds=1, simulation__epochs_per_round=1,
                         simulation__steps_per_epoch=2, simulation__warm_start=warm_start)
    simulation.simulate(params, _tiny_simulation_data())
    # fits: 0 full pool (reference), 1 round 0, 2-3 entropy's rounds 1-2, 4-5 random's rounds 1-2
    previous = {2: 1, 3: 2, 4: 1, 5: 4}
    assert len(starts) == 6 and len(scored) == 4
    same = lambda a, b: all(np.array_equal(x, y) for x, y in zip(a, b))  # noqa: E731
    for fit in (1, 2, 3):
        assert not same(ends[fit], starts[1]) and not same(ends[fit], ends[fit - 1]), \
            f"fit {fit} learned nothing: the test could not tell the models apart"
    for fit, before in previous.items():
        assert same(starts[fit], ends[before]) == warm_start, fit
        assert same(starts[fit], starts[1]) != warm_start, fit       # cold: the seed's fresh weights
    for call, fit in enumerate(previous):
        assert same(scored[call], ends[previous[fit]]), f"score_pool call {call} got another model"
    assert same(scored[2], ends[1]) and not same(scored[2], ends[3])  # random's round 1: round 0's model


def test_pool_and_test_images_are_normalised_once_for_all_rounds(tiny_params, monkeypatch):
    from activeseg import simulation

    data = _tiny_simulation_data()
    calls = []
    normalize = data.transform.normalize
    monkeypatch.setattr(type(data.transform), "normalize",
                        lambda self, images: calls.append(len(images)) or normalize(images))

    class FixedModelTrainer:
        def __init__(self, params, data):
            self.model = pixelwise_model()

        def fit(self, labeled, seed, start=None):
            return self.model

    monkeypatch.setattr(simulation, "Trainer", FixedModelTrainer)
    params = tiny_params(simulation__enabled=True, simulation__strategies=["entropy", "random"],
                         simulation__rounds=2, simulation__images_per_round=1, simulation__seeds=2)
    simulation.simulate(params, data)
    assert sorted(calls) == [2, 5]              # the test set and the pool, each once


def test_summary_metrics_log_the_interval_as_two_ends_and_leave_out_what_is_undefined():
    from activeseg.simulation import summary_metrics

    summary = {"strategies": {
        "mc_dropout": {"labels_to_target": None, "aulc": 0.7, "labels_ratio_ci90": [0.0, None]},
        "random": {"labels_to_target": 16, "aulc": 0.6, "labels_ratio_ci90": [1.0, 1.0]}}}
    assert summary_metrics(summary) == {
        "simulation_mc_dropout_aulc": 0.7, "simulation_mc_dropout_labels_ratio_ci90_low": 0.0,
        "simulation_random_labels_to_target": 16, "simulation_random_aulc": 0.6,
        "simulation_random_labels_ratio_ci90_low": 1.0, "simulation_random_labels_ratio_ci90_high": 1.0}


def _budget_runs(dice_of) -> pd.DataFrame:
    """Two strategies, 5 seeds, round 0 at 4 labeled and budgets 6 and 8: ``dice_of(strategy, seed, labeled)``."""
    return runs_table([(strategy, seed, round_number, labeled, dice_of(strategy, seed, labeled))
                       for strategy in ("mc_dropout", "random") for seed in range(1, 6)
                       for round_number, labeled in enumerate((4, 6, 8))])


def test_penalty_matrix_counts_significant_wins_per_budget_only():
    noise = {1: 0.02, 2: -0.01, 3: 0.015, 4: -0.02, 5: 0.005}
    # mc_dropout wins at budget 6 in every seed by 0.03 +- noise / 2 (significant), at 8 by 0.01 on
    # average but with a spread of +-0.1 (not significant): half the budgets
    runs = _budget_runs(lambda strategy, seed, labeled: 0.7 + (
        0 if strategy == "random" else 0.03 + noise[seed] / 2 if labeled == 6 else 0.01 + 5 * noise[seed]
        if labeled == 8 else 0))
    matrix = penalty_matrix(runs, ["mc_dropout", "random"])
    assert matrix == {"mc_dropout": {"random": 0.5}, "random": {"mc_dropout": 0.0}}
    summary = summarize(runs, REFERENCES.assign(seed=[1, 2]), ["mc_dropout", "random"], target_fraction=0.9)
    assert summary["penalty_matrix"] == matrix


def test_penalty_matrix_is_empty_without_a_test_to_make():
    same = _budget_runs(lambda strategy, seed, labeled: 0.7)
    assert penalty_matrix(same, ["mc_dropout", "random"]) == {"mc_dropout": {"random": 0.0},
                                                              "random": {"mc_dropout": 0.0}}
    one_seed = _budget_runs(lambda strategy, seed, labeled: 0.9 if strategy == "mc_dropout" else 0.5)
    assert penalty_matrix(one_seed[one_seed["seed"] == 1], ["mc_dropout", "random"])["mc_dropout"]["random"] == 0.0


def test_random_foreground_reveals_the_pool_items_holding_foreground_and_every_strategy_shares_the_seeds(
        tiny_params, monkeypatch):
    """random_foreground picks by the oracle masks, with no scores; every strategy's rounds train
    with the seed of the loop they are in, the seed random's rounds get (the same initial set,
    initial weights and round-0 model: Ji et al. 2023's seed tuple)."""
    from activeseg import simulation

    pool_ids = np.array([f"p{index}" for index in range(8)])
    images = np.stack([np.full((32, 32, 3), 20 * index, np.uint8) for index in range(8)])
    masks = np.zeros((8, 32, 32, 1), np.uint8)
    masks[[2, 6], 8:20, 8:20] = 1                     # only p2 and p6 hold foreground
    data = _one_image_data(pool_ids, images, masks)
    fitted_seeds = []
    monkeypatch.setattr(simulation, "Trainer", _fixed_model_trainer(lambda labeled, seed: fitted_seeds.append(seed)))
    strategies = ["entropy", "random_foreground", "random"]
    params = tiny_params(simulation__enabled=True, simulation__strategies=strategies, simulation__rounds=2,
                         simulation__images_per_round=2, simulation__seeds=2)
    runs, _ = simulation.simulate(params, data)
    first = runs[(runs["strategy"] == "random_foreground") & (runs["round"] == 1)]
    assert [set(ids.split()) for ids in first["added_ids"]] == [{"p2", "p6"}] * 2
    assert first["spearman"].isna().all()
    # each round's wall time, split: round 0 scores nothing
    later = runs[runs["round"] > 0]
    assert (later[["train_seconds", "score_seconds", "evaluate_seconds"]] >= 0).all().all()
    assert runs.loc[runs["round"] == 0, "score_seconds"].isna().all()
    assert runs.loc[runs["round"] == 0, "train_seconds"].notna().all()
    # per seed: the full-pool reference, round 0, then each strategy's 2 rounds, all with that seed
    assert fitted_seeds == [seed for seed in (params.seed, params.seed + 1) for _ in range(2 + 2 * len(strategies))]
