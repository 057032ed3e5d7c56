"""The config schema drives validation, check-config, the example file and the docs table."""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from pathlib import Path
from typing import Any

import pytest

from station import config as config_mod
from station import configdoc
from station.capture import barcodes, codes
from station.cli import main
from station.config import Config, check_settings, setting_of
from station.errors import EXIT_OK, EXIT_USAGE, ConfigError
from station.recording import overlay, writer
from web import i18n, summary

REPO = Path(__file__).resolve().parents[1]


def every_setting() -> list[tuple[str, dataclasses.Field[Any], Any]]:
    """(section name, field, type) of every key the schema declares."""
    out = []
    for sf in dataclasses.fields(Config):
        cls = typing.get_type_hints(Config)[sf.name]
        hints = typing.get_type_hints(cls)
        out += [(sf.name, f, hints[f.name]) for f in dataclasses.fields(cls)]
    return out


SETTINGS = every_setting()
IDS = [f"{s}.{f.name}" for s, f, _ in SETTINGS]


@pytest.mark.parametrize("rel", sorted(configdoc.generated(), key=str))
def test_generated_files_match_the_schema(rel: Path) -> None:
    expected = configdoc.generated()[rel]
    actual = (REPO / rel).read_text(encoding="utf-8")
    assert actual == expected, (
        f"{rel} differs from the schema in station/config.py: run `make config-docs`"
    )


def test_the_generator_writes_and_checks(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "docs").mkdir()
    assert configdoc.main(["--check", "--root", str(tmp_path)]) == 1  # missing: stale
    assert configdoc.main(["--root", str(tmp_path)]) == 0
    assert configdoc.main(["--check", "--root", str(tmp_path)]) == 0
    doc = tmp_path / configdoc.DOCS
    doc.write_text(doc.read_text(encoding="utf-8") + "hand edit\n", encoding="utf-8")
    assert configdoc.main(["--check", "--root", str(tmp_path)]) == 1


def test_the_example_file_is_the_defaults_and_names_every_key() -> None:
    text = (REPO / configdoc.EXAMPLE).read_text(encoding="utf-8")
    data = tomllib.loads(text)
    assert config_mod.from_dict(data) == Config()
    for section, f, _ in SETTINGS:
        assert f.name in data[section], f"{section}.{f.name}"


@pytest.mark.parametrize(("section", "f", "tp"), SETTINGS, ids=IDS)
def test_every_key_is_explained_in_the_docs_table(section: str, f: Any, tp: Any) -> None:
    s = setting_of(f)
    assert s.help, f"{section}.{f.name} has no help text"
    assert not set(s.notes) - set(s.choices), "notes only on choices"
    doc = (REPO / configdoc.DOCS).read_text(encoding="utf-8")
    block = doc.split(f"## [{section}]\n", 1)[1].split("\n## ", 1)[0]
    assert f"| `{f.name}` | {configdoc.type_word(tp)} |" in block


def _section(cfg: Config, name: str) -> Any:
    return getattr(cfg, name)


CHOICE_KEYS = [(s, f, tp) for s, f, tp in SETTINGS if setting_of(f).choices]
RANGED_KEYS = [
    (s, f, tp)
    for s, f, tp in SETTINGS
    if any(getattr(setting_of(f), b) is not None for b in ("ge", "gt", "le", "lt"))
]


@pytest.mark.parametrize(
    ("section", "f", "tp"), CHOICE_KEYS, ids=[f"{s}.{f.name}" for s, f, _ in CHOICE_KEYS]
)
def test_each_choice_is_accepted_and_a_bad_one_names_them_all(
    section: str, f: Any, tp: Any
) -> None:
    s = setting_of(f)
    default = _section(Config(), section)
    origin = typing.get_origin(tp)
    for choice in s.choices:
        value: Any = {"X": choice} if origin is dict else (choice,) if origin is tuple else choice
        check_settings(dataclasses.replace(default, **{f.name: value}), section)
    bad: Any = {"X": "bogus"} if origin is dict else ["bogus"] if origin is tuple else "bogus"
    with pytest.raises(ConfigError) as err:
        config_mod.from_dict({section: {f.name: bad}})
    message = str(err.value)
    assert message.startswith(f"{section}.{f.name}"), message
    assert "bogus" in message
    for choice in s.choices:
        assert choice in message


