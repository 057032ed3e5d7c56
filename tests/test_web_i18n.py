"""Languages: Accept-Language, the switch, and complete, up-to-date zh_CN translations."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest_web import login

TRANSLATIONS = Path(__file__).resolve().parents[1] / "web" / "translations"


@pytest.mark.parametrize(
    ("accept", "lang", "word"),
    [
        ("zh-CN,zh;q=0.9,en;q=0.5", "zh-CN", "登录"),
        ("zh", "zh-CN", "登录"),
        ("zh-TW", "zh-CN", "登录"),
        # Chinese first, English after it: Chinese (browsers' defaults in Taiwan, Hong Kong)
        ("zh-TW,zh;q=0.9,en-US;q=0.8,en;q=0.7", "zh-CN", "登录"),
        ("zh-HK,zh-TW;q=0.9,zh;q=0.8,en-US;q=0.7,en;q=0.6", "zh-CN", "登录"),
        ("zh,en;q=0.9", "zh-CN", "登录"),
        ("fr-FR,zh-TW;q=0.8,en;q=0.5", "zh-CN", "登录"),
        ("en-US,zh-TW;q=0.9", "en", "Log in"),
        ("zh-CN;q=0", "en", "Log in"),  # q=0: not acceptable
        ("en-US,en;q=0.9", "en", "Log in"),
        ("fr-FR", "en", "Log in"),
        ("", "en", "Log in"),
    ],
)
def test_accept_language(web_client, accept: str, lang: str, word: str) -> None:
    page = web_client.get("/login", headers={"Accept-Language": accept}).get_data(as_text=True)
    assert f'<html lang="{lang}">' in page and word in page


def test_switch_overrides_the_browser(web_client) -> None:
    resp = web_client.get("/lang/zh_CN?next=/login")
    assert resp.status_code == 302 and resp.location == "/login"
    assert "packcam_lang=zh_CN" in resp.headers["Set-Cookie"]
    page = web_client.get("/login", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert "登录" in page
    web_client.get("/lang/en")
    assert "Log in" in web_client.get("/login").get_data(as_text=True)


@pytest.mark.parametrize("target", ["https://evil.example", "//evil.example", "/\\x"])
def test_switch_stays_on_site(web_client, target: str) -> None:
    assert web_client.get("/lang/en", query_string={"next": target}).location == "/"


def test_pages_read_in_chinese(web_client) -> None:
    web_client.get("/lang/zh_CN")
    login(web_client, "admin")
    for path, words in {
        "/search": ["查找打包视频", "订单号或运单号"],
        "/orders/PO-1001": ["开始时间", "下载原始视频", "分享链接", "访问记录", "已封箱"],
        "/dashboard": ["今日视频", "剩余可录天数"],
        "/orders/NOPE": ["未找到订单"],
    }.items():
        page = web_client.get(path).get_data(as_text=True)
        for w in words:
            assert w in page, (path, w)


def _catalog(lang: str):
    from babel.messages.pofile import read_po

    with open(TRANSLATIONS / lang / "LC_MESSAGES" / "messages.po", "rb") as f:
        return read_po(f)


def test_every_message_has_a_chinese_translation() -> None:
    from babel.messages.extract import extract_from_dir

    root = TRANSLATIONS.parent
    method_map = [("**.py", "python"), ("**/templates/**.html", "jinja2")]
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "_l": None, "lazy_gettext": None}
    found = set()
    for _file, _line, msg, _comments, _ctx in extract_from_dir(
        str(root), method_map, keywords=keywords
    ):
        found.add(msg if isinstance(msg, str) else msg[0])
    zh = _catalog("zh_Hans_CN")
    missing = []
    for msgid in sorted(found):
        m = zh.get(msgid)
        text = m.string if m is not None else None
        if isinstance(text, tuple | list):
            text = text[0]
        if not text or (m is not None and m.fuzzy):
            missing.append(msgid)
    assert not missing, f"untranslated: {missing}"


@pytest.mark.parametrize("lang", ["zh_Hans_CN", "en"])
def test_compiled_catalogs_match_the_po_files(lang: str) -> None:
    """A fresh checkout works without a build step: the committed .mo is the compiled .po."""
    from babel.messages.mofile import read_mo

    po = _catalog(lang)
    with open(TRANSLATIONS / lang / "LC_MESSAGES" / "messages.mo", "rb") as f:
        mo = read_mo(f)

    def table(cat):
        out = {}
        for m in cat:
            key = m.id if isinstance(m.id, str) else tuple(m.id)
            value = m.string if isinstance(m.string, str) else tuple(m.string)
            # write_mo stores untranslated plurals as their msgids: not a translation.
            if m.id and any(value) and value != key and not m.fuzzy:
                out[key] = value
        return out

    assert table(po) == table(mo), "run: pybabel compile -d web/translations"


def test_every_finish_reason_is_named_in_both_languages(web_app) -> None:
    """A clip's finish reason is shown translated: a reason the session can produce without a
    name here would show up raw (as `disk-full` once did)."""
    from flask_babel import force_locale

    from station.recording.session import FinishReason
    from web.i18n import FINISH_REASONS

    assert set(FINISH_REASONS) == {r.value for r in FinishReason}
    with web_app.test_request_context(), force_locale("zh_Hans_CN"):
        for reason, label in FINISH_REASONS.items():
            assert str(label) != reason and not str(label).isascii(), reason


def test_the_readme_names_every_finish_reason() -> None:
    """The README's list of how a clip ends is the enum's list (it once left out `disk-full`)."""
    from station.recording.session import FinishReason

    readme = (TRANSLATIONS.parents[1] / "README.md").read_text(encoding="utf-8")
    start = readme.index("- **End** (the clip's `finish_reason`)")
    paragraph = readme[start : readme.index("\n- **", start + 1)]
    named = set(re.findall(r"`([a-z-]+)`", paragraph)) - {"finish_reason"}
    assert named >= {r.value for r in FinishReason}, "README lacks " + ", ".join(
        sorted({r.value for r in FinishReason} - named)
    )


def test_the_message_template_is_what_the_code_says() -> None:
    """docs/web.md's update step starts from web/translations/messages.pot: a stale one would
    mark live strings obsolete in the .po files and drop new ones."""
    from babel.messages.extract import extract_from_dir
    from babel.messages.pofile import read_po

    root = TRANSLATIONS.parent
    method_map = [("**.py", "python"), ("**/templates/**.html", "jinja2")]
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "_l": None, "lazy_gettext": None}
    found = {
        msg if isinstance(msg, str) else tuple(msg)
        for _f, _l, msg, _c, _x in extract_from_dir(str(root), method_map, keywords=keywords)
    }
    with open(TRANSLATIONS / "messages.pot", "rb") as f:
        pot = {m.id if isinstance(m.id, str) else tuple(m.id) for m in read_po(f) if m.id}
    assert pot == found, "run the extract step of docs/web.md"
