"""Acquisition functions against values worked out by hand on tiny arrays, and pool scoring with a
real (tiny) model."""

import math

import numpy as np
import pytest

from activeseg.acquisition import (DIHEDRAL, SCORE_MAXIMUM, binary_entropy, dihedral, distance_weights, image_errors,
                                   pick, pixel_scores, rank, reduce_scores, score_error_agreement, undo_dihedral)

from conftest import pixelwise_model

# Two passes over one image of three pixels: p_t = (0.2, 0.6), (0.5, 0.5) and (0, 1).
SAMPLES = np.array([[[[0.2, 0.5, 0.0]]], [[[0.6, 0.5, 1.0]]]])  # (T=2, N=1, H=1, W=3)
LN2 = math.log(2)
H04 = -(0.4 * math.log(0.4) + 0.6 * math.log(0.6))   # 0.673012
H02 = -(0.2 * math.log(0.2) + 0.8 * math.log(0.8))   # 0.500402

EXPECTED = {
    # variance over passes, divisor T: ((0.2-0.4)^2 + (0.6-0.4)^2) / 2 = 0.04; (0-.5)^2 = 0.25
    "mc_dropout": [0.04, 0.0, 0.25],
    # entropy of the mean probability (0.4, 0.5, 0.5)
    "entropy": [H04, LN2, LN2],
    # H(mean) - mean(H(p_t)): 0.673012 - (0.500402 + 0.673012)/2; 0; ln2 - H(0 or 1) = ln2
    "bald": [H04 - (H02 + H04) / 2, 0.0, LN2],
    # 1 - |2 * mean - 1|
    "margin": [0.8, 1.0, 1.0],
}


def test_hand_values_are_what_they_claim():
    assert H04 == pytest.approx(0.673012, abs=1e-6)
    assert H04 - (H02 + H04) / 2 == pytest.approx(0.086305, abs=1e-6)


@pytest.mark.parametrize("strategy", sorted(EXPECTED))
def test_pixel_scores_match_hand_computed_values(strategy):
    scores = pixel_scores(strategy, SAMPLES)
    assert scores.shape == (1, 1, 3)
    np.testing.assert_allclose(scores[0, 0], EXPECTED[strategy], atol=1e-5)
    assert scores.max() <= SCORE_MAXIMUM[strategy] + 1e-9


def test_binary_entropy_is_ln2_at_half_and_zero_at_certainty():
    np.testing.assert_allclose(binary_entropy(np.array([0.5, 0.0, 1.0])), [LN2, 0.0, 0.0], atol=1e-5)


def test_bald_is_never_negative_even_where_clipping_bites():
    samples = np.array([[[[1e-9, 1 - 1e-9]]], [[[0.0, 1.0]]]])
    assert (pixel_scores("bald", samples) >= 0).all()


def test_agreeing_passes_have_no_model_uncertainty_but_can_have_entropy():
    samples = np.full((4, 1, 2, 2), 0.5)
    assert pixel_scores("mc_dropout", samples).max() == 0.0
    assert pixel_scores("bald", samples).max() == pytest.approx(0.0, abs=1e-9)
    assert pixel_scores("entropy", samples).min() == pytest.approx(LN2)


def test_unknown_strategy_and_reduction_are_refused():
    with pytest.raises(ValueError):
        pixel_scores("coin", SAMPLES)
    with pytest.raises(ValueError):
        reduce_scores(np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), "median")


def test_mean_reduction_averages_every_pixel():
    scores = np.array([[[1.0, 2.0], [3.0, 6.0]], [[0.0, 0.0], [0.0, 1.0]]])
    np.testing.assert_allclose(reduce_scores(scores, np.zeros_like(scores), "mean"), [3.0, 0.25])


def test_foreground_border_reduction_averages_the_dilated_prediction_only():
    probability = np.zeros((2, 9, 9))
    probability[0, 4, 4] = 0.9                   # one predicted pixel: its 5x5 neighbourhood counts
    scores = np.full((2, 9, 9), 100.0)
    scores[0, 2:7, 2:7] = 1.0
    scores[0, 4, 4] = 26.0                       # (24 * 1 + 26) / 25 = 2
    reduced = reduce_scores(scores, probability, "foreground_border")
    assert reduced[0] == pytest.approx(2.0)
    assert reduced[1] == 0.0                     # nothing predicted → 0, not the background's 100


