"""Does the tf.data feed eat the bfloat16 gain? ms a step of the ISBI bench model (bench/params-isbi.yaml)
in float32 and mixed_bfloat16 through several feeds: the project's stream (prefetch 1), without
prefetch, prefetch 2, and the same batches held in memory; 16 timed steps, 2 rounds, medians printed.

    python bench/feed_variants.py all [key=value ...]      # or a comma list of feed names

Figures of 2026-12-03 (AMD EPYC Zen 4): bench/results/feed_variants_amd.json, bench/RESULTS.md.
"""
import json
import statistics
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from isbi_quality import prepared, set_dotted  # noqa: E402

from activeseg.model import build_unet  # noqa: E402
from activeseg.params import parse_params  # noqa: E402
from activeseg.precision import policy, probe_ms_per_step  # noqa: E402
from activeseg.runtime import seed_everything, tf  # noqa: E402
from activeseg.training import compiled, training_dataset  # noqa: E402

STEPS, ROUNDS = 16, 2


def feeds(augmented, transform, params):
    """(name, dataset) of each feed compared."""
    stream = training_dataset(augmented, transform, params.train, 1)
    yield "prefetch1", stream
    yield "no_prefetch", training_dataset(augmented, transform, params.train, 1, prefetch_batches=0)
    yield "prefetch2", training_dataset(augmented, transform, params.train, 1, prefetch_batches=2)
    batches = list(stream.take(STEPS + 2))
    images = tf.concat([batch[0] for batch in batches], 0)
    targets = tf.concat([batch[1] for batch in batches], 0)
    yield "in_memory", tf.data.Dataset.from_tensor_slices((images, targets)).batch(params.train.batch_size).repeat()


def main() -> None:
    chosen = sys.argv[1].split(",") if len(sys.argv) > 1 else ["all"]
    raw = yaml.safe_load((REPO / "bench" / "params-isbi.yaml").read_text())
    for assignment in sys.argv[2:]:
        set_dotted(raw, assignment)
    params = parse_params(raw, "bench/params-isbi.yaml")
    seed_everything(1)
    transform, augmented, _, _ = prepared(params, REPO.parent / "shared" / "datasets" / "isbi2012-em",
                                          Path(tempfile.mkdtemp()))
    measured: dict[str, list[float]] = {}
    for _ in range(ROUNDS):
        for name, dataset in feeds(augmented, transform, params):
            if "all" not in chosen and name not in chosen:
                continue
            for number_format in ("float32", "mixed_bfloat16"):
                with policy(number_format):
                    ms = probe_ms_per_step(lambda: compiled(build_unet(params.train, None, transform.channels),
                                                            params.train), dataset, STEPS)
                measured.setdefault(f"{name}/{number_format}", []).append(round(ms, 1))
                print(name, number_format, round(ms, 1), flush=True)
    print(json.dumps({key: statistics.median(values) for key, values in measured.items()}, indent=1))


if __name__ == "__main__":
    main()
