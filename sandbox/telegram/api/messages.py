"""Sending, editing and deleting messages; documents and photos; callback query answers."""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from typing import Any

from ..errors import ApiError, bad_request
from ..formatting import apply_parse_mode, utf16_len
from ..params import Upload
from ..photos import MAX_PHOTO_BYTES, dimensions_problem, image_size, size_ladder
from ..state import Chat, StoredMessage
from .markup import message_markup, parse_reply_markup
from .registry import Call, method

MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_UPLOAD = 50 * 1024 * 1024
DELETE_WINDOW = 48 * 3600
NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly the "
    "same as a current content and reply markup of the message"
)
QUERY_INVALID = "query is too old and response timeout expired or query ID is invalid"
CHAT_ACTIONS = {
    "typing",
    "upload_photo",
    "record_video",
    "upload_video",
    "record_voice",
    "upload_voice",
    "upload_document",
    "choose_sticker",
    "find_location",
    "record_video_note",
    "upload_video_note",
}


def formatted(call: Call, field: str, entities_field: str) -> tuple[str, list[dict[str, Any]]]:
    params = call.params
    entities = params.json(entities_field, f"can't parse {entities_field} JSON object")
    return apply_parse_mode(
        params.string(field, "") or "",
        params.string("parse_mode"),
        entities if isinstance(entities, list) else None,
    )


def _reply_to(call: Call, chat: Chat) -> dict[str, Any] | None:
    reply = call.params.json("reply_parameters")
    message_id = (reply or {}).get("message_id") if isinstance(reply, dict) else None
    if message_id is None:
        message_id = call.params.integer("reply_to_message_id")
    if not message_id:
        return None
    target = chat.messages.get(int(message_id))
    if target is None or target.deleted:
        allow = call.params.boolean("allow_sending_without_reply") or (
            isinstance(reply, dict) and reply.get("allow_sending_without_reply")
        )
        if allow:
            return None
        raise bad_request("message to be replied not found")
    return target.as_reply_target()


def send(
    call: Call, chat: Chat, fields: dict[str, Any], *, kind: str, markup: dict[str, Any] | None
) -> StoredMessage:
    """Store a bot's outgoing message with what tests need to read it back."""
    reply_to = _reply_to(call, chat)
    if reply_to is not None:
        fields["reply_to_message"] = reply_to
    if call.params.boolean("protect_content"):
        fields["has_protected_content"] = True
    inline = message_markup(markup)
    if inline:
        fields["reply_markup"] = inline
    stored = call.world.new_message(chat, call.bot.user, fields, kind=kind)
    stored.reply_markup = markup
    stored.parse_mode = call.params.string("parse_mode")
    return stored


@method("sendMessage")
async def send_message(call: Call) -> dict[str, Any]:
    params = call.params
    text, entities = formatted(call, "text", "entities")
    if not text:
        raise bad_request("message text is empty")
    if utf16_len(text) > MAX_TEXT:
        raise bad_request("message is too long")
    markup = parse_reply_markup(params)
    chat = call.world.resolve_chat(call.bot, params.string("chat_id"))
    call.world.check_can_post(call.bot, chat)
    fields: dict[str, Any] = {"text": text}
    if entities:
        fields["entities"] = entities
    preview = params.json("link_preview_options")
    if preview is None and params.boolean("disable_web_page_preview"):
        preview = {"is_disabled": True}
    if isinstance(preview, dict) and preview:
        fields["link_preview_options"] = preview
    stored = send(call, chat, fields, kind="text", markup=markup)
    stored.raw_text = params.string("text")
    stored.link_preview_options = preview if isinstance(preview, dict) else None
    return stored.data


def _editable(call: Call) -> StoredMessage:
    if call.params.has("inline_message_id"):
        raise bad_request("inline messages are not supported by the emulator")
    chat = call.world.resolve_chat(call.bot, call.params.string("chat_id"))
    message_id = call.params.integer("message_id", error="message identifier is not specified")
    stored = chat.messages.get(message_id or 0)
    if stored is None or stored.deleted:
        raise bad_request("message to edit not found")
    if stored.sender_id != call.bot.id:
        raise bad_request("message can't be edited")
    return stored


