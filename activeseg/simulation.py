"""Simulation: replay the active-learning loop with the hidden pool masks as the oracle.

With ``split.simulate`` the pool holds images whose masks the split hid (``has_mask``). For each
seed, a model is trained on the initial labeled images (round 0); then, for each strategy, every
round scores the remaining pool with the last round's model, reveals the masks of the K images
:func:`activeseg.acquisition.pick` takes (the top K, or with ``query.candidates_per_pick`` the
best of K clusters of candidates), and trains a fresh model on everything labeled so far, up to
``rounds`` rounds. Each model's pooled test Dice is one point of that strategy's learning curve.
A model trained on the initial images plus the whole pool gives the reference (the full-pool
Dice). The normalised pool and test images are computed once, not per round.

Every model is a fresh U-Net as the train stage builds it (best epoch by validation Dice; see
:class:`Trainer`), or with ``warm_start`` the previous round's model (its weights, batch-norm
statistics included; a fresh optimizer, as the train stage compiles one), trained under the
train stage's convergence rule (:mod:`activeseg.convergence`) with ``epochs_per_round`` as its
ceiling, in the train stage's ``train.precision``, on the labeled images as they are,
without augmentation, so the curves compare strategies and not augmentation luck. With
``steps_per_epoch`` > 0 every round gets the same number of training steps, so a round with few
labeled images is not also an undertrained model (with 0, an epoch is one pass over the labeled
images and small rounds get few steps). Round 0 does not depend on the strategy and
is trained once per seed. With S strategies, R rounds and N seeds that is ``N * (2 + S * R)``
trainings: the reason the stage runs only when ``simulation.enabled`` is true.

Summaries per strategy, from the curve averaged over seeds: ``labels_to_target``, the fewest
labeled images whose mean Dice reaches ``target_fraction`` of the mean full-pool Dice (null when
no round gets there), and ``aulc``, the area under the learning curve divided by the width of the
labeled range (the curve's mean Dice, 1 at best), given as mean and std over seeds.

Each round also records whether the score found the images the last model gets wrong
(:func:`activeseg.acquisition.score_error_agreement` over the remaining pool, K the images per
round): the Spearman correlation of score with true error and the error lift of the K top-scored;
their means over rounds and seeds are in the summary. Noisy curves are explained by these.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import warnings
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pandas as pd

from activeseg.acquisition import (foreground_aware_pick, image_errors, pick, rank, score_error_agreement,
                                   score_pool)
from activeseg.errors import ActivesegError
from activeseg.evaluation import predict_probabilities
from activeseg.metrics import pack_targets, pooled_scores
from activeseg.params import FOREGROUND_RANDOM, Params
from activeseg.preprocess import SplitArrays, Transform

# added_ids: the pool images whose masks the round revealed (space-separated), to see what each strategy picks;
# spearman, error_lift: how well the scores that picked them tracked the true errors (empty at round 0);
# train / score / evaluate_seconds: where the round's wall time went (round 0's model is trained once per seed,
# its time shown in every strategy's row 0; score includes the error signal's own predict)
RUN_COLUMNS = ["strategy", "seed", "round", "labeled", "dice", "added_ids", "spearman", "error_lift",
               "train_seconds", "score_seconds", "evaluate_seconds"]


@dataclasses.dataclass
class SimulationData:
    """The split's arrays: the initial labeled images, the pool (oracle masks), val and test."""

    transform: Transform
    train: SplitArrays
    pool: SplitArrays
    val: SplitArrays
    test: SplitArrays

    def __post_init__(self) -> None:
        keep = self.pool.has_mask.astype(bool)
        self.pool = SplitArrays(self.pool.ids[keep], self.pool.images[keep], self.pool.masks[keep],
                                self.pool.has_mask[keep], self.pool.ignore[keep])
        if len(self.pool) == 0:
            raise ActivesegError("data/prepared/pool.npz: no pool image has a hidden mask to reveal; the "
                                 "simulation needs split.simulate: true and masks for every image")

    @functools.cached_property
    def pool_normalized(self) -> np.ndarray:
        """The pool images as the model takes them, normalised once for every round."""
        return self.transform.normalize(self.pool.images)

    @functools.cached_property
    def test_normalized(self) -> np.ndarray:
        return self.transform.normalize(self.test.images)

    def labeled_with(self, pool_indices: list[int]) -> SplitArrays:
        """The initial labeled images plus the pool images at ``pool_indices``, masks revealed."""
        index = np.asarray(pool_indices, dtype=int)
        return SplitArrays(np.concatenate([self.train.ids, self.pool.ids[index]]),
                           np.concatenate([self.train.images, self.pool.images[index]]),
                           np.concatenate([self.train.masks, self.pool.masks[index]]),
                           np.ones(len(self.train) + len(index), bool),
                           np.concatenate([self.train.ignore, self.pool.ignore[index]]))


