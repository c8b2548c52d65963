// The playground page: acts as one user of the emulated Telegram. It writes and presses
// buttons through the emulator's control API and reads through /playground/api (see
// sandbox/telegram/playground.py). Plain JavaScript, no build step, nothing from the internet.
"use strict";

const $ = (sel) => document.querySelector(sel);
const view = { me: null, chat: null, state: null, shown: "", chatInfo: null };
// Invoice messages being paid, and what came of paying them (by chat and message id).
const payments = { busy: new Set(), outcome: new Map() };

async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
  return data;
}

let toastTimer = null;
function hideToast() {  // a notice belongs to who caused it: gone when someone else takes over
  clearTimeout(toastTimer);
  $("#toast").hidden = true;
}

function toast(text, alert = false) {
  const t = $("#toast");
  t.replaceChildren(...starry(text));
  t.className = alert ? "alert" : "";
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, alert ? 6000 : 3500);
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    if (typeof c === "string") node.append(...starry(c));
    else node.append(c);
  }
  return node;
}

// The Telegram Stars sign drawn by CSS (span.star), so it shows without an emoji font; the
// text stays "⭐" for copying, screen readers and tests.
function starry(text) {
  return text.split(/(⭐)/).filter((p) => p).map((p) => p === "⭐"
    ? Object.assign(document.createElement("span"), { className: "star", textContent: p }) : p);
}

function initials(name) {
  return (name || "?").trim().slice(0, 1).toUpperCase();
}

// --- where we are: #u=<user>&c=<chat> survives a reload -----------------------------------

function saveHash() {
  const parts = [];
  if (view.me) parts.push(`u=${view.me}`);
  if (view.chat) parts.push(`c=${view.chat}`);
  history.replaceState(null, "", "#" + parts.join("&"));
}

function loadHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  view.me = params.get("u") ? Number(params.get("u")) : null;
  view.chat = params.get("c") ? Number(params.get("c")) : null;
}

// --- the side pane ---------------------------------------------------------------------

async function refreshState() {
  const q = view.me ? `?user_id=${view.me}` : "";
  let state;
  try {
    state = await api("GET", `/playground/api/state${q}`);
  } catch (e) {
    if (view.me) { view.me = null; view.chat = null; saveHash(); }
    return;
  }
  if (!view.me && state.users.length) {
    view.me = state.users[0].id;
    saveHash();
    return refreshState();
  }
  view.state = state;
  renderSide(state);
}

function renderSide(state) {
  const who = $("#who");
  const options = state.users.map((u) => `${u.id}:${u.name}`).join("|");
  if (who.dataset.options !== options) {
    who.replaceChildren(...state.users.map((u) => el("option", { value: u.id }, u.name)));
    who.dataset.options = options;
  }
  who.value = String(view.me);
  const me = state.users.find((u) => u.id === view.me);
  $("#who-about").textContent = me ? `${me.about} · language ${me.language_code || "?"}` : "";

  const chats = $("#chats");
  const items = state.chats.map((c) => {
    const pending = c.status === "requested";
    const sub = c.kind === "bot" ? (state.bot ? `@${state.bot.username} · bot` : "bot")
      : pending ? null : `${c.members} members${c.status === "creator" ? " · you own it" : ""}`;
    return el("button", {
      type: "button", class: "chat-item" + (c.id === view.chat ? " active" : ""),
      "data-chat-id": c.id, "data-status": c.status,
      ...(pending ? { disabled: "" } : {}),
      onclick: () => openChat(c.id),
    }, el("div", { class: `avatar ${c.kind}` }, initials(c.title)),
    el("div", { class: "meta" }, el("div", { class: "t" }, c.title),
      sub ? el("div", { class: "muted" }, sub)
        : el("span", { class: "pending" }, "request to join pending")));
  });
  const sig = JSON.stringify([state.chats, view.chat]);
  if (chats.dataset.sig !== sig) {
    chats.replaceChildren(...items);
    chats.dataset.sig = sig;
  }
  const links = $("#side-links");
  const linkSig = JSON.stringify(state.links || []);
  if (links.dataset.sig !== linkSig) {
    links.replaceChildren(...(state.links || []).map((l) =>
      el("a", { href: l.url, target: "_blank", rel: "noopener" }, l.label)));
    links.hidden = !(state.links || []).length;
    links.dataset.sig = linkSig;
  }
  const days = state.clock.offset_seconds / 86400;
  const when = new Date(state.clock.now * 1000).toISOString().slice(0, 16).replace("T", " ");
  $("#clock-now").textContent = days > 0
    ? `${when} UTC (+${Number.isInteger(days) ? days : days.toFixed(2)} days)` : `${when} UTC`;
}