def test_distance_weighted_reduction_weighs_the_inside_of_predicted_objects():
    probability = np.zeros((3, 9, 9))
    probability[0, 1:8, 1:8] = 0.9       # a 7x7 square: rings at distance 1 (24 px), 2 (16), 3 (8), 4 (1)
    probability[2] = 0.9                 # everything predicted: no boundary, weight 1 everywhere
    weights = distance_weights(probability[0])
    assert weights[4, 4] == 1.0 and weights[1, 1] == pytest.approx(0.25) and weights[0, 0] == 0.0
    ones = np.ones((3, 9, 9))
    np.testing.assert_allclose(reduce_scores(ones, probability, "distance_weighted"),
                               [(24 * 1 + 16 * 2 + 8 * 3 + 4) / 4 / 81, 0.0, 1.0])
    border = np.zeros((2, 9, 9))
    border[0, 1:8, 1:8] = 1.0
    border[0, 2:7, 2:7] = 0.0            # doubt on the predicted boundary ring only: weight 24 x 0.25
    border[1, 2:7, 2:7] = 0.5            # half of it, but inside: 0.5 x (16 x 0.5 + 8 x 0.75 + 1)
    reduced = reduce_scores(border, probability[[0, 0]], "distance_weighted")
    np.testing.assert_allclose(reduced, [24 * 0.25 / 81, 0.5 * 15 / 81])
    assert reduced[0] < reduced[1] and reduce_scores(border, probability[[0, 0]], "mean")[0] > \
        reduce_scores(border, probability[[0, 0]], "mean")[1]   # the plain mean ranks them the other way


def test_the_eight_views_are_distinct_and_each_is_undone():
    image = np.arange(16.0).reshape(1, 4, 4)
    views = [dihedral(image, turns, flipped) for turns, flipped in DIHEDRAL]
    assert len({view.tobytes() for view in views}) == 8
    assert DIHEDRAL[0] == (0, False) and np.array_equal(views[0], image)
    for view, (turns, flipped) in zip(views, DIHEDRAL):
        np.testing.assert_array_equal(undo_dihedral(view, turns, flipped), image)
    np.testing.assert_array_equal(dihedral(image, 1, False)[0], np.rot90(image[0]))
    np.testing.assert_array_equal(dihedral(image, 0, True)[0], image[0, :, ::-1])


def test_tta_turns_each_prediction_back_into_line():
    """A pixel-by-pixel model predicts each flipped or turned view as the flipped or turned
    prediction: turned back, all 8 samples are the plain prediction, so they agree everywhere."""
    from activeseg.acquisition import mc_samples

    images = np.random.default_rng(3).random((3, 32, 32, 3)).astype(np.float32)
    images[:, :8, :20] = 0.0                         # asymmetric: a wrong turn would not line up
    model = pixelwise_model()
    plain = model.predict(images, verbose=0)[..., 0]
    (_, samples, embeddings), = list(mc_samples(model, images, passes=2, batch_size=4, sampling="tta"))
    assert samples.shape == (8, 3, 32, 32) and embeddings.shape[0] == 3
    for sample in samples:
        np.testing.assert_allclose(sample, plain, atol=1e-5)
    assert pixel_scores("mc_dropout", samples).max() < 1e-9


def test_tta_samples_of_a_u_net_differ_and_start_with_the_plain_prediction(tiny_model, pool_images):
    from activeseg.acquisition import mc_samples, score_pool

    (_, samples, _), = list(mc_samples(tiny_model, pool_images, passes=2, batch_size=8, sampling="tta"))
    assert samples.shape == (8, 5, 32, 32)
    np.testing.assert_allclose(samples[0], tiny_model.predict(pool_images, verbose=0)[..., 0], atol=1e-5)
    assert samples.std(axis=0).mean() > 1e-4        # a random U-Net is not symmetric: the views disagree
    scored = score_pool(tiny_model, pool_images, "bald", 2, "mean", 2, 0, sampling="tta")
    np.testing.assert_allclose(scored.maps, pixel_scores("bald", samples), atol=1e-5)