def dice_on_test(model, data: SimulationData, threshold: float) -> float:
    probabilities = predict_probabilities(model, data.test_normalized)
    truth = data.test.masks[..., 0].astype(bool)
    return pooled_scores(truth, probabilities > threshold, data.test.ignore)["dice"]


def model_state(model) -> list[np.ndarray]:
    """All of ``model.variables`` now: weights, batch-norm statistics, dropout seed states."""
    return [variable.numpy() for variable in model.variables]


def restore_state(model, state: list[np.ndarray]) -> None:
    for variable, value in zip(model.variables, state):
        variable.assign(value)


class Trainer:
    """Trains "a fresh model" per round by resetting one compiled U-Net rather than building a new
    one: building and tracing a U-Net costs more than a short round's training on a CPU.

    A fresh model for ``seed`` is the state of a U-Net built right after seeding with ``seed``
    (kept once per seed; see :meth:`reset`), the optimizer as built (no moments, the starting
    learning rate), and training seeded with ``seed``. The model, loss, metric, stopping rule and
    number format are the train stage's; the best epoch by validation Dice is kept in memory (a
    checkpoint file per epoch, as the train stage writes, would dominate short rounds)."""

    def __init__(self, params: Params, data: SimulationData) -> None:
        from activeseg.precision import choose, policy
        from activeseg.training import compiled, example_batch

        self.params, self.data = params, data
        self._val = (data.transform.normalize(data.val.images), pack_targets(data.val.masks, data.val.ignore))
        example = example_batch(self._val)
        initial = data.labeled_with([])
        probe_stream = labeled_stream(data.transform.normalize(initial.images),
                                      pack_targets(initial.masks, initial.ignore), params.train.batch_size, params.seed)
        self.precision = choose(params.train.precision, lambda: compiled(self._unet(), params.train, example),
                                probe_stream,
                                "simulation").policy

        def build():
            with policy(self.precision):  # the format is fixed when a layer is built
                return self._unet()

        self._build = build
        self.model = compiled(self._build(), params.train, example)
        # The optimizer's state as built: its variables include the learning rate, so a reset
        # must restore these values (zeroing them all would train with a learning rate of 0)
        self._initial_optimizer = [variable.numpy() for variable in self.model.optimizer.variables]
        self._initial_variables: dict[int, list] = {}

    def _unet(self):
        from activeseg.model import build_unet

        return build_unet(self.params.train, self.data.transform.size, self.data.transform.channels)

    def reset(self, seed: int) -> None:
        """Make the model the fresh model of ``seed``: weights, batch-norm statistics and dropout
        seed states (all of ``model.variables``) of a U-Net built right after seeding, and the
        optimizer as built."""
        from activeseg.runtime import seed_everything

        if seed not in self._initial_variables:
            seed_everything(seed)
            self._initial_variables[seed] = [variable.numpy() for variable in self._build().variables]
        for variable, value in zip(self.model.variables, self._initial_variables[seed]):
            variable.assign(value)
        for variable, value in zip(self.model.optimizer.variables, self._initial_optimizer):
            variable.assign(value)

    def fit(self, labeled: SplitArrays, seed: int, start: Optional[list[np.ndarray]] = None):
        """The model trained on ``labeled`` from its seed's fresh state, or from ``start`` (a
        :func:`model_state`; the optimizer still as built); returns the model."""
        from activeseg.convergence import Convergence, StoppingRule
        from activeseg.runtime import seed_everything

        self.reset(seed)
        if start is not None:
            restore_state(self.model, start)
        seed_everything(seed)
        steps = self.params.simulation.steps_per_epoch
        images, targets = self.data.transform.normalize(labeled.images), pack_targets(labeled.masks, labeled.ignore)
        if not steps:  # one pass over the labeled images per epoch
            steps = math.ceil(len(images) / self.params.train.batch_size)
        # the train stage's convergence rule, the round's epochs its ceiling; the best epoch is kept in memory
        convergence = Convergence(StoppingRule.of(self.params.train, self.params.simulation.epochs_per_round),
                                  self.params.train.learning_rate, steps, announce=False, restore_best_weights=True)
        self.model.fit(labeled_stream(images, targets, self.params.train.batch_size, seed), steps_per_epoch=steps,
                       shuffle=False, validation_data=self._val, epochs=convergence.rule.ceiling,
                       callbacks=convergence.callbacks, verbose=0)
        return self.model


