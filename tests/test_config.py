"""Config loading and validation tests."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from station import config as config_mod
from station.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "config" / "packcam.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_defaults_are_valid() -> None:
    cfg = config_mod.load(None)
    assert cfg.session.pre_roll_s == 3.0
    assert cfg.session.max_duration_s == 600
    assert cfg.codes.seal_codes == ("SEAL", "封箱")
    assert cfg.session.waybill_ends_clip is False
    assert {"SF", "YTO", "ZTO", "STO", "YUNDA", "JD", "JT", "EMS"} <= set(
        cfg.codes.waybill_patterns
    )


def test_example_config_loads_and_documents_every_key() -> None:
    cfg = config_mod.load(EXAMPLE)
    assert cfg == config_mod.load(None).with_data_dir("/var/lib/packcam")
    text = EXAMPLE.read_text(encoding="utf-8")
    for section in dataclasses.fields(config_mod.Config):
        assert f"[{section.name}]" in text, section.name
        for f in dataclasses.fields(section.type if isinstance(section.type, type) else
                                    getattr(config_mod, section.type)):  # fmt: skip
            assert re.search(rf"^{f.name}\s*=|^\[{section.name}\.{f.name}\]", text, re.M), (
                f"{section.name}.{f.name} missing from the example config"
            )


def test_unicode_station_name(tmp_path: Path) -> None:
    cfg = config_mod.load(
        write(tmp_path, '[station]\nname = "打包台1"\ntimezone = "Asia/Shanghai"')
    )
    assert cfg.station.name == "打包台1"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[camera]\nbogus = 1", "unknown key in \\[camera\\]: bogus"),
        ("[nope]\nx = 1", "unknown key in \\[\\]: nope"),
        ("[camera]\nbackend = 'webcam'", "camera.backend"),
        ("[camera]\nwidth = 'wide'", "expected an integer"),
        ("[camera]\nwidth = 1281", "even"),
        ("[camera]\nfps = 0", "fps"),
        ("[session]\npre_roll_s = -1", "pre_roll_s"),
        ("[session]\nmax_duration_s = 0", "max_duration_s"),
        ("[session]\nwaybill_ends_clip = 'yes'", "true or false"),
        ("[codes]\norder_patterns = ['(']", "invalid regular expression"),
        ("[codes]\nproduct_prefixes = ['6x']", "a GS1 prefix is 2 or 3 digits"),
        ("[codes]\nproduct_prefixes = ['6']", "a GS1 prefix is 2 or 3 digits"),
        ("[codes]\norder_symbologies = ['ean-13']", "unknown symbology 'ean-13'"),
        ("[codes]\norder_symbologies = 'qrcode'", "list of strings"),
        ("[scanner]\nconfirm_looks = 0", "scanner.confirm_looks"),
        ("[codes]\nseal_codes = 'SEAL'", "list of strings"),
        ("[codes.control_codes]\nX = 'explode'", "seal, test, signout, return or repack"),
        ("[station]\ntimezone = 'Mars/Olympus'", "unknown time zone"),
        ("[station]\nname = ''", "station.name"),
        ("[scanner]\nkeyboard = 'ps2'", "scanner.keyboard"),
        ("[recorder]\ncrf = 99", "crf"),
        ("camera = 3", "must be a table"),
        ("[web]\nframe_cache_mb = 0", "web.frame_cache_mb"),
        ("[web]\nframe_cache_mb = 70000", "web.frame_cache_mb"),
    ],
)
def test_invalid_configs_fail_with_a_clear_message(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_mod.load(write(tmp_path, text))


def test_bad_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        config_mod.load(write(tmp_path, "[camera"))
    with pytest.raises(ConfigError, match="not found"):
        config_mod.load(tmp_path / "missing.toml")


def test_data_dir_override_and_replace(tmp_path: Path) -> None:
    cfg = config_mod.load(None).with_data_dir(tmp_path)
    assert cfg.station.data_dir == tmp_path
    assert cfg.replace("camera", fps=15.0).camera.fps == 15.0
    with pytest.raises(ConfigError):
        cfg.replace("camera", fps=0.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.station.name = "x"  # type: ignore[misc]


def test_overlay_language_is_checked(tmp_path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('[recorder]\noverlay_language = "zh"\n', encoding="utf-8")
    assert config_mod.load(p).recorder.overlay_language == "zh"
    p.write_text('[recorder]\noverlay_language = "fr"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="overlay_language"):
        config_mod.load(p)


def test_idle_minutes_must_not_be_negative(tmp_path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("[web]\nidle_minutes = -1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="idle_minutes"):
        config_mod.load(p)