def test_query_sampling_and_reduction_are_checked_and_change_the_scores(tiny_params, tiny_model, pool_images):
    """sampling tta: the 8 dihedral views, no dropout draws, so scoring twice gives the same scores
    (head_dropout's passes draw new masks each time); reduction distance_weighted: each pixel's score
    weighted by its distance to the 0.5 boundary of the mean prediction, so the predicted background
    counts nothing (the plain mean counts it)."""
    from activeseg.acquisition import score_pool
    from activeseg.errors import ActivesegError

    with pytest.raises(ActivesegError, match="query.sampling"):
        tiny_params(query__sampling="flips")
    with pytest.raises(ActivesegError, match="query.reduction"):
        tiny_params(query__reduction="median")
    default = tiny_params().query
    query = tiny_params(query__sampling="tta", query__reduction="distance_weighted").query
    assert (query.sampling, query.reduction, default.sampling, default.reduction) == (
        "tta", "distance_weighted", "head_dropout", "mean")

    def score(options, model=tiny_model, images=pool_images):
        return score_pool(model, images, "bald", options.mc_dropout_passes, options.reduction, 8, 0, options.sampling)

    tta, again = score(query), score(query)
    np.testing.assert_array_equal(tta.scores, again.scores)
    dropout, other_draw = score(default), score(default)
    assert not np.allclose(dropout.scores, other_draw.scores)
    # bright left half (predicted foreground), dark right half: both halves equally doubtful per pixel
    halves = np.full((1, 32, 32, 3), 0.1, np.float32)
    halves[:, :, :16] = 0.9
    pixelwise, plain = pixelwise_model(), tiny_params(query__sampling="tta").query
    weighted, whole = score(query, pixelwise, halves), score(plain, pixelwise, halves)
    np.testing.assert_allclose(whole.maps, weighted.maps)
    np.testing.assert_allclose(whole.scores, whole.maps.mean(), rtol=1e-5)
    np.testing.assert_allclose(weighted.scores, (whole.maps[0] * distance_weights(whole.probabilities[0])).mean(),
                               rtol=1e-5)
    assert weighted.scores[0] < 0.6 * whole.scores[0]   # the background half counts nothing


def test_rank_orders_by_score_and_numbers_from_one():
    table = rank(np.array(["b", "a", "c", "d"]), np.array([0.5, 0.5, 0.9, 0.1]), "entropy")
    assert table["id"].tolist()[0] == "c" and table["id"].tolist()[3] == "d"
    assert set(table["id"].tolist()[1:3]) == {"a", "b"}
    assert table["rank"].tolist() == [1, 2, 3, 4]
    assert list(table.columns) == ["id", "score", "rank", "strategy"]
    assert set(table["strategy"]) == {"entropy"}


def test_rank_breaks_ties_by_a_seeded_shuffle_not_by_id():
    """A weak model scores many tiles 0: the annotator must not get the alphabetically first ones."""
    ids = np.array([f"image{number:02d}@y{y}_x0" for number in range(10) for y in (0, 32, 64)])
    scores = np.zeros(len(ids))
    scores[[7, 20]] = [0.2, 0.1]
    order = rank(ids, scores, "entropy", seed=3)["id"].tolist()
    assert order[:2] == [ids[7], ids[20]]
    assert order[2:] != sorted(order[2:])                               # not by id
    assert order == rank(ids[::-1], scores[::-1], "entropy", seed=3)["id"].tolist()   # not by input order
    assert order != rank(ids, scores, "entropy", seed=4)["id"].tolist()


# Six candidates in two tight groups far apart: (a, b, c) near 0, (d, e, f) near 10; scores rank
# them a > b > c > d > e > f.
PICK_IDS = np.array(["f", "e", "d", "c", "b", "a"])
PICK_EMBEDDINGS = np.array([[10.2, 10.0], [10.1, 9.9], [10.0, 10.1], [0.2, 0.0], [0.1, 0.1], [0.0, 0.2]])
PICK_RANKING = rank(PICK_IDS, np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]), "mc_dropout")


def test_pick_with_one_candidate_per_pick_is_the_top_k():
    assert pick(PICK_RANKING, PICK_IDS, PICK_EMBEDDINGS, 2, 1, seed=0) == ["a", "b"]


