"""stcl.numerics: the portable kernel caps are set unless the user set them or turned them off; values the
libraries would ignore (silently unpinning) and unknown on/off words are refused in one line."""

from __future__ import annotations

import pytest

from stcl import numerics
from stcl.cli import main


def test_apply_sets_only_what_the_user_left_unset():
    env = {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}
    added = numerics.apply(env)
    assert env["ONEDNN_MAX_CPU_ISA"] == "AVX512_CORE"  # the user's choice wins
    assert added == {"MKL_CBWR": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    assert {k: env[k] for k in added} == added


def test_onednn_older_variable_name_counts_as_the_users_choice():
    env = {"DNNL_MAX_CPU_ISA": "avx512_core"}  # oneDNN reads it when ONEDNN_MAX_CPU_ISA is unset
    assert numerics.apply(env) == {"MKL_CBWR": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    assert "ONEDNN_MAX_CPU_ISA" not in env


def test_apply_is_off_with_the_knob():
    for off in ("0", "false", "off", "No", " OFF "):
        env = {numerics.ENV: off}
        assert numerics.apply(env) == {} and env == {numerics.ENV: off}
    for on in ("1", "yes", "ON", "true", ""):
        env = {numerics.ENV: on}
        assert numerics.apply(env) == numerics.PORTABLE


@pytest.mark.parametrize("word", ["disable", "disabled", "n", "2", "of"])
def test_an_unknown_word_is_refused_naming_the_variable_and_the_words(word):
    env = {numerics.ENV: word}
    with pytest.raises(numerics.NumericsError) as err:
        numerics.apply(env)
    message = str(err.value)
    assert "\n" not in message and f"{numerics.ENV}={word!r}" in message
    assert all(w in message for w in (*numerics.ON_WORDS, *numerics.OFF_WORDS))
    assert env == {numerics.ENV: word}  # nothing set


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ONEDNN_MAX_CPU_ISA", "foo"),
        ("ONEDNN_MAX_CPU_ISA", "AVX-2"),
        ("ONEDNN_MAX_CPU_ISA", " AVX2"),
        ("ONEDNN_MAX_CPU_ISA", ""),
        ("DNNL_MAX_CPU_ISA", "avx3"),
        ("MKL_CBWR", "compatible"),  # MKL reads upper case only: this one is ignored
        ("MKL_CBWR", "AVX2,STRICT,FOO"),
        ("ATEN_CPU_CAPABILITY", "AVX2"),  # ATen reads lower case only
        ("ATEN_CPU_CAPABILITY", "avx512_vnni"),
    ],
)
def test_a_value_the_library_would_ignore_is_refused(name, value):
    env = {name: value}
    with pytest.raises(numerics.NumericsError) as err:
        numerics.apply(env)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{name}={value!r}") and "accepted" in message
    assert env == {name: value}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ONEDNN_MAX_CPU_ISA", "avx512_core_amx"),
        ("ONEDNN_MAX_CPU_ISA", "DEFAULT"),
        ("MKL_CBWR", "BRANCH=AVX2,STRICT"),
        ("MKL_CBWR", "AVX512_E1"),
        ("MKL_CBWR", "AUTO"),
        ("ATEN_CPU_CAPABILITY", "default"),
        ("ATEN_CPU_CAPABILITY", "avx512"),
    ],
)
def test_the_libraries_values_are_taken_as_the_users_choice(name, value):
    env = {name: value}
    added = numerics.apply(env)
    assert env[name] == value and name not in added


def test_with_the_pin_off_the_variables_are_left_alone():
    env = {numerics.ENV: "0", "ONEDNN_MAX_CPU_ISA": "foo"}
    assert numerics.apply(env) == {} and env["ONEDNN_MAX_CPU_ISA"] == "foo"


def test_the_cli_refuses_in_one_line_with_exit_1(monkeypatch, capsys):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "foo")
    assert main(["params", "--help"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("stcl: error: ONEDNN_MAX_CPU_ISA='foo'")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setenv(numerics.ENV, "disable")
    assert main(["params", "--help"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{numerics.ENV}='disable'" in err