def _outside(s: Any, tp: Any) -> list[Any]:
    step = 1 if tp is int else 0.001
    out = []
    if s.ge is not None:
        out.append(s.ge - step)
    if s.gt is not None:
        out.append(s.gt)
    if s.le is not None:
        out.append(s.le + step)
    if s.lt is not None:
        out.append(s.lt)
    return [tp(v) for v in out]


def _bounds(s: Any, tp: Any) -> list[Any]:
    step = 1 if tp is int else 0.001
    out = [s.ge, s.le]
    out += [s.gt + step] if s.gt is not None else []
    out += [s.lt - step] if s.lt is not None else []
    return [tp(v) for v in out if v is not None]


@pytest.mark.parametrize(
    ("section", "f", "tp"), RANGED_KEYS, ids=[f"{s}.{f.name}" for s, f, _ in RANGED_KEYS]
)
def test_each_range_admits_its_bounds_and_refuses_beyond(section: str, f: Any, tp: Any) -> None:
    s = setting_of(f)
    default = _section(Config(), section)
    for value in _bounds(s, tp):
        check_settings(dataclasses.replace(default, **{f.name: value}), section)
    for value in _outside(s, tp):
        with pytest.raises(ConfigError, match=rf"^{section}\.{f.name} must be .*, not "):
            config_mod.from_dict({section: {f.name: value}})


def test_wrong_types_and_unknown_keys_are_named() -> None:
    with pytest.raises(ConfigError, match=r"unknown key in \[web\]: prot \(allowed: .*port"):
        config_mod.from_dict({"web": {"prot": 80}})
    with pytest.raises(ConfigError, match=r"web\.port: expected an integer, got '80'"):
        config_mod.from_dict({"web": {"port": "80"}})
    with pytest.raises(ConfigError, match=r"camera\.fps: expected a number, got True"):
        config_mod.from_dict({"camera": {"fps": True}})