def test_pick_with_candidates_takes_the_best_of_each_cluster():
    # top 3 x 2 = all six; two clusters: the best of (a, b, c) and the best of (d, e, f)
    assert pick(PICK_RANKING, PICK_IDS, PICK_EMBEDDINGS, 2, 3, seed=0) == ["a", "d"]
    # only the top 2 x 2 = (a, b, c, d) are candidates: a and d again, whatever the seed
    assert pick(PICK_RANKING, PICK_IDS, PICK_EMBEDDINGS, 2, 2, seed=5) == ["a", "d"]


# Asymmetric: the ids are not in rank order and not every id is a candidate, so clustering the
# rows of the wrong images (the first rows, or the rows in rank order) groups them differently.
# Ranked a > b > c > d > e > f; with 2 picks of 2 candidates each the candidates are a, b, c, d,
# whose own embeddings form the groups (a, b) near 0 and (c, d) near 10: the picks are a and c.
# The first four rows (f, e, d, c) would put a, b, c near (0, 10, 10) and d near 10: a and b.
ASYMMETRIC_IDS = np.array(["f", "e", "d", "c", "b", "a"])
ASYMMETRIC_EMBEDDINGS = np.array([[0.1, 0.0], [10.0, 10.1], [10.1, 10.0], [9.9, 10.0], [0.0, 0.1], [0.1, 0.1]])
ASYMMETRIC_RANKING = rank(ASYMMETRIC_IDS, np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]), "entropy")


def test_pick_clusters_each_candidate_by_its_own_embedding_row():
    assert pick(ASYMMETRIC_RANKING, ASYMMETRIC_IDS, ASYMMETRIC_EMBEDDINGS, 2, 1, seed=0) == ["a", "b"]   # top-K
    for seed in (0, 1, 2):
        assert pick(ASYMMETRIC_RANKING, ASYMMETRIC_IDS, ASYMMETRIC_EMBEDDINGS, 2, 2, seed=seed) == ["a", "c"]


def test_pick_gives_k_distinct_candidates_best_first_even_for_identical_embeddings():
    chosen = pick(PICK_RANKING, PICK_IDS, np.zeros((6, 2)), 3, 2, seed=0)
    assert len(set(chosen)) == 3 and chosen[0] == "a"    # the best candidate always heads its cluster
    assert chosen == sorted(chosen)                       # in rank order (ids are alphabetical here)


def test_pick_never_clusters_random():
    ranking = rank(PICK_IDS, np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]), "random")
    assert pick(ranking, PICK_IDS, PICK_EMBEDDINGS, 2, 3, seed=0) == ["a", "b"]


def test_score_error_agreement_on_a_hand_made_table():
    # ranks (1 = lowest) of the scores: (3, 4, 1, 5, 2); of the errors: (4, 3, 1, 5, 2);
    # d = (-1, 1, 0, 0, 0), sum d^2 = 2, rho = 1 - 6 * 2 / (5 * 24) = 0.9
    scores = np.array([0.3, 0.8, 0.1, 0.9, 0.2])
    errors = np.array([0.6, 0.4, 0.0, 1.0, 0.2])
    agreement = score_error_agreement(scores, errors, count=2)
    assert agreement["spearman"] == pytest.approx(0.9)
    # the top 2 by score are images 3 and 1: errors (1.0 + 0.4) / 2 = 0.7 over the mean 0.44
    assert agreement["error_lift"] == pytest.approx(0.7 / 0.44)
    assert score_error_agreement(errors, errors, 2)["spearman"] == pytest.approx(1.0)
    assert score_error_agreement(-errors, errors, 2)["spearman"] == pytest.approx(-1.0)
    # ties share their mean rank: scores (1, 1, 2) → ranks (1.5, 1.5, 3); errors ranks (1, 2, 3)
    assert score_error_agreement(np.array([1.0, 1.0, 2.0]), np.array([0.1, 0.2, 0.3]), 1)["spearman"] == \
        pytest.approx(np.corrcoef([1.5, 1.5, 3], [1, 2, 3])[0, 1])


def test_score_error_agreement_is_none_where_undefined():
    assert score_error_agreement(np.ones(4), np.array([0.1, 0.2, 0.3, 0.4]), 2)["spearman"] is None
    assert score_error_agreement(np.array([0.1, 0.2]), np.zeros(2), 1) == {"spearman": None, "error_lift": None}