// --- the conversation ------------------------------------------------------------------

function openChat(chatId) {
  view.chat = chatId;
  view.shown = "";
  saveHash();
  $("#app").className = "show-chat";
  refreshChat();
  refreshState();
  $("#text").focus({ preventScroll: true });
}

async function refreshChat() {
  if (!view.me || !view.chat) return;
  let data;
  try {
    data = await api("GET", `/playground/api/chats/${view.chat}?user_id=${view.me}`);
  } catch (e) {
    view.chat = null;
    saveHash();
    $("#app").className = "show-list";
    return;
  }
  const sig = JSON.stringify(data);
  if (sig === view.shown) return;
  view.shown = sig;
  renderChat(data);
}

function renderChat(data) {
  const info = data.chat;
  view.chatInfo = info;
  $("#conv-title").textContent = info.title;
  $("#conv-sub").textContent = info.status === "requested" ? "request to join pending"
    : info.subtitle;
  const avatar = $("#conv-avatar");
  avatar.className = `avatar ${info.kind}`;
  avatar.textContent = initials(info.title);
  const present = ["creator", "administrator", "member", "restricted"].includes(info.status);
  $("#not-member").hidden = present;
  $("#composer").hidden = !present;
  $("#text").disabled = !present;
  $("#send").disabled = !present;

  const box = $("#messages");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  const nodes = data.messages.map((m) => renderMessage(m, info));
  if (!nodes.length) {
    nodes.push(el("div", { class: "empty" }, info.kind === "bot"
      ? "Say /start to the bot." : present ? "No messages yet. Owners: try /setup here."
        : "You are not in this group."));
  }
  box.replaceChildren(...nodes);
  if (atBottom || !box.dataset.chat || box.dataset.chat !== String(info.id)) {
    box.scrollTop = box.scrollHeight;
  }
  box.dataset.chat = String(info.id);

  const cmds = view.state ? view.state.commands[info.kind === "bot" ? "private" : "group"] : [];
  $("#cmds").replaceChildren(...(present ? cmds : []).map((c) => el("button", {
    type: "button", title: c.description, onclick: () => send(`/${c.command}`),
  }, `/${c.command}`)));
}

function renderMessage(m, info) {
  if (m.service) {
    return el("div", { class: "service", "data-message-id": m.id }, m.service);
  }
  const node = el("div", { class: "msg" + (m.mine ? " mine" : ""), "data-message-id": m.id });
  if (info.kind === "group" && !m.mine) node.append(el("div", { class: "from" }, m.from.name));
  if (m.invoice) {
    node.classList.add("invoice");
    node.append(renderInvoice(m, info));
  } else {
    const body = el("div", { class: "body" }, ...formatText(m.text || "", m.entities || []));
    if (m.edited) body.append(el("span", { class: "edited" }, "edited"));
    node.append(body);
  }
  if (m.photo) {
    node.prepend(el("img", {
      class: "photo", src: m.photo.url, alt: "photo",
      style: `aspect-ratio: ${m.photo.width} / ${m.photo.height}`,
    }));
  }
  if (m.document) {
    node.append(el("a", { href: m.document.url, target: "_blank", rel: "noopener" },
      `📄 ${m.document.name} (${m.document.size} bytes)`));
  }
  // An invoice without a keyboard still has its Pay button, as in the app.
  const rows = m.invoice && !(m.buttons || []).length ? [[{ text: "", pay: "true" }]]
    : m.buttons || [];
  if (rows.length) {
    const kb = el("div", { class: "kb" });
    for (const row of rows) {
      const r = el("div", { class: "kb-row" });
      for (const b of row) r.append(renderButton(m, b));
      kb.append(r);
    }
    node.append(kb);
  }
  return node;
}

