"""train.precision auto: which CPUs are probed, and what the probe decides (activeseg.precision)."""

import pytest

from activeseg import precision


def test_bf16_instructions_are_read_from_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 amx_bf16 amx_tile\n")
    assert precision.bf16_instructions(cpuinfo) == ["AMX-BF16", "AVX-512-BF16"]
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2\n")
    assert precision.bf16_instructions(cpuinfo) == []
    assert precision.bf16_instructions(tmp_path / "absent") == []


def test_auto_without_bf16_instructions_is_float32_without_a_probe(monkeypatch):
    monkeypatch.setattr(precision, "ms_per_step", lambda model, data: pytest.fail("probed"))
    choice = precision.choose("auto", build=None, data=None, instructions=[])
    assert choice.policy == "float32" and "no bfloat16 instructions" in choice.reason


@pytest.mark.parametrize("float32_ms, bf16_ms, picked", [(150.0, 100.0, "mixed_bfloat16"), (150.0, 140.0, "float32")])
def test_auto_picks_bf16_only_where_the_probe_measures_it_faster(monkeypatch, capsys, float32_ms, bf16_ms, picked):
    from activeseg.runtime import keras

    timed = {"float32": float32_ms, "mixed_bfloat16": bf16_ms}
    # the stand-in model is its format's name; a second, slower round of each does not count
    rounds = {name: iter([ms, ms * 3]) for name, ms in timed.items()}
    monkeypatch.setattr(precision, "ms_per_step", lambda model, data: next(rounds[model]))
    choice = precision.choose("auto", build=lambda: keras.config.dtype_policy().name, data=None,
                              instructions=["AMX-BF16"])
    assert choice.policy == picked and choice.ms_per_step == timed
    assert f"{float32_ms / bf16_ms:.2f}x" in choice.reason
    assert f"precision {picked}: AMX-BF16" in capsys.readouterr().out
    assert keras.config.dtype_policy().name == "float32"


def test_an_explicit_precision_is_not_probed(monkeypatch):
    monkeypatch.setattr(precision, "ms_per_step", lambda model, data: pytest.fail("probed"))
    assert precision.choose("mixed_bfloat16", None, None, instructions=[]).policy == "mixed_bfloat16"


def test_auto_alternates_the_formats_and_counts_each_ones_fastest_round(monkeypatch):
    from activeseg.runtime import keras

    # bfloat16's first round is slowed by something else on the machine: alone it would pick float32
    rounds = {"float32": iter([150.0, 152.0]), "mixed_bfloat16": iter([400.0, 100.0])}
    order = []

    def timed(model, data):
        order.append(model)
        return next(rounds[model])

    monkeypatch.setattr(precision, "ms_per_step", timed)
    choice = precision.choose("auto", build=lambda: keras.config.dtype_policy().name, data=None,
                              instructions=["AVX-512-BF16"])
    assert order == ["float32", "mixed_bfloat16", "mixed_bfloat16", "float32"]
    assert choice.policy == "mixed_bfloat16" and choice.ms_per_step == {"float32": 150.0, "mixed_bfloat16": 100.0}