def _set_markup(stored: StoredMessage, markup: dict[str, Any] | None) -> None:
    # Leaving reply_markup out of an edit removes the inline keyboard, as on Telegram.
    inline = message_markup(markup)
    stored.reply_markup = inline
    if inline:
        stored.data["reply_markup"] = inline
    else:
        stored.data.pop("reply_markup", None)


@method("editMessageText")
async def edit_message_text(call: Call) -> dict[str, Any]:
    text, entities = formatted(call, "text", "entities")
    if not text:
        raise bad_request("message text is empty")
    if utf16_len(text) > MAX_TEXT:
        raise bad_request("message is too long")
    markup = parse_reply_markup(call.params)
    stored = _editable(call)
    if stored.kind != "text":
        raise bad_request("there is no text in the message to edit")
    data = stored.data
    if (data.get("text"), data.get("entities") or [], data.get("reply_markup")) == (
        text,
        entities,
        message_markup(markup),
    ):
        raise bad_request(NOT_MODIFIED)
    data["text"] = text
    if entities:
        data["entities"] = entities
    else:
        data.pop("entities", None)
    _set_markup(stored, markup)
    data["edit_date"] = call.world.now()
    stored.raw_text = call.params.string("text")
    stored.parse_mode = call.params.string("parse_mode")
    return data


@method("editMessageReplyMarkup")
async def edit_message_reply_markup(call: Call) -> dict[str, Any]:
    markup = parse_reply_markup(call.params)
    stored = _editable(call)
    if stored.data.get("reply_markup") == message_markup(markup):
        raise bad_request(NOT_MODIFIED)
    _set_markup(stored, markup)
    stored.data["edit_date"] = call.world.now()
    return stored.data


@method("deleteMessage")
async def delete_message(call: Call) -> bool:
    world, bot = call.world, call.bot
    chat = world.resolve_chat(bot, call.params.string("chat_id"))
    message_id = call.params.integer("message_id", error="message identifier is not specified")
    stored = chat.messages.get(message_id or 0)
    if stored is None or stored.deleted:
        raise bad_request("message to delete not found")
    me = world.member(chat, bot.id)
    own = stored.sender_id == bot.id
    allowed = (
        (chat.private_user is not None)
        or (chat.type == "group" and (own or me.status == "administrator"))
        or (chat.type == "supergroup" and (own or me.right("can_delete_messages")))
        or (
            chat.type == "channel"
            and (me.right("can_delete_messages") or (own and me.right("can_post_messages")))
        )
    )
    if not allowed:
        raise bad_request("message can't be deleted")
    if world.now() - stored.data["date"] > DELETE_WINDOW and not (
        chat.type in ("supergroup", "channel") and me.right("can_delete_messages")
    ):
        raise bad_request("message can't be deleted for everyone")
    stored.deleted = True
    return True


@method("answerCallbackQuery")
async def answer_callback_query(call: Call) -> bool:
    record = call.world.callbacks.get(call.params.string("callback_query_id") or "")
    if record is None or record.bot_id != call.bot.id or record.answer is not None:
        raise bad_request(QUERY_INVALID)
    record.answer = {
        "text": call.params.string("text"),
        "show_alert": call.params.boolean("show_alert"),
        "url": call.params.string("url"),
        "cache_time": call.params.integer("cache_time", 0),
    }
    return True


@method("sendChatAction")
async def send_chat_action(call: Call) -> bool:
    action = call.params.string("action") or ""
    chat = call.world.resolve_chat(call.bot, call.params.string("chat_id"))
    if action not in CHAT_ACTIONS:
        raise bad_request("wrong parameter action in request")
    call.world.check_can_post(call.bot, chat)
    return True