function renderButton(m, b) {
  if (b.pay && m.invoice) return renderPayButton(m);
  if (b.url) {
    return el("a", {
      href: b.url, target: "_blank", rel: "noopener", "data-url": b.url,
      onclick: (ev) => { if (interceptLink(b.url)) ev.preventDefault(); },
    }, b.text);
  }
  return el("button", {
    type: "button", "data-callback": b.callback_data || "",
    onclick: () => press(m.id, b.callback_data || ""),
  }, b.text);
}

// --- payments: invoice cards and Telegram Stars invoice links --------------------------------

// Stars are a count and a star; other currencies in their major unit (Intl knows the digits).
function price(currency, amount) {
  if (currency === "XTR") return `${amount} ⭐`;
  try {
    const f = new Intl.NumberFormat("en", { style: "currency", currency });
    return f.format(amount / 10 ** f.resolvedOptions().maximumFractionDigits);
  } catch (e) {
    return `${amount} ${currency}`;
  }
}

const isInvoiceLink = (url) => /^https:\/\/t\.me\/\$[A-Za-z0-9_-]+$/.test(url);

function renderInvoice(m, info) {
  const inv = m.invoice;
  const card = el("div", { class: "invoice-card" },
    el("div", { class: "invoice-title" }, inv.title || "Invoice"),
    inv.description ? el("div", { class: "invoice-desc" }, inv.description) : null,
    el("div", { class: "invoice-price" }, price(inv.currency, inv.total_amount),
      el("span", { class: "muted" }, inv.currency === "XTR" ? " Telegram Stars" : "")));
  // A refusal stays on the card; a payment shows as the Paid button (and a notice).
  const outcome = payments.outcome.get(`${info.id}:${m.id}`);
  if (outcome && !inv.paid) card.append(el("div", { class: `pay-outcome ${outcome.kind}`, role: "status" },
    outcome.text));
  return card;
}

function renderPayButton(m) {
  const inv = m.invoice;
  const key = `${view.chat}:${m.id}`;
  if (inv.paid) {
    return el("button", { type: "button", class: "pay-button paid", disabled: "" }, "Paid ✓");
  }
  const busy = payments.busy.has(key);
  return el("button", {
    type: "button", class: "pay-button", "data-pay": m.id,
    ...(busy ? { disabled: "" } : {}),
    onclick: () => payInvoice(m),
  }, busy ? "Paying…" : `Pay ${price(inv.currency, inv.total_amount)}`);
}

// What the outcome of a payment attempt reads like, and whether it is bad news.
function paymentOutcome(result, amount) {
  if (result.status === "paid") return { kind: "ok", text: `Paid ${amount}.` };
  if (result.status === "declined") {
    return { kind: "refused", text: `Payment refused by the bot: ${result.error_message}` };
  }
  return { kind: "refused",
    text: "The bot did not confirm the payment in time. Nothing was charged." };
}

async function payInvoice(m) {
  const key = `${view.chat}:${m.id}`;
  const amount = price(m.invoice.currency, m.invoice.total_amount);
  payments.busy.add(key);
  payments.outcome.delete(key);
  rerender();
  let outcome;
  try {
    const result = await api("POST", "/playground/api/invoices/pay", {
      user_id: view.me, chat_id: view.chat, message_id: m.id,
    });
    outcome = paymentOutcome(result, amount);
  } catch (e) {
    outcome = { kind: "refused", text: e.message };
  }
  payments.busy.delete(key);
  payments.outcome.set(key, outcome);
  toast(outcome.text, outcome.kind !== "ok");
  rerender();
}