def test_image_errors_are_one_minus_dice_per_image():
    truth = np.zeros((3, 2, 2, 1), np.uint8)
    truth[0, 0, :] = 1                                  # two pixels, one of them predicted: Dice 2/3
    truth[1] = 1                                        # all four predicted: Dice 1
    probabilities = np.zeros((3, 2, 2))
    probabilities[0, 0, 0] = probabilities[1] = 0.9
    probabilities[2, 1, 1] = 0.7                        # nothing there, one predicted: Dice 0
    np.testing.assert_allclose(image_errors(truth, probabilities, 0.5), [1 / 3, 0.0, 1.0])
    ignore = np.zeros_like(truth)
    ignore[0, 0, 1] = 1                                 # the missed pixel left out: image 0 is right
    np.testing.assert_allclose(image_errors(truth, probabilities, 0.5, ignore), [0.0, 0.0, 1.0])


@pytest.fixture(scope="module")
def tiny_model():
    from activeseg.model import build_unet
    from activeseg.params import TrainParams
    from activeseg.runtime import seed_everything

    seed_everything(0)
    return build_unet(TrainParams(dropout=0.5), 32, 3)


@pytest.fixture(scope="module")
def pool_images():
    return np.random.default_rng(0).random((5, 32, 32, 3)).astype(np.float32)


def test_one_pass_without_dropout_is_the_plain_prediction(tiny_model, pool_images):
    from activeseg.acquisition import mc_samples

    batches = list(mc_samples(tiny_model, pool_images, passes=1, batch_size=2))
    assert [start for start, _, _ in batches] == [0, 2, 4]
    plain = tiny_model.predict(pool_images, verbose=0)[..., 0]
    stacked = np.concatenate([samples[0] for _, samples, _ in batches])
    np.testing.assert_allclose(stacked, plain, atol=1e-5)


def test_mc_passes_differ_and_their_mean_is_near_the_plain_prediction(tiny_model, pool_images):
    from activeseg.acquisition import mc_samples

    (_, samples, _), = list(mc_samples(tiny_model, pool_images, passes=16, batch_size=8))
    assert samples.shape == (16, 5, 32, 32)
    assert samples.std(axis=0).mean() > 1e-4                # dropout is on: the passes disagree
    plain = tiny_model.predict(pool_images, verbose=0)[..., 0]
    assert np.abs(samples.mean(axis=0) - plain).mean() < 0.05


@pytest.mark.parametrize("strategy", ["mc_dropout", "entropy", "bald", "margin", "random"])
def test_score_pool_gives_a_score_map_and_probability_per_image(tiny_model, pool_images, strategy):
    from activeseg.acquisition import score_pool

    result = score_pool(tiny_model, pool_images, strategy, passes=3, reduction="mean", batch_size=2, seed=1)
    assert result.scores.shape == (5,) and result.maps.shape == result.probabilities.shape == (5, 32, 32)
    assert np.isfinite(result.scores).all()
    assert ((result.probabilities >= 0) & (result.probabilities <= 1)).all()
    assert result.embeddings.shape[0] == 5 and np.isfinite(result.embeddings).all()
    if strategy != "random":   # the image score is the mean of its map
        np.testing.assert_allclose(result.scores, result.maps.reshape(5, -1).mean(axis=1), rtol=1e-5)


def test_score_pool_keeps_each_image_embedding_on_its_own_row_across_batches(tiny_model, pool_images):
    from activeseg.acquisition import score_pool

    batched = score_pool(tiny_model, pool_images, "entropy", 2, "mean", batch_size=2, seed=0)
    one_by_one = np.concatenate([score_pool(tiny_model, pool_images[[index]], "entropy", 2, "mean", 1, 0).embeddings
                                 for index in range(len(pool_images))])
    assert not np.allclose(one_by_one[0], one_by_one[1:])     # the images differ, so a mix-up shows
    np.testing.assert_allclose(batched.embeddings, one_by_one, rtol=1e-4, atol=1e-5)


