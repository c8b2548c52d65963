"""Text formatting as Telegram applies it: parse_mode → (plain text, entities).

Telegram stores plain text plus entities and answers with those, so a bot that sends
`<b>Hi</b>` reads back "Hi" with a bold entity, and malformed markup is refused with
"can't parse entities". Offsets and lengths are in UTF-16 code units, as in the Bot API.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import ApiError, bad_request

Entity = dict[str, Any]


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _parse_error(message: str) -> ApiError:
    return bad_request(f"can't parse entities: {message}")


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8"))


# --- HTML ---------------------------------------------------------------------------------

_HTML_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_ATTR = re.compile(r"""([a-zA-Z_-]+)\s*(?:=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+)))?""")


def parse_html(source: str) -> tuple[str, list[Entity]]:
    out: list[str] = []
    length = 0  # UTF-16 length of `out`
    stack: list[tuple[str, int, Entity]] = []  # (tag, start offset, entity)
    entities: list[Entity] = []
    i = 0
    while i < len(source):
        ch = source[i]
        if ch == "<":
            end = source.find(">", i)
            if end < 0:
                raise _parse_error(f"Unclosed start tag at byte offset {_byte_offset(source, i)}")
            raw = source[i + 1 : end].strip()
            if raw.startswith("/"):
                name = raw[1:].strip().lower()
                at = _byte_offset(source, i)
                if not stack:
                    raise _parse_error(f"Unexpected end tag at byte offset {at}")
                if stack[-1][0] != name:
                    raise _parse_error(
                        f"Unmatched end tag at byte offset {at}, expected "
                        f'"</{stack[-1][0]}>", found "</{name}>"'
                    )
                _tag, start, entity = stack.pop()
                if length > start and entity.get("type") != "merged":
                    entity.update(offset=start, length=length - start)
                    entities.append(entity)
            else:
                name, _, rest = raw.partition(" ")
                name = name.lower()
                if name not in _HTML_TAGS:
                    raise _parse_error(
                        f'Unsupported start tag "{name}" at byte offset {_byte_offset(source, i)}'
                    )
                attrs = {
                    m.group(1).lower(): _decode_text(m.group(2) or m.group(3) or m.group(4) or "")
                    for m in _ATTR.finditer(rest)
                }
                entity = _html_entity(name, attrs, stack, source, i)
                stack.append((name, length, entity))
            i = end + 1
            continue
        if ch == "&":
            semi = source.find(";", i)
            ref = source[i + 1 : semi] if 0 < semi - i <= 10 else ""
            decoded = _decode_reference(ref)
            if decoded is not None:
                out.append(decoded)
                length += utf16_len(decoded)
                i = semi + 1
                continue
        out.append(ch)
        length += utf16_len(ch)
        i += 1
    if stack:
        raise _parse_error(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def _decode_text(text: str) -> str:
    return re.sub(r"&([#\w]{1,10});", lambda m: _decode_reference(m.group(1)) or m.group(0), text)


def _decode_reference(ref: str) -> str | None:
    if ref in _NAMED_ENTITIES:
        return _NAMED_ENTITIES[ref]
    try:
        if ref.startswith(("#x", "#X")):
            return chr(int(ref, 0))
        if ref.startswith("#"):
            return chr(int(ref[1:]))
    except ValueError:
        return None
    return None  # unsupported named entity: kept as literal text, as Telegram does


def _html_entity(
    name: str,
    attrs: dict[str, str],
    stack: list[tuple[str, int, Entity]],
    source: str,
    at: int,
) -> Entity:
    kind = _HTML_TAGS[name]
    entity: Entity = {"type": kind}
    if name == "span" and attrs.get("class") != "tg-spoiler":
        raise _parse_error(
            f'Unsupported start tag "span" at byte offset {_byte_offset(source, at)}'
        )
    if name == "a":
        href = attrs.get("href", "")
        match = re.fullmatch(r"tg://user\?id=(\d+)", href)
        if match:
            entity = {
                "type": "text_mention",
                "user": {"id": int(match.group(1)), "is_bot": False, "first_name": ""},
            }
        else:
            entity["url"] = href
    elif name == "code" and stack and stack[-1][0] == "pre":
        # <pre><code class="language-x"> is one pre entity with a language, not two entities.
        language = attrs.get("class", "")
        if language.startswith("language-"):
            stack[-1][2]["language"] = language[len("language-") :]
        entity["type"] = "merged"
    elif name == "blockquote" and "expandable" in attrs:
        entity["type"] = "expandable_blockquote"
    elif name == "tg-emoji":
        entity["custom_emoji_id"] = attrs.get("emoji-id", "")
    return entity


# --- MarkdownV2 -----------------------------------------------------------------------------

_V2_RESERVED = set("_*[]()~`>#+-=|{}.!")
_V2_MARKS = [
    ("||", "spoiler"),
    ("__", "underline"),
    ("*", "bold"),
    ("_", "italic"),
    ("~", "strikethrough"),
]


def parse_markdown_v2(source: str) -> tuple[str, list[Entity]]:
    out: list[str] = []
    length = 0
    open_marks: list[tuple[str, str, int, int]] = []  # (mark, type, offset, source index)
    entities: list[Entity] = []
    link_start: list[tuple[int, int]] = []  # (offset, source index) of '['
    i = 0
    while i < len(source):
        ch = source[i]
        if ch == "\\" and i + 1 < len(source):
            out.append(source[i + 1])
            length += utf16_len(source[i + 1])
            i += 2
            continue
        if ch == "`":
            fence = "```" if source.startswith("```", i) else "`"
            end = source.find(fence, i + len(fence))
            if end < 0:
                kind = "Pre" if fence == "```" else "Code"
                raise _parse_error(
                    f"Can't find end of {kind} entity at byte offset {_byte_offset(source, i)}"
                )
            body = source[i + len(fence) : end]
            entity: Entity = {"type": "pre" if fence == "```" else "code"}
            if fence == "```" and "\n" in body:
                first, _, rest = body.partition("\n")
                if first and " " not in first:
                    entity["language"] = first
                    body = rest
            body = re.sub(r"\\([`\\])", r"\1", body)
            entity.update(offset=length, length=utf16_len(body))
            out.append(body)
            length += utf16_len(body)
            if entity["length"]:
                entities.append(entity)
            i = end + len(fence)
            continue
        if ch == "[":
            link_start.append((length, i))
            i += 1
            continue
        if ch == "]" and link_start and source.startswith("(", i + 1):
            close = i + 2
            while close < len(source) and source[close] != ")":
                close += 2 if source[close] == "\\" else 1
            if close >= len(source):
                raise _parse_error(
                    f"Can't find end of a URL at byte offset {_byte_offset(source, i + 1)}"
                )
            start, _ = link_start.pop()
            url = source[i + 2 : close].replace("\\)", ")").replace("\\\\", "\\")
            if length > start:
                entities.append(
                    {"type": "text_link", "offset": start, "length": length - start, "url": url}
                )
            i = close + 1
            continue
        matched = next(((m, t) for m, t in _V2_MARKS if source.startswith(m, i)), None)
        if matched:
            mark, kind = matched
            if open_marks and open_marks[-1][0] == mark:
                _m, _t, start, _src = open_marks.pop()
                if length > start:
                    entities.append({"type": kind, "offset": start, "length": length - start})
            else:
                open_marks.append((mark, kind, length, i))
            i += len(mark)
            continue
        if ch in _V2_RESERVED:
            raise _parse_error(
                f"Character '{ch}' is reserved and must be escaped with the preceding '\\'"
            )
        out.append(ch)
        length += utf16_len(ch)
        i += 1
    if open_marks:
        _m, kind, _start, src = open_marks[-1]
        raise _parse_error(
            f"Can't find end of {kind.capitalize()} entity at byte offset "
            f"{_byte_offset(source, src)}"
        )
    if link_start:
        raise _parse_error(
            f"Can't find end of TextUrl entity at byte offset "
            f"{_byte_offset(source, link_start[-1][1])}"
        )
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


# --- legacy Markdown ------------------------------------------------------------------------

_LEGACY = re.compile(r"\*([^*]*)\*|_([^_]*)_|```([^`]*)```|`([^`]*)`|\[([^\]]*)\]\(([^)]*)\)")


def parse_markdown(source: str) -> tuple[str, list[Entity]]:
    out: list[str] = []
    length = 0
    entities: list[Entity] = []
    pos = 0
    for match in _LEGACY.finditer(source):
        plain = source[pos : match.start()]
        for mark in "*_`[":
            if mark in plain:
                at = pos + plain.index(mark)
                raise _parse_error(
                    f"Can't find end of the entity starting at byte offset "
                    f"{_byte_offset(source, at)}"
                )
        out.append(plain)
        length += utf16_len(plain)
        bold, italic, pre, code, link_text, url = match.groups()
        body = next(g for g in (bold, italic, pre, code, link_text) if g is not None)
        kind = (
            "bold"
            if bold is not None
            else "italic"
            if italic is not None
            else "pre"
            if pre is not None
            else "code"
            if code is not None
            else "text_link"
        )
        entity: Entity = {"type": kind, "offset": length, "length": utf16_len(body)}
        if kind == "text_link":
            entity["url"] = url
        if entity["length"]:
            entities.append(entity)
        out.append(body)
        length += utf16_len(body)
        pos = match.end()
    tail = source[pos:]
    for mark in "*_`[":
        if mark in tail:
            at = pos + tail.index(mark)
            raise _parse_error(
                f"Can't find end of the entity starting at byte offset {_byte_offset(source, at)}"
            )
    out.append(tail)
    return "".join(out), entities


# --- entry points ---------------------------------------------------------------------------


def apply_parse_mode(
    text: str,
    parse_mode: str | None,
    entities: list[Entity] | None,
) -> tuple[str, list[Entity]]:
    """The text and entities Telegram would store; explicit `entities` win over parse_mode."""
    if entities is not None:
        parsed_text, parsed = text, list(entities)
    elif not parse_mode:
        parsed_text, parsed = text, []
    else:
        mode = parse_mode.lower()
        if mode == "html":
            parsed_text, parsed = parse_html(text)
        elif mode == "markdownv2":
            parsed_text, parsed = parse_markdown_v2(text)
        elif mode == "markdown":
            parsed_text, parsed = parse_markdown(text)
        else:
            raise bad_request("unsupported parse_mode")
    return _strip(parsed_text, parsed)


def _strip(text: str, entities: list[Entity]) -> tuple[str, list[Entity]]:
    """Telegram trims leading and trailing whitespace of a message and clips its entities."""
    stripped = text.strip()
    if stripped == text:
        return text, entities
    lead = utf16_len(text[: len(text) - len(text.lstrip())])
    end = lead + utf16_len(stripped)
    clipped: list[Entity] = []
    for entity in entities:
        start = max(entity["offset"], lead)
        stop = min(entity["offset"] + entity["length"], end)
        if stop > start:
            clipped.append({**entity, "offset": start - lead, "length": stop - start})
    return stripped, clipped


_COMMAND = re.compile(r"(?<!\S)/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?")


def detect_entities(text: str) -> list[Entity]:
    """Entities Telegram attaches to a user's plain text: here, bot commands."""
    entities: list[Entity] = []
    for match in _COMMAND.finditer(text):
        entities.append(
            {
                "type": "bot_command",
                "offset": utf16_len(text[: match.start()]),
                "length": utf16_len(match.group()),
            }
        )
    return entities