@method("sendDocument")
async def send_document(call: Call) -> dict[str, Any]:
    world = call.world
    media = _media_call(call, "document")
    document = media.file
    if isinstance(document, Upload):
        if not document.content:
            raise bad_request("file must be non-empty")
        if len(document.content) > MAX_UPLOAD:
            raise ApiError(413, "Request Entity Too Large")
        mime = mimetypes.guess_type(document.filename)[0] or document.content_type
        stored_file = world.store_file(document.filename, document.content, mime)
    elif document in world.files:
        stored_file = world.files[document]
    elif document.startswith(("http://", "https://")):
        raise bad_request("failed to get HTTP URL content")  # the emulator fetches nothing
    else:
        raise bad_request("wrong file identifier/HTTP URL specified")
    doc: dict[str, Any] = {
        "file_id": stored_file.file_id,
        "file_unique_id": stored_file.file_unique_id,
        "file_name": stored_file.file_name,
        "file_size": len(stored_file.content),
    }
    if stored_file.mime_type:
        doc["mime_type"] = stored_file.mime_type
    stored = send(
        call, media.chat, media.fields({"document": doc}), kind="document", markup=media.markup
    )
    stored.file_id = stored_file.file_id
    stored.raw_text = call.params.string("caption")
    return stored.data


@dataclass(frozen=True)
class _Media:
    file: Upload | str  # an upload, or a file_id / URL
    chat: Chat
    markup: Any
    caption: str
    caption_entities: list[dict[str, Any]]

    def fields(self, fields: dict[str, Any]) -> dict[str, Any]:
        """The message's fields with its caption and caption entities, when it has them."""
        if self.caption:
            fields["caption"] = self.caption
        if self.caption_entities:
            fields["caption_entities"] = self.caption_entities
        return fields


def _media_call(call: Call, field: str) -> _Media:
    """What every send<Media> checks first, in Telegram's order: the file is there, the
    caption fits, the markup reads, the chat exists and the bot may post in it."""
    media = call.params.file(field)
    if media is None:
        raise bad_request(f"there is no {field} in the request")
    caption, caption_entities = formatted(call, "caption", "caption_entities")
    if utf16_len(caption) > MAX_CAPTION:
        raise bad_request("message caption is too long")
    markup = parse_reply_markup(call.params)
    chat = call.world.resolve_chat(call.bot, call.params.string("chat_id"))
    call.world.check_can_post(call.bot, chat)
    return _Media(media, chat, markup, caption, caption_entities)


def _new_photo(call: Call, upload: Upload) -> list[dict[str, Any]]:
    """Store an uploaded image as Telegram does: a PhotoSize per stored size, smallest
    first (sandbox/telegram/photos.py)."""
    if not upload.content:
        raise bad_request("file must be non-empty")
    if len(upload.content) > MAX_PHOTO_BYTES:
        raise ApiError(413, "Request Entity Too Large")
    size = image_size(upload.content)
    if size is None:
        raise bad_request("IMAGE_PROCESS_FAILED")
    problem = dimensions_problem(*size)
    if problem:
        raise bad_request(problem)
    world = call.world
    sizes: list[dict[str, Any]] = []
    for width, height in size_ladder(*size):
        stored_file = world.store_file(
            f"{width}x{height}.jpg", upload.content, "image/jpeg", folder="photos"
        )
        sizes.append(
            {
                "file_id": stored_file.file_id,
                "file_unique_id": stored_file.file_unique_id,
                "file_size": len(stored_file.content),
                "width": width,
                "height": height,
            }
        )
    for s in sizes:
        world.photos[s["file_id"]] = sizes
    return sizes


@method("sendPhoto")
async def send_photo(call: Call) -> dict[str, Any]:
    world, params = call.world, call.params
    media = _media_call(call, "photo")
    photo = media.file
    if isinstance(photo, Upload):
        sizes = _new_photo(call, photo)
    elif photo in world.photos:
        sizes = world.photos[photo]
    elif photo in world.files:
        raise bad_request("can't use file of type Document as Photo")
    elif photo.startswith(("http://", "https://")):
        raise bad_request("failed to get HTTP URL content")  # the emulator fetches nothing
    else:
        raise bad_request("wrong file identifier/HTTP URL specified")
    fields = media.fields({"photo": [dict(s) for s in sizes]})
    if params.boolean("has_spoiler"):
        fields["has_media_spoiler"] = True
    if params.boolean("show_caption_above_media"):
        fields["show_caption_above_media"] = True
    stored = send(call, media.chat, fields, kind="photo", markup=media.markup)
    stored.file_id = sizes[-1]["file_id"]  # the largest size: what a client downloads
    stored.raw_text = params.string("caption")
    return stored.data
