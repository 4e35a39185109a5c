"""stcl.numerics: the portable kernel caps are set unless the user set them or turned them off."""

from __future__ import annotations

from stcl import numerics


def test_apply_sets_only_what_the_user_left_unset():
    env = {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}
    added = numerics.apply(env)
    assert env["ONEDNN_MAX_CPU_ISA"] == "AVX512_CORE"  # the user's choice wins
    assert added == {"MKL_CBWR": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    assert {k: env[k] for k in added} == added


def test_apply_is_off_with_the_knob():
    for off in ("0", "false", "off"):
        env = {numerics.ENV: off}
        assert numerics.apply(env) == {} and env == {numerics.ENV: off}