def test_a_tiles_padding_scores_nothing(tiny_model, pool_images):
    """Pool tiles: the reflection padding is no pixel to annotate, so it adds nothing to the score."""
    from activeseg.acquisition import score_pool

    padding = np.zeros((5, 32, 32, 1), np.uint8)
    padding[1, :, 8:] = 1                               # tile 1 holds 8 real columns
    whole = score_pool(tiny_model, pool_images, "entropy", 2, "mean", 2, 0, sampling="tta")   # no dropout draws
    padded = score_pool(tiny_model, pool_images, "entropy", 2, "mean", 2, 0, sampling="tta", padding=padding)
    np.testing.assert_allclose(padded.scores[[0, 2, 3, 4]], whole.scores[[0, 2, 3, 4]], rtol=1e-5)
    np.testing.assert_allclose(padded.scores[1], whole.maps[1, :, :8].sum() / 32 ** 2, rtol=1e-5)
    assert not padded.maps[1, :, 8:].any()


def test_a_pool_of_tiles_scores_in_the_memory_of_its_tiles(tiny_model, pool_images):
    """Without maps kept (the query stage's pool of tiles), the same scores and no per-pixel maps;
    the images may be a view that normalises each batch as it is taken."""
    from activeseg.acquisition import score_pool
    from activeseg.preprocess import Transform

    uint8 = np.round(pool_images * 255).astype(np.uint8)
    transform = Transform(32, 3, "zscore", (0.4,) * 3, (0.2,) * 3)
    kept = score_pool(tiny_model, transform.normalize(uint8), "margin", 2, "mean", 2, 0, sampling="tta")
    lean = score_pool(tiny_model, transform.normalized(uint8), "margin", 2, "mean", 2, 0, sampling="tta",
                      keep_maps=False)
    assert lean.maps is None and lean.probabilities is None
    np.testing.assert_allclose(lean.scores, kept.scores, rtol=1e-6)
    np.testing.assert_allclose(lean.embeddings, kept.embeddings, rtol=1e-5, atol=1e-6)


def test_random_scores_follow_the_seed(tiny_model, pool_images):
    from activeseg.acquisition import score_pool

    first = score_pool(tiny_model, pool_images, "random", 2, "mean", 4, seed=7).scores
    again = score_pool(tiny_model, pool_images, "random", 2, "mean", 4, seed=7).scores
    other = score_pool(tiny_model, pool_images, "random", 2, "mean", 4, seed=8).scores
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_empty_pool_scores_to_nothing(tiny_model):
    from activeseg.acquisition import score_pool

    result = score_pool(tiny_model, np.zeros((0, 32, 32, 3), np.float32), "entropy", 2, "mean", 4, 0)
    assert result.scores.shape == (0,) and result.maps.shape == (0, 32, 32)


def test_mc_network_sampling_runs_the_whole_network_per_pass(pool_images):
    """``mc_network``: T whole-network passes per image, each pass of its own image (without
    dropout every pass is exactly that image's plain prediction, batches and passes in order);
    with dropout through the network the passes disagree."""
    import dataclasses

    from activeseg.acquisition import mc_samples, score_pool
    from activeseg.model import build_unet
    from activeseg.params import TrainParams
    from activeseg.runtime import seed_everything
    from activeseg.training import build_loss

    seed_everything(0)
    params = TrainParams(architecture="unet_plain", plain_filters=4, dropout=0.0, dropout_placement="encoder")
    still = build_unet(params, 32, 3)
    plain = still.predict(pool_images, verbose=0)[..., 0]
    batches = list(mc_samples(still, pool_images, passes=3, batch_size=2, sampling="mc_network"))
    assert [start for start, _, _ in batches] == [0, 2, 4]
    samples = np.concatenate([batch for _, batch, _ in batches], axis=1)
    assert samples.shape == (3, 5, 32, 32)
    for sample in samples:
        np.testing.assert_allclose(sample, plain, atol=1e-5)
    embeddings = np.concatenate([embedding for _, _, embedding in batches])
    one_pass = list(mc_samples(still, pool_images, passes=1, batch_size=8))[0][2]
    np.testing.assert_allclose(embeddings, one_pass, rtol=1e-4, atol=1e-5)
    noisy = build_unet(dataclasses.replace(params, dropout=0.5), 32, 3)
    noisy.compile(loss=build_loss("bce+dice"))       # as the simulation's model is: cloning it must still work
    scored = score_pool(noisy, pool_images, "mc_dropout", 8, "mean", 2, 0, sampling="mc_network")
    assert scored.scores.shape == (5,) and (scored.scores > 1e-4).all()
    # what the encoder dropout adds: the passes differ in the features reaching the head, so their
    # averaged embedding is not the plain features'; with dropout in the head only, it is exactly
    fixed_features = list(mc_samples(noisy, pool_images, passes=1, batch_size=8))[0][2]
    assert np.abs(scored.embeddings - fixed_features).max() > 1e-3
    head_only = build_unet(dataclasses.replace(params, dropout=0.5, dropout_placement="head"), 32, 3)
    head_scored = score_pool(head_only, pool_images, "mc_dropout", 8, "mean", 2, 0, sampling="mc_network")
    np.testing.assert_allclose(head_scored.embeddings, list(mc_samples(head_only, pool_images, passes=1,
                                                                       batch_size=8))[0][2], rtol=1e-4, atol=1e-5)
    assert (head_scored.scores > 1e-4).all()   # the head's dropout alone passes the old check: it was no check


