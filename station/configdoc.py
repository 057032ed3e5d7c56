"""The config schema rendered: the example file, the docs table and check-config's listing."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import textwrap
import typing
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from station.config import Config, Setting, section_help, setting_of

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = Path("config/packcam.example.toml")
DOCS = Path("docs/configuration.md")
WIDTH = 100
MASK = "<secret>"

EXAMPLE_HEADER = """\
# packcam station configuration. Every key is optional: omitted keys take the defaults shown.
# Unknown keys are an error, so a typo never silently falls back to a default.
# Check a file with:  packcam check-config FILE
# This file is generated from the schema in station/config.py (`make config-docs`); the same
# schema validates a config and writes docs/configuration.md.
"""

DOCS_HEADER = """\
# Configuration reference

One TOML file, given to every command as `--config FILE` (`--data DIR` overrides
`station.data_dir`). It is checked at start-up against the schema declared once in
`station/config.py`: an unknown section or key, a value of the wrong type, a number outside its
range or a word that is not one of its choices stops the program with a message naming the key
and what it allows. `packcam check-config FILE` runs the same check and lists the keys that
differ from the defaults (`--show` prints the whole effective config, secrets masked).

Every key is optional. [config/packcam.example.toml](../config/packcam.example.toml) holds each
one with its default and the same explanation. This page and that file are generated from the
schema by `make config-docs` (`python -m station.configdoc`); `tests/test_config_docs.py` fails
when either differs from it.
"""


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def sections(cfg: Config) -> Iterator[tuple[dataclasses.Field[Any], Any]]:
    """Each [section] field of Config with the section object ``cfg`` holds."""
    for f in dataclasses.fields(cfg):
        yield f, getattr(cfg, f.name)


def toml_value(value: Any) -> str:
    """``value`` (a config value) written as TOML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        if "\\" in value and "'" not in value and value.isprintable():
            return f"'{value}'"  # a literal string: regexes stay readable
        return json.dumps(value, ensure_ascii=False)  # JSON's escapes are TOML's
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")  # programming error: a type the schema lacks


def _key(name: str) -> str:
    return name if name.replace("_", "").replace("-", "").isalnum() and name.isascii() else (
        json.dumps(name, ensure_ascii=False)
    )  # fmt: skip


def _choices(s: Setting) -> str:
    shown = [c or '""' for c in s.choices]
    return " | ".join(
        f"{w} ({s.notes[c]})" if c in s.notes else w for c, w in zip(s.choices, shown, strict=True)
    )


def comment(s: Setting) -> str:
    """The example file's comment for a key: its help, then its choices."""
    if s.choices and s.help:
        return f"{s.help} Allowed: {_choices(s)}" if s.help.endswith(".") else (
            f"{s.help}: {_choices(s)}"
        )  # fmt: skip
    return s.help or _choices(s)


def _comment_lines(text: str) -> list[str]:
    lines = textwrap.wrap(text, WIDTH - 2, break_on_hyphens=False, break_long_words=False)
    return [f"# {line}" for line in lines]


def _masked(value: Any, s: Setting) -> Any:
    if not s.secret or not value:
        return value
    if isinstance(value, dict):
        return dict.fromkeys(value, MASK)
    return MASK


def render_toml(cfg: Config, header: str = "", *, mask: bool = False) -> str:
    """``cfg`` as a commented TOML file in the schema's order: the example file (from the
    defaults) or `check-config --show` (``mask``: secrets replaced by a placeholder)."""
    out = [header.rstrip("\n")] if header else []
    for sf, sec in sections(cfg):
        out += ["", f"[{sf.name}]", *_comment_lines(section_help(sf))]
        tables = []
        for f in dataclasses.fields(sec):
            s = setting_of(f)
            value = getattr(sec, f.name)
            if mask:
                value = _masked(value, s)
            if isinstance(value, dict):
                tables.append((f, s, value))
                continue
            line = f"{f.name} = {toml_value(value)}"
            text = comment(s)
            inline = f"{line:<25} # {text}"
            if not text:
                out.append(line)
            elif len(inline) <= WIDTH:
                out.append(inline)
            else:
                out += [*_comment_lines(text), line]
        for f, s, value in tables:
            out += ["", *_comment_lines(comment(s)), f"[{sf.name}.{f.name}]"]
            out += [f"{_key(k)} = {toml_value(v)}" for k, v in value.items()]
    return "\n".join(out) + "\n"


def render_example() -> str:
    """config/packcam.example.toml: every key with its default and explanation."""
    return render_toml(Config(), EXAMPLE_HEADER)


_TYPE_WORDS = {
    str: "string", int: "integer", float: "number", bool: "true/false", Path: "path",
}  # fmt: skip


def type_word(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is tuple:
        return "list of strings"
    if origin is dict:
        return "table of strings"
    return _TYPE_WORDS[tp]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _default_cell(value: Any) -> str:
    if isinstance(value, dict) and value:
        return _cell(", ".join(f"`{k}`" for k in value)) + " (see the example file)"
    return f"`{_cell(toml_value(value))}`"


def _allowed_cell(s: Setting) -> str:
    if s.choices:
        return " \\| ".join(f"`{c}`" if c else '`""`' for c in s.choices)
    return _cell(s.allowed())


def _meaning_cell(s: Setting) -> str:
    notes = "; ".join(f"`{c}`: {n}" for c, n in s.notes.items())
    return _cell(". ".join(t for t in (s.help, notes) if t))


def render_docs() -> str:
    """docs/configuration.md: one table per section, every key with its type, default, allowed
    values and meaning."""
    out = [DOCS_HEADER.rstrip("\n")]
    for sf, sec in sections(Config()):
        out += ["", f"## [{sf.name}]", ""]
        intro = section_help(sf)
        if intro:
            out += [intro, ""]
        out += ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
        hints = _hints(type(sec))
        for f in dataclasses.fields(sec):
            s = setting_of(f)
            value = getattr(sec, f.name)
            row = (f"`{f.name}`", type_word(hints[f.name]), _default_cell(value),
                   _allowed_cell(s), _meaning_cell(s))  # fmt: skip
            out.append("| " + " | ".join(row) + " |")
    return "\n".join(out) + "\n"


def changed(cfg: Config) -> list[tuple[str, str]]:
    """The keys of ``cfg`` that differ from the defaults, as (``section.key``, TOML value),
    secrets masked: what `packcam check-config` lists."""
    found = []
    for sf, sec in sections(cfg):
        default = getattr(Config(), sf.name)
        for f in dataclasses.fields(sec):
            value = getattr(sec, f.name)
            if value != getattr(default, f.name):
                found.append((f"{sf.name}.{f.name}", toml_value(_masked(value, setting_of(f)))))
    return found


def generated() -> dict[Path, str]:
    """Each generated file (relative to the repository) and the text it must have."""
    return {EXAMPLE: render_example(), DOCS: render_docs()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m station.configdoc",
        description=f"Write {EXAMPLE} and {DOCS} from the config schema in station/config.py.",
    )
    parser.add_argument("--check", action="store_true", help="only say whether they are current")
    parser.add_argument("--root", type=Path, default=REPO, help="the repository (default: this)")
    args = parser.parse_args(argv)
    stale = []
    for rel, text in generated().items():
        path = args.root / rel
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(rel)
        if not args.check:
            path.write_text(text, encoding="utf-8")
    for rel in stale:
        verb = "is not current: run `make config-docs`" if args.check else "written"
        print(f"{rel} {verb}", file=sys.stderr)
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
