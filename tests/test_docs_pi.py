"""docs/raspberry-pi.md stays true: its packcam commands parse, its config is valid, links exist."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest

from packcam.cli import build_parser
from station import config as config_mod

REPO = Path(__file__).resolve().parents[1]
DOC = (REPO / "docs/raspberry-pi.md").read_text(encoding="utf-8")


def code_blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC, re.S)


def packcam_commands() -> list[list[str]]:
    """Every `…/bin/packcam ARGS` in the shell blocks, continuation lines joined."""
    out = []
    for block in code_blocks("sh"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0]
            m = re.search(r"/opt/packcam/\.venv/bin/packcam\s+(.*)$", line)
            if m:
                out.append(shlex.split(m.group(1)))
    return out


def test_the_doc_has_the_commands_it_should() -> None:
    cmds = [c[0] for c in packcam_commands()]
    assert {"check-config", "keys", "user", "--version", "doctor"} <= set(cmds)


@pytest.mark.parametrize("argv", packcam_commands(), ids=lambda a: " ".join(a[:2]))
def test_every_packcam_command_in_the_doc_parses(argv: list[str]) -> None:
    if argv == ["--version"]:
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args(argv)
        assert exc.value.code == 0
        return
    build_parser().parse_args(argv)  # exits with status 2 on an unknown command or flag


def test_the_config_in_the_doc_is_valid() -> None:
    (block,) = code_blocks("toml")
    cfg = config_mod.from_dict(tomllib.loads(block))
    assert cfg.camera.backend == "picamera2" and cfg.scanner.keyboard == "evdev"
    assert cfg.proof.checkpoint_every == 1


def test_the_files_the_doc_names_exist() -> None:
    for rel in ("systemd/install.sh", "config/packcam.example.toml", "docs/proof.md",
                "docs/web.md", "docs/hardware.md"):  # fmt: skip
        assert (REPO / rel).exists(), rel
    for link in re.findall(r"\]\(([\w.-]+\.md)\)", DOC):
        assert (REPO / "docs" / link).exists(), link