def test_query_sampling_mc_network_and_dropout_placement_are_checked_and_sample_the_features(tiny_params,
                                                                                               pool_images):
    """The parsed params do what they say: dropout_placement encoder builds a U-Net with a dropout
    layer after each of its 4 poolings and the bottleneck, and sampling mc_network runs those in
    every pass (the features vary), where head_dropout samples the head over fixed features."""
    from activeseg.acquisition import mc_samples, score_pool
    from activeseg.errors import ActivesegError
    from activeseg.model import build_unet
    from activeseg.runtime import keras, seed_everything

    params = tiny_params(query__sampling="mc_network", train__dropout_placement="encoder", train__plain_filters=4)
    assert (params.query.sampling, params.train.dropout_placement) == ("mc_network", "encoder")
    with pytest.raises(ActivesegError, match="params.yaml: `?train.dropout_placement"):
        tiny_params(train__dropout_placement="everywhere")
    with pytest.raises(ActivesegError, match="query.sampling"):
        tiny_params(query__sampling="mc_networks")
    seed_everything(0)
    model = build_unet(params.train, 32, 3)
    features = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    inner = [layer.name for layer in features.layers if isinstance(layer, keras.layers.Dropout)]
    assert len(inner) == 5, inner
    fixed_features = list(mc_samples(model, pool_images, passes=1, batch_size=8))[0][2]

    def embeddings(sampling):
        return score_pool(model, pool_images, params.query.strategy, params.query.mc_dropout_passes,
                          params.query.reduction, 8, 0, sampling).embeddings

    assert np.abs(embeddings(params.query.sampling) - fixed_features).max() > 1e-3
    np.testing.assert_allclose(embeddings(tiny_params().query.sampling), fixed_features, rtol=1e-4, atol=1e-5)




def _pool_masks(count: int = 30) -> np.ndarray:
    """Item 0 all foreground (no border inside it), items 1 and 2 a square (a border), the rest empty."""
    masks = np.zeros((count, 16, 16, 1), np.uint8)
    masks[0] = 1
    masks[1:3, 4:10, 4:10] = 1
    return masks


def test_random_foreground_takes_a_third_holding_foreground_and_a_third_on_a_border():
    from activeseg.acquisition import foreground_aware_pick

    masks = _pool_masks()
    for seed in range(20):   # uniform draws would take 2 of the 3 foreground items out of 30 about once in 40
        picks = foreground_aware_pick(masks, 3, seed)
        assert len(set(picks)) == 3 and set(picks) <= set(range(30))
        assert len(set(picks) & {0, 1, 2}) >= 2 and set(picks) & {1, 2}   # item 0 has no border
        assert foreground_aware_pick(masks, 3, seed) == picks                 # seeded


def test_random_foreground_draws_uniformly_what_no_item_can_fill():
    from activeseg.acquisition import foreground_aware_pick

    empty = np.zeros((5, 8, 8), np.uint8)
    assert sorted(foreground_aware_pick(empty, 5, 0)) == [0, 1, 2, 3, 4]
    assert len(set(foreground_aware_pick(_pool_masks(4), 4, 1))) == 4