def labeled_stream(images: np.ndarray, targets: np.ndarray, batch_size: int, seed: int):
    """Endless batches of the labeled images, reshuffled each pass (seeded): for a fixed number of
    steps per epoch whatever the number of labeled images."""
    from activeseg.runtime import tf

    return (tf.data.Dataset.from_tensor_slices((images, targets))
            .shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
            .repeat().batch(batch_size).prefetch(1))


def _scored_pick(model, remaining: np.ndarray, data: SimulationData, params: Params, strategy: str, seed: int,
                 round_number: int) -> tuple[list[int], dict]:
    """The pool indices (of ``remaining``) a scoring strategy picks this round with ``model``, and
    how well its scores tracked the errors."""
    pool_images = data.pool_normalized[remaining]
    sim, threshold, round_seed = params.simulation, params.evaluate.threshold, seed * 1000 + round_number
    scored = score_pool(model, pool_images, strategy, params.query.mc_dropout_passes, params.query.reduction,
                        params.query.batch_size, round_seed, params.query.sampling)
    errors = image_errors(data.pool.masks[remaining], predict_probabilities(model, pool_images), threshold,
                          data.pool.ignore[remaining])
    agreement = score_error_agreement(scored.scores, errors, sim.images_per_round)
    ranking = rank(remaining.astype(str), scored.scores, strategy, seed=round_seed)
    added = [int(index) for index in pick(ranking, remaining.astype(str), scored.embeddings, sim.images_per_round,
                                          params.query.candidates_per_pick, round_seed)]
    return added, agreement