function rerender() {
  view.shown = "";
  refreshChat();
}

// An invoice link opens the payment sheet: what it is, what it costs, and Pay.
async function openInvoiceLink(url) {
  let inv;
  try {
    inv = await api("GET", `/playground/api/invoice_link?link=${encodeURIComponent(url)}`);
  } catch (e) {
    toast(e.message, true);
    return;
  }
  const amount = price(inv.currency, inv.total_amount);
  const every = inv.subscription_period
    ? ` every ${Math.round(inv.subscription_period / 86400)} days` : "";
  const dialog = $("#pay-dialog");
  $("#pay-title").textContent = inv.title;
  $("#pay-desc").textContent = inv.description;
  $("#pay-price").replaceChildren(...starry(`${amount}${every}`));
  const result = $("#pay-result");
  result.hidden = true;
  result.className = "pay-outcome";
  const ok = $("#pay-ok");
  ok.hidden = false;
  ok.disabled = false;
  ok.replaceChildren(...starry(inv.subscription_period ? `Subscribe for ${amount}`
    : `Pay ${amount}`));
  $("#pay-cancel").textContent = "Cancel";
  dialog.dataset.link = url;
  dialog.dataset.amount = amount;
  dialog.showModal();
}

async function payInvoiceLink() {
  const dialog = $("#pay-dialog");
  const ok = $("#pay-ok");
  const label = [...ok.childNodes];
  ok.disabled = true;
  ok.textContent = "Paying…";
  let outcome;
  try {
    const result = await api("POST", "/playground/api/invoice_link/pay", {
      user_id: view.me, link: dialog.dataset.link,
    });
    outcome = paymentOutcome(result, dialog.dataset.amount);
  } catch (e) {
    outcome = { kind: "refused", text: e.message };
  }
  const result = $("#pay-result");
  result.replaceChildren(...starry(outcome.text));
  result.className = `pay-outcome ${outcome.kind}`;
  result.hidden = false;
  if (outcome.kind === "ok") {
    ok.hidden = true;
    $("#pay-cancel").textContent = "Done";
  } else {
    ok.disabled = false;
    ok.replaceChildren(...label);
  }
  rerender();
}

// Telegram's entities count UTF-16 code units, exactly as JavaScript strings do.
function formatText(text, entities) {
  const cuts = new Set([0, text.length]);
  for (const e of entities) { cuts.add(e.offset); cuts.add(e.offset + e.length); }
  const points = [...cuts].filter((p) => p >= 0 && p <= text.length).sort((a, b) => a - b);
  const out = [];
  for (let i = 0; i + 1 < points.length; i++) {
    const [from, to] = [points[i], points[i + 1]];
    let node = document.createTextNode(text.slice(from, to));
    for (const e of entities) {
      if (e.offset > from || e.offset + e.length < to) continue;
      node = wrap(node, e, text.slice(e.offset, e.offset + e.length));
    }
    out.push(node);
  }
  linkifyPlain(out);
  return out;
}

function wrap(node, e, whole) {
  const tags = { bold: "b", italic: "i", underline: "u", strikethrough: "s", code: "code",
    pre: "pre", spoiler: "span", blockquote: "blockquote" };
  if (e.type === "text_link" || e.type === "url") {
    const url = e.type === "url" ? (/^https?:/.test(whole) ? whole : `https://${whole}`) : e.url;
    return el("a", { href: url, target: "_blank", rel: "noopener",
      onclick: (ev) => { if (interceptLink(url)) ev.preventDefault(); } }, node);
  }
  if (e.type === "bot_command") {
    return el("span", { class: "cmd", onclick: () => send(whole) }, node);
  }
  return tags[e.type] ? el(tags[e.type], {}, node) : node;
}