def test_check_config_lists_changed_keys_and_masks_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[camera]\nbackend = "opencv"\nwidth = 640\n[archive]\nsecret_access_key = "s3cr3t"\n'
        '[lookup.headers]\nAuthorization = "Bearer t0ken"\n',
        encoding="utf-8",
    )
    assert main(["check-config", str(path)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "4 keys differ from the defaults:" in out
    assert '  camera.backend = "opencv"\n' in out
    assert "  camera.width = 640\n" in out
    assert '  archive.secret_access_key = "<secret>"\n' in out
    assert '  lookup.headers = { Authorization = "<secret>" }\n' in out
    assert "s3cr3t" not in out and "t0ken" not in out

    assert main(["check-config", "--show", str(path)]) == EXIT_OK
    shown = capsys.readouterr().out
    assert "s3cr3t" not in shown and "t0ken" not in shown
    back = config_mod.from_dict(tomllib.loads(shown))
    assert back.camera.backend == "opencv" and back.camera.width == 640
    assert back.archive.secret_access_key == "<secret>"
    assert back.replace("archive", secret_access_key="s3cr3t").replace(
        "lookup", headers={"Authorization": "Bearer t0ken"}
    ) == config_mod.load(path)


def test_check_config_of_the_defaults_lists_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "empty.toml"
    path.write_text("", encoding="utf-8")
    assert main(["check-config", str(path)]) == EXIT_OK
    assert "0 keys differ from the defaults\n" in capsys.readouterr().out


def test_check_config_warns_of_order_patterns_that_take_product_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An order pattern wins over the product ranges: "any long number" makes every product
    scanned by hand an order, starting a clip. The config is valid, so it is a warning."""
    path = tmp_path / "c.toml"
    patterns = '["^PO-\\\\d+$", "^\\\\d{12,19}$"]'
    path.write_text(f"[codes]\norder_patterns = {patterns}\n", encoding="utf-8")
    assert main(["check-config", str(path)]) == EXIT_OK
    warned = [w for w in capsys.readouterr().out.splitlines() if w.startswith("warning:")]
    assert len(warned) == 1 and "'^\\\\d{12,19}$' matches product codes (e.g. 69" in warned[0]
    path.write_text('[codes]\norder_patterns = ["^PO-\\\\d+$"]\n', encoding="utf-8")
    assert main(["check-config", str(path)]) == EXIT_OK
    assert "warning:" not in capsys.readouterr().out


def test_check_config_names_station_cards_a_hand_scan_cannot_tell_apart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A card that is a Code ID and an order ID of the warehouse's pattern ("END": "E" and
    "ND") is refused by hand; a short card with no order_patterns takes the order IDs that are
    a Code ID and it: valid, each said with the card's key and text. Two cards a scanner's
    Code ID makes one ("AX", "X") are a config error naming both (exit 2)."""
    path = tmp_path / "c.toml"
    path.write_text(
        "[codes]\norder_patterns = ['^[A-Z]{2}$']\n[codes.control_codes]\nEND = 'seal'\n",
        encoding="utf-8",
    )
    assert main(["check-config", str(path)]) == EXIT_OK
    warned = [w for w in capsys.readouterr().out.splitlines() if w.startswith("warning:")]
    assert len(warned) == 1 and warned[0].startswith("warning: codes.control_codes: 'END'")
    assert "'ND' is an order ID of codes.order_patterns '^[A-Z]{2}$'" in warned[0]
    path.write_text("[codes.control_codes]\nX = 'seal'\n", encoding="utf-8")
    assert main(["check-config", str(path)]) == EXIT_OK
    warned = [w for w in capsys.readouterr().out.splitlines() if w.startswith("warning:")]
    assert len(warned) == 1 and "'X' (seal) is short" in warned[0] and "'AX'" in warned[0]
    path.write_text("[codes.control_codes]\nX = 'seal'\nAX = 'test'\n", encoding="utf-8")
    assert main(["check-config", str(path)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "config error" in err and "'AX' (test) is the card 'X'" in err


def test_check_config_warns_when_shortened_products_may_take_order_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With check_digits_sent = false and no order_patterns, a 12-digit order ID starting 69
    is taken for a product (an item: no clip): valid, but said."""
    path = tmp_path / "c.toml"
    path.write_text("[codes]\ncheck_digits_sent = false\n", encoding="utf-8")
    assert main(["check-config", str(path)]) == EXIT_OK
    warned = [w for w in capsys.readouterr().out.splitlines() if w.startswith("warning:")]
    assert len(warned) == 1 and "check_digits_sent = false" in warned[0]
    assert "690000000000" in warned[0]  # an example of a number it takes
    path.write_text(
        '[codes]\ncheck_digits_sent = false\norder_patterns = ["^PO-\\\\d+$"]\n',
        encoding="utf-8",
    )
    assert main(["check-config", str(path)]) == EXIT_OK
    assert "warning:" not in capsys.readouterr().out


def test_each_list_of_choices_is_defined_once() -> None:
    # The modules that act on a list import it from station.config rather than repeat it.
    assert writer.ENCODERS is config_mod.ENCODERS
    assert writer.HARDWARE_ENCODERS is config_mod.HARDWARE_ENCODERS
    assert set(config_mod.ENCODERS) >= config_mod.HARDWARE_ENCODERS
    assert barcodes.PRODUCT_SYMBOLOGIES is config_mod.PRODUCT_SYMBOLOGIES
    assert codes.PRODUCT_SYMBOLOGIES is config_mod.PRODUCT_SYMBOLOGIES
    assert set(config_mod.CAMERA_SYMBOLOGIES) >= config_mod.PRODUCT_SYMBOLOGIES
    assert i18n.LANGUAGES is config_mod.WEB_LANGUAGES
    assert summary.LANGUAGES is config_mod.WEB_LANGUAGES
    # Lists that are a table's keys elsewhere: the same members.
    assert set(overlay.LABELS) == set(config_mod.OVERLAY_LANGUAGES)
    assert set(barcodes._ZXING_FORMATS.values()) == set(config_mod.CAMERA_SYMBOLOGIES)
    # The schema's choices are those constants, not copies.
    by_key = {f"{s}.{f.name}": setting_of(f).choices for s, f, _ in SETTINGS}
    assert by_key["recorder.encoder"] is config_mod.ENCODERS
    assert by_key["camera.backend"] is config_mod.CAMERA_BACKENDS
    assert by_key["codes.order_symbologies"] is config_mod.CAMERA_SYMBOLOGIES
    assert by_key["webhooks.events"] is config_mod.WEBHOOK_EVENTS
    assert by_key["web.default_language"] is config_mod.WEB_LANGUAGES