def simulate(params: Params, data: SimulationData,
             on_run: Optional[Callable[[str, int, pd.DataFrame], None]] = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run every strategy for every seed; returns the runs table (one row per strategy, seed and
    round; see ``RUN_COLUMNS``) and the full-pool table (seed, labeled, dice). ``on_run`` is called
    with each finished (strategy, seed) curve, e.g. to log it."""
    sim, threshold = params.simulation, params.evaluate.threshold
    trainer = Trainer(params, data)
    rows, references = [], []
    everything = list(range(len(data.pool)))
    for seed in (params.seed + offset for offset in range(sim.seeds)):
        reference = trainer.fit(data.labeled_with(everything), seed)
        references.append({"seed": seed, "labeled": len(data.train) + len(everything),
                           "dice": dice_on_test(reference, data, threshold)})
        print(f"simulation: seed {seed}: full pool ({references[-1]['labeled']} labeled) "
              f"test Dice {references[-1]['dice']:.4f}")
        started = time.perf_counter()
        first_model = trainer.fit(data.labeled_with([]), seed)
        first_seconds = {"train_seconds": time.perf_counter() - started, "score_seconds": None}
        started = time.perf_counter()
        first_dice = dice_on_test(first_model, data, threshold)
        first_seconds["evaluate_seconds"] = time.perf_counter() - started
        first_state = model_state(first_model)   # the trainer reuses the model: keep round 0 apart
        for strategy in sim.strategies:
            chosen: list[int] = []
            restore_state(first_model, first_state)
            model, dice, last_state = first_model, first_dice, first_state
            curve = [{"strategy": strategy, "seed": seed, "round": 0, "labeled": len(data.train), "dice": dice,
                      "added_ids": "", "spearman": None, "error_lift": None, **first_seconds}]
            for round_number in range(1, sim.rounds + 1):
                taken = set(chosen)
                remaining = np.array([index for index in everything if index not in taken])
                if len(remaining) == 0:
                    break
                started = time.perf_counter()
                if strategy == FOREGROUND_RANDOM:   # reads the oracle masks: no scores, nothing to agree with
                    added = [int(remaining[index]) for index in foreground_aware_pick(
                        data.pool.masks[remaining], sim.images_per_round, seed * 1000 + round_number)]
                    agreement = {"spearman": None, "error_lift": None}
                else:
                    added, agreement = _scored_pick(model, remaining, data, params, strategy, seed, round_number)
                seconds = {"score_seconds": time.perf_counter() - started}
                chosen += added
                started = time.perf_counter()
                model = trainer.fit(data.labeled_with(chosen), seed, last_state if sim.warm_start else None)
                last_state = model_state(model)
                seconds["train_seconds"] = time.perf_counter() - started
                started = time.perf_counter()
                dice = dice_on_test(model, data, threshold)
                seconds["evaluate_seconds"] = time.perf_counter() - started
                curve.append({"strategy": strategy, "seed": seed, "round": round_number,
                              "labeled": len(data.train) + len(chosen), "dice": dice,
                              "added_ids": " ".join(str(data.pool.ids[index]) for index in added), **agreement,
                              **seconds})
                print(f"simulation: {strategy} seed {seed} round {round_number}/{sim.rounds}: "
                      f"{curve[-1]['labeled']} labeled, test Dice {dice:.4f}, score/error Spearman "
                      f"{_shown(agreement['spearman'])}, error lift {_shown(agreement['error_lift'])}")
            rows += curve
            if on_run is not None:
                on_run(strategy, seed, pd.DataFrame(curve, columns=RUN_COLUMNS))
    return pd.DataFrame(rows, columns=RUN_COLUMNS), pd.DataFrame(references)


def _shown(value: Optional[float]) -> str:
    return "undefined" if value is None else f"{value:.3f}"


def _mean_or_none(values: pd.Series) -> Optional[float]:
    values = pd.to_numeric(values, errors="coerce").dropna()
    return round(float(values.mean()), 6) if len(values) else None


def learning_curves(runs: pd.DataFrame, strategies) -> pd.DataFrame:
    """Wide table for DVC plots: ``labeled``, then per strategy its mean Dice over seeds (column
    named after the strategy) and the spread (``<strategy>_std``, ``<strategy>_min``, ``<strategy>_max``)."""
    table = pd.DataFrame({"labeled": sorted(runs["labeled"].unique())})
    for strategy in strategies:
        stats = runs[runs["strategy"] == strategy].groupby("labeled")["dice"].agg(["mean", "std", "min", "max"])
        stats = stats.rename(columns={"mean": strategy, "std": f"{strategy}_std", "min": f"{strategy}_min",
                                      "max": f"{strategy}_max"}).fillna({f"{strategy}_std": 0.0})
        table = table.merge(stats, left_on="labeled", right_index=True, how="left")
    return table.round(6)


def area_under_curve(labeled: np.ndarray, dice: np.ndarray) -> float:
    """Trapezoid area over the labeled range divided by its width; a single point is its Dice."""
    if len(labeled) < 2:
        return float(dice[0]) if len(dice) else float("nan")
    return float(np.trapezoid(dice, labeled) / (labeled[-1] - labeled[0]))


def labels_to_target(labeled: np.ndarray, dice: np.ndarray, target: float) -> Optional[int]:
    reached = np.flatnonzero(dice >= target)
    return int(labeled[reached[0]]) if len(reached) else None


def summarize(runs: pd.DataFrame, references: pd.DataFrame, strategies, target_fraction: float) -> dict:
    """Per strategy: labels to reach the target (on the mean curve), its ratio to random's, AULC
    mean / std over seeds, final mean Dice, and (from the runs' ``spearman`` and ``error_lift``
    columns) their means; plus the full-pool Dice and the target."""
    full_pool = float(references["dice"].mean())
    target = target_fraction * full_pool
    curves = learning_curves(runs, strategies)
    summary: dict = {"enabled": True, "full_pool_dice": round(full_pool, 6), "target_dice": round(target, 6),
                     "strategies": {}}
    for strategy in strategies:
        rows = curves[["labeled", strategy]].dropna()
        per_seed = [area_under_curve(group["labeled"].to_numpy(), group["dice"].to_numpy())
                    for _, group in runs[runs["strategy"] == strategy].sort_values("labeled").groupby("seed")]
        summary["strategies"][strategy] = {
            "labels_to_target": labels_to_target(rows["labeled"].to_numpy(), rows[strategy].to_numpy(), target),
            "aulc": round(float(np.mean(per_seed)), 6), "aulc_std": round(float(np.std(per_seed)), 6),
            "final_dice": round(float(rows[strategy].iloc[-1]), 6)}
        if "spearman" in runs:   # the mean over rounds and seeds; None where never defined
            chosen = runs[runs["strategy"] == strategy]
            summary["strategies"][strategy]["score_error_spearman"] = _mean_or_none(chosen["spearman"])
            summary["strategies"][strategy]["error_lift"] = _mean_or_none(chosen["error_lift"])
    random_labels = summary["strategies"].get("random", {}).get("labels_to_target")
    for strategy, values in summary["strategies"].items():
        ratio = values["labels_to_target"] / random_labels if random_labels and values["labels_to_target"] else None
        values["labels_ratio_to_random"] = round(ratio, 4) if ratio is not None else None
        if "random" in summary["strategies"]:
            values["labels_ratio_ci90"] = labels_ratio_interval(runs, references, strategy, target_fraction)
    summary["seeds"] = int(runs["seed"].nunique())
    summary["penalty_matrix"] = penalty_matrix(runs, strategies)
    return summary


def penalty_matrix(runs: pd.DataFrame, strategies, alpha: float = 0.05) -> dict[str, dict[str, float]]:
    """BADGE's pairwise penalty matrix, as nnActive reports it: entry [a][b] adds 1 / (number of
    budgets) for each budget (a labeled count past round 0 that both curves have) where a's test
    Dice is significantly higher than b's over the seeds both ran: a paired one-sided t-test
    (``scipy.stats.ttest_rel``, alternative "greater") at ``alpha``. A win that is not significant
    counts nothing; with fewer than 2 shared seeds, or identical differences, no test is possible
    and nothing counts. Row sums: how often a strategy won; column sums: how often it lost."""
    from scipy.stats import ttest_rel

    table = runs[runs["round"] > 0].pivot_table(index=["labeled", "seed"], columns="strategy", values="dice")
    matrix = {a: {b: 0.0 for b in strategies if b != a} for a in strategies}
    for a in strategies:
        for b in strategies:
            if a == b or a not in table or b not in table:
                continue
            pairs = table[[a, b]].dropna()
            budgets = pairs.index.get_level_values("labeled").unique()
            wins = 0
            for budget in budgets:
                paired = pairs.xs(budget, level="labeled")
                if len(paired) < 2:
                    continue
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)   # constant differences: p is NaN
                    p_value = ttest_rel(paired[a], paired[b], alternative="greater").pvalue
                wins += bool(p_value < alpha)
            matrix[a][b] = round(wins / len(budgets), 6) if len(budgets) else 0.0
    return matrix


def summary_metrics(summary: dict) -> dict[str, float]:
    """The summary's per-strategy figures as MLflow metrics, ``simulation_<strategy>_<key>``.
    MLflow metrics are numbers: ``labels_ratio_ci90`` is logged as its two ends (``_low`` /
    ``_high``), and what is undefined (None: a target never reached, an open interval end) is left
    out rather than logged as a number it is not."""
    metrics = {}
    for strategy, values in summary["strategies"].items():
        for key, value in values.items():
            ends = zip(("_low", "_high"), value) if isinstance(value, (list, tuple)) else [("", value)]
            metrics.update({f"simulation_{strategy}_{key}{suffix}": number for suffix, number in ends
                            if number is not None})
    return metrics


def labels_ratio_interval(runs: pd.DataFrame, references: pd.DataFrame, strategy: str, target_fraction: float,
                          level: float = 0.9, resamples: int = 2000, seed: int = 0) -> list[Optional[float]]:
    """Percentile bootstrap interval over seeds of ``strategy``'s labels-to-target ratio to random's:
    each resample draws as many seeds as there are, with replacement, and recomputes the mean
    curves, the target (``target_fraction`` of their mean full-pool Dice) and the ratio, exactly
    as :func:`summarize` does. A curve that never reaches the target needs "more than all"
    labels (infinity), so a bound can be None: unbounded, or undefined where neither reaches it.
    The quantiles are values actually drawn (no interpolation): with few seeds the resamples take
    few distinct values."""
    seeds = np.array(sorted(runs["seed"].unique()))
    labeled = np.array(sorted(runs["labeled"].unique()))
    full_pool = references.set_index("seed")["dice"].reindex(seeds).to_numpy(float)

    def curves_of(name: str) -> np.ndarray:   # (seed, labeled) Dice, NaN where a seed has no point
        table = runs[runs["strategy"] == name].pivot_table(index="seed", columns="labeled", values="dice")
        return table.reindex(index=seeds, columns=labeled).to_numpy(float)

    draws = np.random.default_rng(seed).integers(0, len(seeds), (resamples, len(seeds)))
    targets = target_fraction * full_pool[draws].mean(axis=1)

    def labels_needed(curves: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # a point that no drawn seed has: NaN
            mean = np.nanmean(curves[draws], axis=1)                          # (resample, labeled)
        reached = mean >= targets[:, None]
        first = np.where(reached.any(axis=1), labeled[reached.argmax(axis=1)], np.inf)
        return first.astype(float)

    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = labels_needed(curves_of(strategy)) / labels_needed(curves_of("random"))
    ratios = ratios[~np.isnan(ratios)]                 # neither reached the target: no ratio
    if len(ratios) == 0:
        return [None, None]
    tail = (1 - level) / 2
    bounds = np.quantile(ratios, [tail, 1 - tail], method="inverted_cdf")
    return [round(float(bound), 4) if np.isfinite(bound) else None for bound in bounds]


def write_figures(out_dir: str | Path, runs: pd.DataFrame, summary: dict, strategies) -> None:
    """``learning_curves.png`` (mean and min–max over seeds), ``labels_to_target.png``, ``aulc.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    curves = learning_curves(runs, strategies)
    figure, axes = plt.subplots(figsize=(6, 4), dpi=100)
    for strategy in strategies:
        rows = curves.dropna(subset=[strategy])
        line, = axes.plot(rows["labeled"], rows[strategy], marker="o", label=strategy,
                          linestyle="--" if strategy == "random" else "-")
        axes.fill_between(rows["labeled"], rows[f"{strategy}_min"], rows[f"{strategy}_max"],
                          color=line.get_color(), alpha=0.15)
    axes.axhline(summary["full_pool_dice"], color="black", linewidth=1, label="full pool")
    axes.axhline(summary["target_dice"], color="grey", linewidth=1, linestyle=":", label="target")
    axes.set(xlabel="labeled images", ylabel="test Dice", title="learning curves (mean, min–max over seeds)")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out_dir / "learning_curves.png")
    plt.close(figure)

    values = summary["strategies"]
    most = int(curves["labeled"].max())
    figure, axes = plt.subplots(figsize=(6, 3.5), dpi=100)
    heights = [values[s]["labels_to_target"] or most for s in strategies]
    bars = axes.bar(strategies, heights, color=["grey" if values[s]["labels_to_target"] is None else "C0"
                                                for s in strategies])
    for bar, strategy in zip(bars, strategies):
        text = "not reached" if values[strategy]["labels_to_target"] is None else str(values[strategy]["labels_to_target"])
        axes.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=8)
    axes.set(ylabel="labeled images", title=f"labels to reach {summary['target_dice']:.3f} test Dice (lower is better)")
    figure.tight_layout()
    figure.savefig(out_dir / "labels_to_target.png")
    plt.close(figure)

    figure, axes = plt.subplots(figsize=(6, 3.5), dpi=100)
    axes.bar(strategies, [values[s]["aulc"] for s in strategies], yerr=[values[s]["aulc_std"] for s in strategies],
             capsize=4)
    axes.set(ylabel="mean Dice over the curve", title="area under the learning curve (higher is better)")
    figure.tight_layout()
    figure.savefig(out_dir / "aulc.png")
    plt.close(figure)


def write_disabled(out_dir: str | Path, strategies) -> None:
    """What the stage leaves when the simulation is off: an empty curves table, so the plot
    definition stays valid."""
    pd.DataFrame(columns=["labeled", *strategies]).to_csv(Path(out_dir) / "learning_curves.csv", index=False)


def write_disabled_figure(path: str | Path) -> None:
    """A small PNG saying the simulation is off, shown by `dvc plots` where its figures would be."""
    import cv2

    from activeseg.imageio import write_png

    canvas = np.full((60, 520, 3), 255, np.uint8)
    cv2.putText(canvas, "simulation off: set simulation.enabled: true", (10, 36),
                cv2.FONT_HERSHEY_SIMPLEX, 0.6, (60, 60, 60), 1, cv2.LINE_AA)
    write_png(path, canvas)