// Bare invite links in plain text (no url entity) still open the invite dialog.
function linkifyPlain(nodes) {
  for (let i = 0; i < nodes.length; i++) {
    const n = nodes[i];
    if (n.nodeType !== Node.TEXT_NODE || !/https:\/\/t\.me\//.test(n.textContent)) continue;
    const span = el("span");
    const parts = n.textContent.split(/(https:\/\/t\.me\/\S+)/);
    for (const p of parts) {
      if (/^https:\/\/t\.me\//.test(p)) {
        span.append(el("a", { href: p, onclick: (ev) => { ev.preventDefault(); interceptLink(p); } }, p));
      } else if (p) span.append(p);
    }
    nodes[i] = span;
  }
}

// --- doing things ------------------------------------------------------------------------

async function send(text) {
  if (!view.me || !view.chat || !text.trim()) return;
  try {
    await api("POST", "/control/messages", { from_id: view.me, chat_id: view.chat, text });
  } catch (e) {
    toast(e.message, true);
  }
  refreshChat();
}

async function press(messageId, data) {
  let queryId;
  try {
    queryId = (await api("POST", "/control/callbacks", {
      from_id: view.me, chat_id: view.chat, message_id: messageId, data,
    })).callback_query_id;
  } catch (e) {
    toast(e.message, true);
    return;
  }
  refreshChat();
  // The bot answers the button press (a toast or an alert in the app), usually at once.
  for (let i = 0; i < 20; i++) {
    await new Promise((r) => setTimeout(r, 250));
    const q = await api("GET", `/control/callbacks/${queryId}`).catch(() => null);
    if (q && q.answered) {
      if (q.answer && q.answer.text) toast(q.answer.text, !!q.answer.show_alert);
      return;
    }
  }
}

// t.me links act in the app: invite links open the join dialog, ?start= links the bot.
function interceptLink(url) {
  if (isInvoiceLink(url)) {
    openInvoiceLink(url);
    return true;
  }
  if (/^https:\/\/t\.me\/\+/.test(url)) {
    openInvite(url);
    return true;
  }
  const start = url.match(/^https:\/\/t\.me\/([A-Za-z0-9_]+)\?start=([A-Za-z0-9_-]+)$/);
  if (start && view.me) {
    openChat(view.me);
    send(`/start ${start[2]}`);
    return true;
  }
  return false;
}

async function openInvite(url) {
  const info = await api("GET", `/playground/api/invite?link=${encodeURIComponent(url)}`)
    .catch((e) => ({ offer: "invalid", error: e.message }));
  const dialog = $("#invite-dialog");
  const texts = {
    join: ["Join group", "Anyone with this link can join."],
    request: ["Request to join", "An admin of the group must approve your request."],
    invalid: ["", "This invite link is invalid."],
    revoked: ["", "This invite link was revoked."],
    expired: ["", "This invite link has expired."],
  };
  const [ok, text] = texts[info.offer] || texts.invalid;
  $("#invite-title").textContent = info.title || "Invite link";
  $("#invite-text").textContent = text;
  $("#invite-ok").textContent = ok;
  dialog.dataset.link = url;
  dialog.returnValue = "";
  dialog.showModal();
}

async function acceptInvite(url) {
  let result;
  try {
    result = await api("POST", "/control/join", { user_id: view.me, invite_link: url });
  } catch (e) {
    toast(e.message, true);
    return;
  }
  const says = {
    joined: "You joined the group.",
    requested: "Join request sent. An admin of the group reviews it.",
    already_member: "You are already a member.",
    banned: "You are banned from this group.",
    limit_reached: "This link has been used up.",
    invalid: "This invite link is invalid.",
    revoked: "This invite link was revoked.",
    expired: "This invite link has expired.",
  };
  toast(says[result.result] || result.result, !["joined", "requested", "already_member"]
    .includes(result.result));
  await refreshState();
  if (result.result === "joined") openChat(result.chat_id);
}

async function advance(body) {
  try {
    const r = await api("POST", "/playground/api/clock", body);
    const s = r.service;
    const what = s ? `reminders sent: ${s.reminded}, members removed: ${s.removed}` : "";
    const by = body.days ? `${body.days} day${body.days > 1 ? "s" : ""}` : `${body.hours} hour`;
    $("#clock-result").textContent = `Moved ${by} forward. ${what}`;
  } catch (e) {
    toast(e.message, true);
  }
  refreshState();
  refreshChat();
}

// --- wiring ------------------------------------------------------------------------------

function wire() {
  $("#who").addEventListener("change", (ev) => {
    hideToast();
    view.me = Number(ev.target.value);
    view.chat = null;
    view.shown = "";
    saveHash();
    $("#app").className = "show-list";
    $("#messages").replaceChildren(el("div", { class: "empty" }, "Pick a chat."));
    $("#conv-title").textContent = "Pick a chat";
    $("#conv-sub").textContent = "";
    $("#conv-avatar").textContent = "";
    $("#cmds").replaceChildren();
    refreshState();
  });
  $("#composer").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = $("#text");
    const text = input.value;
    input.value = "";
    send(text);
  });
  $("#back").addEventListener("click", () => {
    $("#app").className = "show-list";
  });
  $("#invite-dialog").addEventListener("close", (ev) => {
    const d = ev.target;
    if (d.returnValue === "ok" && $("#invite-ok").textContent) acceptInvite(d.dataset.link);
  });
  $("#pay-ok").addEventListener("click", payInvoiceLink);
  $("#add-user").addEventListener("click", () => {
    $("#user-name").value = "";
    $("#user-dialog").returnValue = "";
    $("#user-dialog").showModal();
  });
  $("#user-dialog").addEventListener("close", async (ev) => {
    if (ev.target.returnValue !== "ok") return;
    try {
      const user = await api("POST", "/playground/api/users", {
        first_name: $("#user-name").value, language_code: $("#user-lang").value,
      });
      view.me = user.id;
      view.chat = null;
      saveHash();
      $("#app").className = "show-list";
      toast(`Added ${user.name}. You are ${user.name} now.`);
    } catch (e) {
      toast(e.message, true);
    }
    refreshState();
  });
  $("#add-group").addEventListener("click", () => {
    $("#group-title").value = "";
    $("#group-dialog").returnValue = "";
    $("#group-dialog").showModal();
  });
  $("#group-dialog").addEventListener("close", async (ev) => {
    if (ev.target.returnValue !== "ok") return;
    try {
      const chat = await api("POST", "/playground/api/groups", {
        title: $("#group-title").value, creator_id: view.me,
      });
      await refreshState();
      openChat(chat.id);
    } catch (e) {
      toast(e.message, true);
    }
  });
  $("#open-link").addEventListener("click", () => {
    $("#link-url").value = "";
    $("#link-dialog").returnValue = "";
    $("#link-dialog").showModal();
  });
  $("#link-dialog").addEventListener("close", (ev) => {
    const url = $("#link-url").value.trim();
    if (ev.target.returnValue !== "ok" || !url) return;
    if (!interceptLink(url)) window.open(url, "_blank", "noopener");
  });
  for (const b of document.querySelectorAll("[data-advance-days],[data-advance-hours]")) {
    b.addEventListener("click", () => advance(b.dataset.advanceDays
      ? { days: Number(b.dataset.advanceDays) } : { hours: Number(b.dataset.advanceHours) }));
  }
}

async function main() {
  loadHash();
  wire();
  await refreshState();
  if (view.chat) openChat(view.chat);
  setInterval(refreshState, 1500);
  setInterval(refreshChat, 700);
}

main();
