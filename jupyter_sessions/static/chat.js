// jupyter-sessions chat renderer: one framework-free ES module for every view of a session.
//
//   reduce(state, event) / fold(events)  the event log -> view state (mirrors transcript.py)
//   Feed                                 incremental folding of a compacted, growing log
//   renderMarkdown(text)                 Markdown -> DOM, safe by construction (no innerHTML)
//   mount(el, {actions, ui})             the chat view; controller.update(state, meta)
//   createApi(baseUrl, sessionId)        REST actions from a browser page (XSRF cookie + token)
//   default export {render}              the anywidget entry used by the notebook widget
//
// The JupyterLab side panel imports this same module, so chat, tool blocks and the question form
// have one implementation. Nothing here uses innerHTML with data: every text goes through
// createTextNode, links are limited to http(s)/mailto, and no inline handlers are ever built.

export const VERSION = "0.1.0";

const MERGEABLE = {
  TEXT_MESSAGE_CONTENT: "messageId",
  REASONING_MESSAGE_CONTENT: "messageId",
  TOOL_CALL_ARGS: "toolCallId",
};
const RESTING = new Set(["Stopped", "Completed", "Failed"]);
const ACTIVE = new Set(["Pending", "Creating", "Running"]);

// ---------------------------------------------------------------------------------------------
// Reducer

export function createState() {
  return {
    items: [],
    byKey: new Map(),
    args: new Map(),
    phase: null,
    agentState: null,
    displayName: null,
    running: false,
    lastSeq: 0,
  };
}

function add(state, key, item, seq) {
  item.key = key || `n${state.items.length}`;
  item.seq = seq;
  item.v = 0;
  state.items.push(item);
  if (key) state.byKey.set(key, item);
  return item;
}

function get(state, key) {
  return state.byKey.get(key);
}

function parseArgs(raw) {
  if (!raw) return {};
  try {
    return JSON.parse(raw);
  } catch (e) {
    return raw;
  }
}

/** Apply one event (mutates and returns `state`). Items bump `v` whenever they change. */
export function reduce(state, ev) {
  const t = ev.type;
  const d = ev.data || {};
  const seq = ev.seq0 !== undefined ? ev.seq0 : ev.seq || 0;
  state.lastSeq = Math.max(state.lastSeq, ev.seq || 0);
  let it;
  switch (t) {
    case "PHASE_CHANGED":
      state.phase = d.phase;
      add(state, null, { kind: "phase", phase: d.phase, reason: d.reason, ts: ev.ts }, seq);
      break;
    case "AGENT_STATE_CHANGED":
      state.agentState = d.state;
      break;
    case "SESSION_RENAMED":
      state.displayName = d.display_name;
      break;
    case "RUN_STARTED":
      state.running = true;
      break;
    case "RUN_FINISHED":
      state.running = false;
      break;
    case "USER_MESSAGE":
      add(state, "u:" + d.message_id,
        { kind: "user", message_id: d.message_id, text: d.text || "", status: "queued", ts: ev.ts }, seq);
      break;
    case "MESSAGE_DELIVERED":
      if ((it = get(state, "u:" + d.message_id))) { it.status = "delivered"; it.v++; }
      break;
    case "TEXT_MESSAGE_START":
      add(state, "a:" + d.messageId,
        { kind: "assistant", message_id: d.messageId, text: "", streaming: true, feedback: null, ts: ev.ts }, seq);
      break;
    case "TEXT_MESSAGE_CONTENT":
      if ((it = get(state, "a:" + d.messageId))) { it.text += d.delta || ""; it.v++; }
      break;
    case "TEXT_MESSAGE_END":
      if ((it = get(state, "a:" + d.messageId))) { it.streaming = false; it.v++; }
      break;
    case "REASONING_MESSAGE_START":
      add(state, "r:" + d.messageId,
        { kind: "thinking", message_id: d.messageId, text: "", streaming: true, ts: ev.ts }, seq);
      break;
    case "REASONING_MESSAGE_CONTENT":
      if ((it = get(state, "r:" + d.messageId))) { it.text += d.delta || ""; it.v++; }
      break;
    case "REASONING_MESSAGE_END":
      if ((it = get(state, "r:" + d.messageId))) { it.streaming = false; it.v++; }
      break;
    case "TOOL_CALL_START":
      state.args.set(d.toolCallId, "");
      add(state, "t:" + d.toolCallId, {
        kind: "tool", tool_call_id: d.toolCallId, name: d.toolCallName || "", args: {}, result: null,
        is_error: false, summary: "", status: "running", ts: ev.ts,
      }, seq);
      break;
    case "TOOL_CALL_ARGS": {
      const raw = (state.args.get(d.toolCallId) || "") + (d.delta || "");
      state.args.set(d.toolCallId, raw);
      if ((it = get(state, "t:" + d.toolCallId))) { it.args = parseArgs(raw); it.v++; }
      break;
    }
    case "TOOL_CALL_RESULT":
      if ((it = get(state, "t:" + d.toolCallId))) {
        it.result = d.content === undefined ? null : d.content;
        it.is_error = !!d.isError;
        it.summary = d.summary || it.summary;
        it.status = "done";
        it.v++;
      }
      break;
    case "QUESTION_ASKED":
      add(state, "q:" + d.toolCallId,
        { kind: "question", tool_call_id: d.toolCallId, questions: d.questions || [], answers: null, ts: ev.ts }, seq);
      break;
    case "QUESTION_ANSWERED":
      if ((it = get(state, "q:" + d.toolCallId))) { it.answers = d.answers || []; it.v++; }
      break;
    case "RUN_ERROR":
      state.running = false;
      add(state, null, { kind: "error", message: d.message || "", ts: ev.ts }, seq);
      break;
    case "REPO_CLONED":
    case "REPO_CLONE_FAILED":
    case "SANDBOX_WARNING":
      add(state, null, { kind: "notice", type: t, data: d, ts: ev.ts }, seq);
      break;
    case "FEEDBACK_RECORDED":
      if ((it = get(state, "a:" + d.message_id))) {
        it.feedback = { rating: d.rating, comment: d.comment || "" };
        it.v++;
      }
      break;
    default:
      break;
  }
  return state;
}

export function fold(events) {
  const state = createState();
  for (const ev of events) reduce(state, ev);
  return state;
}

export function pendingQuestion(state) {
  for (let i = state.items.length - 1; i >= 0; i--) {
    const it = state.items[i];
    if (it.kind === "question" && it.answers === null) return it;
  }
  return null;
}

/**
 * Folds a growing, compacted log incrementally. The log may be handed over whole each time (it
 * is skipped by seq); the last event may have grown since (a merged delta): only its new part is
 * applied. Anything inconsistent refolds from scratch.
 */
export class Feed {
  constructor() {
    this.reset();
  }
  reset() {
    this.state = createState();
    this.applied = 0;
    this.partial = null;
    this.generation = (this.generation || 0) + 1;
  }
  push(events) {
    for (const ev of events) {
      if ((ev.seq || 0) <= this.applied) continue;
      const seq0 = ev.seq0 !== undefined ? ev.seq0 : ev.seq;
      let e = ev;
      if (seq0 <= this.applied) {
        const p = this.partial;
        if (p && p.seq0 === seq0 && p.type === ev.type) {
          e = { ...ev, data: { ...ev.data, delta: (ev.data.delta || "").slice(p.len) } };
        } else {
          this.reset();
          this.push(events);
          return this.state;
        }
      }
      reduce(this.state, e);
      this.applied = ev.seq;
      this.partial = MERGEABLE[ev.type] ? { seq0, type: ev.type, len: (ev.data.delta || "").length } : null;
    }
    return this.state;
  }
}

/** One line for a collapsed tool block (mirrors the agent's summaries). */
export function toolSummary(name, args) {
  const a = args && typeof args === "object" ? args : {};
  if (["read_file", "write_file", "edit_file"].includes(name)) return String(a.path || "");
  if (name === "bash") return String(a.command || "").trim().split("\n")[0];
  if (name === "grep" || name === "glob") return String(a.pattern || "") + (a.path ? ` in ${a.path}` : "");
  if (name === "ask_user_question") return (a.questions || []).map((q) => q && q.header).filter(Boolean).join(", ");
  return "";
}

// ---------------------------------------------------------------------------------------------
// Markdown (a safe subset, rendered straight into DOM nodes)

const SAFE_URL = /^(https?:\/\/|mailto:)/i;
// Terminal escape sequences and control characters (tab and newline stay): tool output is shown
// as text, and raw ESC/BEL codes must not reach the page.
const ANSI = /\x1b(?:\[[0-?]*[ -\/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])/g;
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/g;

export function clean(text) {
  return String(text).replace(ANSI, "").replace(CONTROL, "");
}

function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = clean(v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.appendChild(typeof c === "string" ? document.createTextNode(clean(c)) : c);
  }
  return node;
}

const INLINE = [
  ["code", /`+/],
  ["link", /!?\[/],
  ["auto", /<(https?:\/\/[^\s<>]+)>/],
  ["url", /\bhttps?:\/\/[^\s<>()]+[^\s<>().,;:!?'"]/],
  ["strong", /\*\*(?=\S)|__(?=\S)/],
  ["strike", /~~(?=\S)/],
  ["em", /\*(?=[^\s*])|\b_(?=[^\s_])/],
];

function findClosing(text, from, marker) {
  let i = from;
  while ((i = text.indexOf(marker, i)) !== -1) {
    if (text[i - 1] !== " " && text[i - 1] !== "\\") return i;
    i += marker.length;
  }
  return -1;
}

function inline(text, out) {
  let rest = text;
  while (rest) {
    let best = null;
    for (const [kind, re] of INLINE) {
      const m = re.exec(rest);
      if (m && (best === null || m.index < best.m.index)) best = { kind, m };
    }
    if (!best) {
      out.push(rest);
      break;
    }
    const { kind, m } = best;
    const before = rest.slice(0, m.index);
    const at = m.index;
    let consumed = 0;
    let node = null;
    if (kind === "code") {
      const ticks = m[0];
      const end = rest.indexOf(ticks, at + ticks.length);
      if (end !== -1) {
        node = h("code", null, rest.slice(at + ticks.length, end).replace(/^ (.*) $/, "$1"));
        consumed = end + ticks.length - at;
      }
    } else if (kind === "link") {
      const image = m[0] === "![";
      const close = rest.indexOf("](", at);
      const end = close === -1 ? -1 : rest.indexOf(")", close + 2);
      if (close !== -1 && end !== -1 && !rest.slice(at + m[0].length, close).includes("\n")) {
        const label = rest.slice(at + m[0].length, close);
        const url = rest.slice(close + 2, end).trim().split(/\s+/)[0].replace(/^<|>$/g, "");
        const kids = [];
        inline(label, kids);
        if (SAFE_URL.test(url) && !image) {
          node = h("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, kids);
        } else {
          node = h("span", { class: "jps-link-text", title: image ? "image not shown" : undefined }, kids);
        }
        consumed = end + 1 - at;
      }
    } else if (kind === "auto" || kind === "url") {
      const url = kind === "auto" ? m[1] : m[0];
      node = h("a", { href: url, target: "_blank", rel: "noopener noreferrer" }, url);
      consumed = m[0].length;
    } else {
      const marker = kind === "em" ? m[0] : m[0];
      const end = findClosing(rest, at + marker.length, marker);
      if (end !== -1 && end > at + marker.length) {
        const kids = [];
        inline(rest.slice(at + marker.length, end), kids);
        node = h(kind === "strong" ? "strong" : kind === "strike" ? "del" : "em", null, kids);
        consumed = end + marker.length - at;
      }
    }
    if (!node) {
      out.push(before + rest.slice(at, at + Math.max(1, m[0].length)));
      rest = rest.slice(at + Math.max(1, m[0].length));
      continue;
    }
    if (before) out.push(before);
    out.push(node);
    rest = rest.slice(at + consumed);
  }
  return out;
}

function inlineLines(text) {
  const out = [];
  text.split("\n").forEach((line, i) => {
    if (i) out.push(h("br"));
    inline(line.replace(/\\([\\`*_{}[\]()#+\-.!~|>])/g, "$1"), out);
  });
  return out;
}

const RE = {
  fence: /^\s{0,3}(`{3,}|~{3,})\s*([\w+#.-]*)/,
  heading: /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/,
  hr: /^\s{0,3}([-*_])(\s*\1){2,}\s*$/,
  quote: /^\s{0,3}>\s?/,
  item: /^(\s*)([-*+]|\d{1,9}[.)])\s+/,
  tableSep: /^\s*\|?\s*:?-{1,}:?\s*(\|\s*:?-{1,}:?\s*)*\|?\s*$/,
};

function splitRow(line) {
  let s = line.trim();
  if (s.startsWith("|")) s = s.slice(1);
  if (s.endsWith("|") && !s.endsWith("\\|")) s = s.slice(0, -1);
  return s.split(/(?<!\\)\|/).map((c) => c.trim());
}

function blocks(lines, out) {
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) { i++; continue; }
    let m;
    if ((m = RE.fence.exec(line))) {
      const fence = m[1];
      const body = [];
      i++;
      while (i < lines.length && !lines[i].trim().startsWith(fence)) body.push(lines[i++]);
      i++;
      const lang = (m[2] || "").replace(/[^\w+#.-]/g, "");
      out.push(h("pre", { class: "jps-code" }, h("code", { class: lang ? `language-${lang}` : undefined }, body.join("\n"))));
      continue;
    }
    if ((m = RE.heading.exec(line))) {
      out.push(h(`h${Math.min(6, m[1].length + 2)}`, { class: "jps-h" }, inlineLines(m[2])));
      i++;
      continue;
    }
    if (RE.hr.test(line)) { out.push(h("hr")); i++; continue; }
    if (RE.quote.test(line)) {
      const body = [];
      while (i < lines.length && lines[i].trim() && RE.quote.test(lines[i])) body.push(lines[i++].replace(RE.quote, ""));
      const q = h("blockquote");
      const kids = [];
      blocks(body, kids);
      kids.forEach((k) => q.appendChild(k));
      out.push(q);
      continue;
    }
    if ((m = RE.item.exec(line))) {
      const ordered = /\d/.test(m[2]);
      const indent = m[1].length;
      const list = h(ordered ? "ol" : "ul");
      if (ordered && parseInt(m[2], 10) !== 1) list.setAttribute("start", String(parseInt(m[2], 10)));
      while (i < lines.length) {
        const mm = RE.item.exec(lines[i]);
        if (!mm || mm[1].length !== indent || /\d/.test(mm[2]) !== ordered) break;
        const body = [lines[i].slice(mm[0].length)];
        i++;
        while (i < lines.length && lines[i].trim() && !(RE.item.exec(lines[i]) && RE.item.exec(lines[i])[1].length <= indent)) {
          body.push(lines[i].replace(new RegExp(`^\\s{0,${indent + 4}}`), ""));
          i++;
        }
        const li = h("li");
        const kids = [];
        const nested = body.findIndex((l, k) => k > 0 && RE.item.test(l));
        if (nested > 0) {
          inlineLines(body.slice(0, nested).join("\n")).forEach((k) => li.append(k));
          blocks(body.slice(nested), kids);
        } else {
          inlineLines(body.join("\n")).forEach((k) => li.append(k));
        }
        kids.forEach((k) => li.appendChild(k));
        list.appendChild(li);
        if (i < lines.length && !lines[i].trim() && i + 1 < lines.length && RE.item.exec(lines[i + 1]) &&
            RE.item.exec(lines[i + 1])[1].length === indent) i++;
      }
      out.push(list);
      continue;
    }
    if (line.includes("|") && i + 1 < lines.length && RE.tableSep.test(lines[i + 1]) && lines[i + 1].includes("-")) {
      const head = splitRow(line);
      i += 2;
      const rows = [];
      while (i < lines.length && lines[i].trim() && lines[i].includes("|")) rows.push(splitRow(lines[i++]));
      out.push(h("div", { class: "jps-table-wrap" }, h("table", null,
        h("thead", null, h("tr", null, head.map((c) => h("th", null, inlineLines(c))))),
        h("tbody", null, rows.map((r) => h("tr", null, head.map((_, k) => h("td", null, inlineLines(r[k] || "")))))))));
      continue;
    }
    const para = [];
    while (i < lines.length && lines[i].trim() && !RE.fence.test(lines[i]) && !RE.heading.test(lines[i]) &&
           !RE.quote.test(lines[i]) && !(para.length && RE.item.test(lines[i])) && !RE.hr.test(lines[i])) {
      para.push(lines[i++]);
    }
    if (!para.length) para.push(lines[i++]);
    out.push(h("p", null, inlineLines(para.join("\n"))));
  }
  return out;
}

/** Markdown -> a DocumentFragment. Raw HTML shows as text; only http(s)/mailto links are live. */
export function renderMarkdown(text) {
  const frag = document.createDocumentFragment();
  blocks(clean(String(text || "").replace(/\r\n?/g, "\n")).split("\n"), []).forEach((n) => frag.appendChild(n));
  return frag;
}

// ---------------------------------------------------------------------------------------------
// The view

const ICONS = {
  up: "M2 21h4V9H2v12zm20-11c0-1.1-.9-2-2-2h-6.31l.95-4.57.03-.32c0-.41-.17-.79-.44-1.06L13.17 1 6.59 7.59C6.22 7.95 6 8.45 6 9v10c0 1.1.9 2 2 2h9c.83 0 1.54-.5 1.84-1.22l3.02-7.05c.09-.23.14-.47.14-.73v-2z",
};

function icon(name, flip) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", "14");
  svg.setAttribute("height", "14");
  svg.setAttribute("aria-hidden", "true");
  if (flip) svg.setAttribute("transform", "rotate(180)");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", ICONS[name]);
  path.setAttribute("fill", "currentColor");
  svg.appendChild(path);
  return svg;
}

function pretty(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value, null, 2);
  } catch (e) {
    return String(value);
  }
}

function answerText(a) {
  if (a && typeof a === "object" && !Array.isArray(a)) return a.text || (a.selected || []).join(", ") || a.other || "";
  if (Array.isArray(a)) return a.join(", ");
  return String(a === undefined || a === null ? "" : a);
}

/** Per-view UI state that should survive re-rendering (expanded blocks, drafts, forms). */
export function createUiState() {
  return { open: new Set(), showEarlier: false, draft: "", forms: new Map(), feedback: new Map(), error: "" };
}

function formFor(ui, item) {
  let f = ui.forms.get(item.tool_call_id);
  if (!f) {
    f = {
      tab: 0,
      values: item.questions.map(() => ({ choice: null, other: "", otherOn: false, multi: [], text: "" })),
      submitting: false,
      error: "",
    };
    ui.forms.set(item.tool_call_id, f);
  }
  return f;
}

export function answerOf(q, v) {
  const opts = q.options || [];
  if (!opts.length) return v.text.trim() || null;
  if (q.multiSelect) return v.multi.length ? opts.map((o) => o.label).filter((l) => v.multi.includes(l)) : null;
  if (v.otherOn) return v.other.trim() || null;
  return v.choice;
}

/**
 * Mount the chat view into `el`. `actions` = {send(text), answer(toolCallId, answers), stop(),
 * resume(), feedback(messageId, rating, comment)}, each returning a promise. Returns
 * {update(state, meta), destroy()}; meta = {session, status, startSeq}.
 */
export function mount(el, { actions, ui = createUiState(), autoAdvanceMs = 180 } = {}) {
  const nodes = new Map(); // item key -> {node, item, v}
  let state = createState();
  let meta = { session: {}, status: "", startSeq: 0 };

  const title = h("span", { class: "jps-title" });
  const model = h("span", { class: "jps-model" });
  const phase = h("span", { class: "jps-badge jps-phase" });
  const agent = h("span", { class: "jps-badge jps-agent-state" });
  const conn = h("span", { class: "jps-conn" });
  const stopBtn = h("button", { class: "jps-btn jps-stop", type: "button", title: "Gracefully halt the agent; resume later" }, "Stop");
  const resumeBtn = h("button", { class: "jps-btn jps-resume", type: "button", title: "Continue a stopped session" }, "Resume");
  const header = h("div", { class: "jps-header" }, title, model, phase, agent, h("span", { class: "jps-spacer" }), conn, stopBtn, resumeBtn);
  const earlier = h("button", { class: "jps-earlier", type: "button" });
  const items = h("div", { class: "jps-items" });
  const working = h("div", { class: "jps-working" });
  const log = h("div", { class: "jps-log" }, earlier, items, working);
  const input = h("textarea", { class: "jps-input", rows: "2", placeholder: "Message the agent (Enter to send, Shift+Enter for a new line)" });
  const sendBtn = h("button", { class: "jps-btn jps-primary jps-send", type: "button" }, "Send");
  const composer = h("div", { class: "jps-composer" }, input, sendBtn);
  const errorText = h("span");
  const errorClose = h("button", { class: "jps-x", type: "button", title: "Dismiss", "aria-label": "Dismiss" }, "×");
  const errorBar = h("div", { class: "jps-error-bar", role: "alert" }, errorText, errorClose);
  const root = h("div", { class: "jps-chat" }, header, log, composer, errorBar);
  el.appendChild(root);
  input.value = ui.draft || "";

  // Follow the bottom of the log while the user is there (new text, a growing question form).
  let pinned = true;
  log.addEventListener("scroll", () => { pinned = log.scrollHeight - log.scrollTop - log.clientHeight < 40; });
  const stick = () => { if (pinned) log.scrollTop = log.scrollHeight; };
  const resizes = typeof ResizeObserver !== "undefined" ? new ResizeObserver(stick) : null;
  if (resizes) resizes.observe(items);

  function showError(msg) {
    ui.error = msg ? String(msg).split("\n")[0] : "";
    errorText.textContent = ui.error;
    errorBar.style.display = ui.error ? "" : "none";
  }
  showError(ui.error);
  errorClose.addEventListener("click", () => showError(""));

  async function run(btn, fn) {
    if (btn) btn.disabled = true;
    try {
      await fn();
      showError("");
      return true;
    } catch (e) {
      showError(e && e.message ? e.message : String(e));
      return false;
    } finally {
      if (btn) btn.disabled = false;
      refreshControls();
    }
  }

  async function send() {
    const text = input.value.trim();
    if (!text || sendBtn.disabled) return;
    const ok = await run(sendBtn, () => actions.send(text));
    if (ok) {
      input.value = "";
      ui.draft = "";
    }
  }
  sendBtn.addEventListener("click", send);
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
    e.stopPropagation(); // keep JupyterLab's notebook shortcuts out of the message box
  });
  input.addEventListener("input", () => { ui.draft = input.value; });
  stopBtn.addEventListener("click", () => run(stopBtn, () => actions.stop()));
  resumeBtn.addEventListener("click", () => run(resumeBtn, () => actions.resume()));
  earlier.addEventListener("click", () => { ui.showEarlier = true; render(); });

  function currentPhase() {
    return state.phase || (meta.session && meta.session.phase) || "";
  }

  function refreshControls() {
    const p = currentPhase();
    const closed = meta.status === "closed";
    stopBtn.disabled = closed || !ACTIVE.has(p) || p === "Stopping";
    resumeBtn.disabled = closed || !RESTING.has(p);
    const canSend = !closed && ACTIVE.has(p);
    sendBtn.disabled = !canSend;
    input.disabled = !canSend;
    input.placeholder = closed ? "This session was deleted"
      : RESTING.has(p) ? "Resume the session to send messages"
        : "Message the agent (Enter to send, Shift+Enter for a new line)";
  }

  // --- items ---
  function renderUser(it) {
    return h("div", { class: "jps-msg jps-user" },
      h("div", { class: "jps-who" }, "You", it.status === "queued" ? h("span", { class: "jps-queued", title: "delivered to the agent at its next step" }, "queued") : null),
      h("div", { class: "jps-md" }, renderMarkdown(it.text)));
  }

  function renderAssistant(it) {
    const body = h("div", { class: "jps-md" }, renderMarkdown(it.text));
    if (it.streaming) {
      let at = body.lastElementChild;
      while (at && /^(UL|OL|BLOCKQUOTE)$/.test(at.tagName) && at.lastElementChild) at = at.lastElementChild;
      const cursor = h("span", { class: "jps-cursor", "aria-hidden": "true" });
      (at && /^(P|LI|H\d)$/.test(at.tagName) ? at : body).appendChild(cursor);
    }
    const node = h("div", { class: "jps-msg jps-assistant" + (it.streaming ? " jps-streaming" : "") },
      h("div", { class: "jps-who" }, "Agent"), body);
    if (!it.streaming && it.text.trim()) node.appendChild(feedbackBar(it));
    return node;
  }

  function feedbackBar(it) {
    const fb = ui.feedback.get(it.message_id) || {};
    const rated = it.feedback && it.feedback.rating;
    const thumb = (rating) => h("button", {
      class: "jps-thumb" + (rated === rating ? " jps-on" : "") + (fb.open === rating ? " jps-active" : ""),
      type: "button", title: rating === "up" ? "Good response" : "Bad response", "aria-label": `thumbs ${rating}`,
      "data-rating": rating,
      onclick: () => { ui.feedback.set(it.message_id, { open: fb.open === rating ? null : rating, comment: fb.comment || "" }); rerenderItem(it); },
    }, icon("up", rating === "down"));
    const bar = h("div", { class: "jps-feedback" }, thumb("up"), thumb("down"),
      rated ? h("span", { class: "jps-rated" }, "thanks for the feedback") : null);
    if (!fb.open) return bar;
    const box = h("textarea", { class: "jps-feedback-comment", rows: "2", placeholder: `What went ${fb.open === "up" ? "well" : "wrong"}? (optional)` });
    box.value = fb.comment || "";
    box.addEventListener("input", () => { fb.comment = box.value; ui.feedback.set(it.message_id, { ...fb, comment: box.value }); });
    box.addEventListener("keydown", (e) => e.stopPropagation());
    const submit = h("button", { class: "jps-btn jps-primary", type: "button" }, "Send feedback");
    const cancel = h("button", { class: "jps-btn", type: "button" }, "Cancel");
    submit.addEventListener("click", async () => {
      const cur = ui.feedback.get(it.message_id) || fb;
      const ok = await run(submit, () => actions.feedback(it.message_id, cur.open, (cur.comment || "").trim()));
      if (ok) { ui.feedback.delete(it.message_id); rerenderItem(it); }
    });
    cancel.addEventListener("click", () => { ui.feedback.delete(it.message_id); rerenderItem(it); });
    return h("div", null, bar, h("div", { class: "jps-feedback-box" },
      h("div", { class: "jps-label" }, fb.open === "up" ? "Thumbs up" : "Thumbs down"), box, h("div", { class: "jps-row" }, submit, cancel)));
  }

  function details(it, cls, summaryKids, bodyKids) {
    const d = h("details", { class: cls }, h("summary", null, summaryKids), h("div", { class: "jps-details-body" }, bodyKids));
    if (ui.open.has(it.key)) d.open = true;
    d.addEventListener("toggle", () => { if (d.open) ui.open.add(it.key); else ui.open.delete(it.key); });
    return d;
  }

  function renderThinking(it) {
    return details(it, "jps-thinking" + (it.streaming ? " jps-streaming" : ""),
      [h("span", { class: "jps-thinking-label" }, it.streaming ? "Thinking…" : "Thought"),
        h("span", { class: "jps-muted" }, ` ${it.text.length} chars`)],
      [h("div", { class: "jps-thinking-text" }, it.text)]);
  }

  function renderTool(it) {
    const summary = it.summary || toolSummary(it.name, it.args);
    const state = it.status === "running" ? "running" : it.is_error ? "error" : "ok";
    const mark = state === "running" ? h("span", { class: "jps-spinner", title: "running" })
      : h("span", { class: "jps-tool-mark", title: state === "error" ? "failed" : "done" }, state === "error" ? "✗" : "✓");
    const body = [h("div", { class: "jps-label" }, "Arguments"), h("pre", { class: "jps-pre" }, pretty(it.args))];
    if (it.result !== null) {
      body.push(h("div", { class: "jps-label" }, it.is_error ? "Error" : "Result"),
        h("pre", { class: "jps-pre jps-result" + (it.is_error ? " jps-error-text" : "") }, pretty(it.result)));
    } else {
      body.push(h("div", { class: "jps-muted" }, "running…"));
    }
    return details(it, `jps-tool jps-tool-${state}`,
      [mark, h("span", { class: "jps-tool-name" }, it.name), summary ? h("code", { class: "jps-tool-summary" }, summary) : null],
      body);
  }

  function renderPhase(it) {
    return h("div", { class: "jps-event jps-phase-event", "data-phase": it.phase },
      h("span", { class: "jps-badge jps-phase", "data-phase": it.phase }, it.phase), it.reason ? ` ${it.reason}` : "");
  }

  function renderNotice(it) {
    const d = it.data || {};
    const label = { REPO_CLONED: "Repository cloned", REPO_CLONE_FAILED: "Clone failed", SANDBOX_WARNING: "Sandbox" }[it.type] || it.type;
    const text = d.message || d.error || (d.url ? `${d.url}${d.branch ? "@" + d.branch : ""}${d.path ? " → " + d.path : ""}` : "");
    return h("div", { class: "jps-event jps-notice" + (it.type === "REPO_CLONE_FAILED" ? " jps-error-text" : "") }, `${label}: ${text}`);
  }

  function renderError(it) {
    return h("div", { class: "jps-run-error", role: "alert" }, h("strong", null, "Error: "), it.message);
  }

  function renderAnswered(it) {
    return h("div", { class: "jps-question jps-answered" },
      h("div", { class: "jps-q-title" }, "Agent asked"),
      h("ul", { class: "jps-q-summary" }, it.questions.map((q, i) => h("li", null,
        h("strong", null, q.header || `Question ${i + 1}`), `: ${q.question} → `,
        h("span", { class: "jps-q-answer" }, answerText((it.answers || [])[i]))))));
  }

  function renderQuestion(it) {
    if (it.answers !== null) return renderAnswered(it);
    const f = formFor(ui, it);
    const qs = it.questions;
    const node = h("div", { class: "jps-question jps-pending", role: "group", "aria-label": "Questions from the agent" });
    const counter = h("span", { class: "jps-q-counter" });
    const tabs = h("div", { class: "jps-q-tabs", role: "tablist" });
    const panel = h("div", { class: "jps-q-panel", role: "tabpanel" });
    const submit = h("button", { class: "jps-btn jps-primary jps-q-submit", type: "button" }, "Submit");
    const err = h("div", { class: "jps-q-error", role: "alert" });
    node.append(h("div", { class: "jps-q-head" }, h("span", { class: "jps-q-title" }, "The agent needs your input"), counter), tabs, panel,
      h("div", { class: "jps-q-foot" }, err, submit));

    const answered = (i) => answerOf(qs[i], f.values[i]) !== null;
    function status() {
      const n = qs.filter((_, i) => answered(i)).length;
      counter.textContent = `${n} of ${qs.length} answered`;
      submit.disabled = f.submitting || n !== qs.length;
      submit.textContent = f.submitting ? "Submitting…" : "Submit";
      [...tabs.children].forEach((tab, i) => {
        tab.classList.toggle("jps-done", answered(i));
        tab.classList.toggle("jps-current", i === f.tab);
        tab.setAttribute("aria-selected", i === f.tab ? "true" : "false");
      });
      err.textContent = f.error || "";
    }
    function go(i) {
      f.tab = Math.max(0, Math.min(qs.length - 1, i));
      draw();
    }
    function draw() {
      tabs.replaceChildren(...qs.map((q, i) => h("button", {
        class: "jps-q-tab", type: "button", role: "tab", onclick: () => go(i),
      }, h("span", { class: "jps-q-check", "aria-hidden": "true" }, "✓"), q.header || `Question ${i + 1}`)));
      const i = f.tab;
      const q = qs[i];
      const v = f.values[i];
      const opts = q.options || [];
      const kids = [h("div", { class: "jps-q-text" }, q.question)];
      const name = `jps-${it.tool_call_id}-${i}`;
      if (!opts.length) {
        const ta = h("textarea", { class: "jps-q-free", rows: "3", placeholder: "Your answer" });
        ta.value = v.text;
        ta.addEventListener("input", () => { v.text = ta.value; status(); });
        ta.addEventListener("keydown", (e) => e.stopPropagation());
        kids.push(ta);
      } else if (q.multiSelect) {
        kids.push(h("div", { class: "jps-q-hint" }, "Choose one or more"));
        for (const o of opts) {
          const cb = h("input", { type: "checkbox", name, value: o.label });
          cb.checked = v.multi.includes(o.label);
          cb.addEventListener("change", () => {
            v.multi = cb.checked ? [...v.multi, o.label] : v.multi.filter((l) => l !== o.label);
            status();
          });
          kids.push(h("label", { class: "jps-q-option" }, cb, h("span", { class: "jps-q-label" }, o.label),
            o.description ? h("span", { class: "jps-q-desc" }, o.description) : null));
        }
      } else {
        for (const o of opts) {
          const rb = h("input", { type: "radio", name, value: o.label });
          rb.checked = !v.otherOn && v.choice === o.label;
          rb.addEventListener("change", () => {
            v.choice = o.label;
            v.otherOn = false;
            status();
            draw();
            if (i < qs.length - 1) setTimeout(() => { if (f.tab === i && node.isConnected) go(i + 1); }, autoAdvanceMs);
          });
          kids.push(h("label", { class: "jps-q-option" }, rb, h("span", { class: "jps-q-label" }, o.label),
            o.description ? h("span", { class: "jps-q-desc" }, o.description) : null));
        }
        const orb = h("input", { type: "radio", name, value: "__other__" });
        orb.checked = v.otherOn;
        const other = h("input", { type: "text", class: "jps-q-other-text", placeholder: "Type your own answer",
          "aria-label": "Other answer" });
        other.value = v.other;
        const pickOther = () => {
          if (v.otherOn) return;
          v.otherOn = true;
          orb.checked = true;
          status();
        };
        orb.addEventListener("change", () => { pickOther(); other.focus(); });
        other.addEventListener("focus", pickOther);
        other.addEventListener("input", () => { v.other = other.value; pickOther(); status(); });
        other.addEventListener("keydown", (e) => {
          e.stopPropagation();
          if (e.key === "Enter" && v.other.trim() && i < qs.length - 1) go(i + 1);
        });
        kids.push(h("label", { class: "jps-q-option jps-q-other" }, orb, h("span", { class: "jps-q-label" }, "Other"), other));
      }
      const back = h("button", { class: "jps-btn", type: "button", disabled: i === 0, onclick: () => go(i - 1) }, "Back");
      const next = h("button", { class: "jps-btn", type: "button", disabled: i === qs.length - 1, onclick: () => go(i + 1) }, "Next");
      kids.push(h("div", { class: "jps-row jps-q-nav" }, back, next));
      panel.replaceChildren(...kids);
      status();
    }
    submit.addEventListener("click", async () => {
      if (submit.disabled) return;
      f.submitting = true;
      f.error = "";
      status();
      try {
        await actions.answer(it.tool_call_id, qs.map((q, i) => answerOf(q, f.values[i])));
      } catch (e) {
        f.submitting = false;
        f.error = e && e.message ? e.message : String(e);
      }
      status();
    });
    draw();
    return node;
  }

  const RENDER = {
    user: renderUser, assistant: renderAssistant, thinking: renderThinking, tool: renderTool,
    question: renderQuestion, phase: renderPhase, notice: renderNotice, error: renderError,
  };

  function nodeFor(it) {
    const c = nodes.get(it.key);
    if (c && c.item === it && c.v === it.v) return c.node;
    const node = (RENDER[it.kind] || (() => h("div")))(it);
    node.dataset.key = it.key;
    node.dataset.kind = it.kind;
    if (c && c.node.parentNode) c.node.replaceWith(node);
    nodes.set(it.key, { node, item: it, v: it.v });
    return node;
  }

  function rerenderItem(it) {
    nodes.delete(it.key);
    const old = items.querySelector(`[data-key="${CSS.escape(it.key)}"]`);
    const node = nodeFor(it);
    if (old && old !== node) old.replaceWith(node);
  }

  function render() {
    const start = meta.startSeq || 0;
    const visible = state.items.filter((it) => ui.showEarlier || it.seq > start || (it.kind === "question" && it.answers === null));
    const hidden = state.items.length - visible.length;
    earlier.textContent = `Show ${hidden} earlier item${hidden === 1 ? "" : "s"}`;
    earlier.style.display = hidden ? "" : "none";
    const keep = new Set();
    visible.forEach((it, i) => {
      const node = nodeFor(it);
      keep.add(node);
      if (items.children[i] !== node) items.insertBefore(node, items.children[i] || null);
    });
    for (const child of [...items.children]) if (!keep.has(child)) child.remove();
    for (const [k, c] of nodes) if (!keep.has(c.node)) nodes.delete(k);

    const s = meta.session || {};
    const p = currentPhase();
    const a = p === "Running" ? state.agentState || s.agent_state || "" : "";
    title.textContent = state.displayName || s.display_name || s.id || "";
    title.title = s.id || "";
    model.textContent = s.model || "";
    phase.textContent = p;
    phase.dataset.phase = p;
    agent.textContent = a.replace("_", " ");
    agent.dataset.state = a;
    agent.style.display = a ? "" : "none";
    const st = meta.status || "";
    conn.dataset.status = st.split(":")[0];
    conn.textContent = st === "live" ? "live" : st === "closed" ? "deleted" : st.startsWith("reconnecting") ? "reconnecting" : st;
    conn.title = st;
    let w = "";
    if (p === "Running" && a === "working") w = "Working…";
    else if (p === "Running" && a === "waiting_input") w = "Waiting for your answer";
    else if (p === "Pending" || p === "Creating") w = "Starting the session…";
    else if (p === "Stopping") w = "Stopping…";
    working.replaceChildren(...(w ? [h("span", { class: a === "waiting_input" ? "jps-dot" : "jps-spinner" }), " " + w] : []));
    working.style.display = w ? "" : "none";
    working.dataset.state = a || p;
    refreshControls();
    stick();
  }

  return {
    root,
    update(newState, newMeta) {
      state = newState;
      meta = { ...meta, ...(newMeta || {}) };
      render();
    },
    showError,
    destroy() {
      if (resizes) resizes.disconnect();
      root.remove();
      nodes.clear();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Talking to the API from a browser page

function cookie(name) {
  const m = document.cookie.match("\\b" + name + "=([^;]*)\\b");
  return m ? decodeURIComponent(m[1]) : "";
}

export function pageConfig() {
  const el = typeof document !== "undefined" && document.getElementById("jupyter-config-data");
  if (!el) return null;
  try {
    return JSON.parse(el.textContent || "{}");
  } catch (e) {
    return null;
  }
}

async function errorOf(resp, method, path) {
  let body = null;
  try {
    body = await resp.json();
  } catch (e) { /* not JSON */ }
  if (body && body.error) {
    const detail = Array.isArray(body.detail) ? body.detail.map((d) => d && d.message).filter(Boolean).join("; ") : "";
    return new Error(detail && !String(body.error).includes(detail) ? `${body.error} (${detail})` : body.error);
  }
  if (resp.status === 404) {
    return new Error(`${method} ${path.replace(/\?.*/, "")} is not available on this server (HTTP 404); it needs a newer jupyter-sessions there`);
  }
  return new Error(`HTTP ${resp.status} from ${method} ${path}`);
}

/** REST actions for one session from a page served by the same Jupyter server. */
export function createApi(baseUrl, sessionId, { token = "" } = {}) {
  const root = (baseUrl.endsWith("/") ? baseUrl : baseUrl + "/") + "jupyter-sessions/api/";
  const sid = encodeURIComponent(sessionId);
  async function call(method, path, body) {
    const headers = { "Content-Type": "application/json" };
    const xsrf = cookie("_xsrf");
    if (xsrf) headers["X-XSRFToken"] = xsrf;
    if (token) headers.Authorization = `token ${token}`;
    const resp = await fetch(root + path, {
      method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!resp.ok) throw await errorOf(resp, method, path);
    return resp.status === 204 ? null : resp.json();
  }
  return {
    call,
    get: () => call("GET", `sessions/${sid}`),
    send: (text) => call("POST", `sessions/${sid}/messages`, { text }),
    answer: (toolCallId, answers) => call("POST", `sessions/${sid}/answers`, { tool_call_id: toolCallId, answers }),
    stop: () => call("POST", `sessions/${sid}/stop`, {}),
    resume: () => call("POST", `sessions/${sid}/resume`, {}),
    feedback: (messageId, rating, comment) => call("POST", `sessions/${sid}/feedback`,
      { message_id: messageId, rating, ...(comment ? { comment } : {}) }),
  };
}

// ---------------------------------------------------------------------------------------------
// anywidget entry: the notebook widget (state comes from the kernel, see widgets/chat.py)

const stores = new Map();

function storeFor(model) {
  const key = `${model.get("session_id")}:${model.get("start_seq")}`;
  let s = stores.get(key);
  if (!s) {
    s = { feed: new Feed(), segments: new Map(), ui: createUiState() };
    stores.set(key, s);
  }
  return s;
}

function kernelActions(model) {
  const pending = new Map();
  let n = 0;
  const onMsg = (msg) => {
    if (!msg || msg.reply === undefined || !pending.has(msg.reply)) return;
    const { resolve, reject, timer } = pending.get(msg.reply);
    clearTimeout(timer);
    pending.delete(msg.reply);
    if (msg.ok) resolve(msg.result);
    else reject(new Error(msg.error || "failed"));
  };
  model.on("msg:custom", onMsg);
  const call = (action, args) => new Promise((resolve, reject) => {
    const id = `${Date.now()}-${++n}`;
    const timer = setTimeout(() => {
      pending.delete(id);
      reject(new Error("no reply from the kernel yet (busy or restarting?); the action runs when it is free"));
    }, 120000);
    pending.set(id, { resolve, reject, timer });
    model.send({ id, action, ...args });
  });
  return {
    dispose: () => model.off("msg:custom", onMsg),
    send: (text) => call("send", { text }),
    answer: (tool_call_id, answers) => call("answer", { tool_call_id, answers }),
    stop: () => call("stop", {}),
    resume: () => call("resume", {}),
    feedback: (message_id, rating, comment) => call("feedback", { message_id, rating, comment }),
  };
}

function actionsFor(model) {
  const kernel = kernelActions(model);
  let browser = null;
  const pick = async () => {
    if (browser === null) {
      browser = false;
      const cfg = model.get("browser_actions") ? pageConfig() : null;
      if (cfg && cfg.baseUrl) {
        const api = createApi(cfg.baseUrl, model.get("session_id"), { token: cfg.token || "" });
        try {
          await api.get();
          browser = api;
        } catch (e) {
          browser = false;
        }
      }
    }
    return browser || kernel;
  };
  const via = (name) => async (...args) => {
    const t = await pick();
    try {
      return await t[name](...args);
    } catch (e) {
      if (t !== kernel && e instanceof TypeError) return kernel[name](...args); // network error: try the kernel
      throw e;
    }
  };
  return {
    dispose: kernel.dispose,
    transport: async () => ((await pick()) === kernel ? "kernel" : "browser"),
    send: via("send"), answer: via("answer"), stop: via("stop"), resume: via("resume"), feedback: via("feedback"),
  };
}

async function collectEvents(model, store) {
  const refs = model.get("segments") || [];
  const out = [];
  for (const ref of refs) {
    const id = String(ref).replace(/^IPY_MODEL_/, "");
    let evs = store.segments.get(id);
    if (!evs) {
      const seg = await model.widget_manager.get_model(id);
      evs = seg.get("events") || [];
      store.segments.set(id, evs);
    }
    for (const e of evs) out.push(e);
  }
  for (const e of model.get("tail") || []) out.push(e);
  return out;
}

function render({ model, el }) {
  const store = storeFor(model);
  const actions = actionsFor(model);
  const view = mount(el, { actions, ui: store.ui });
  el.classList.add("jps-widget");
  let chain = Promise.resolve();
  const refresh = () => {
    chain = chain.then(async () => {
      try {
        const events = await collectEvents(model, store);
        store.feed.push(events);
      } catch (e) {
        view.showError(`cannot read the session's events: ${e && e.message ? e.message : e}`);
      }
      view.update(store.feed.state, {
        session: model.get("session") || {}, status: model.get("status"), startSeq: model.get("start_seq") || 0,
      });
    });
    return chain;
  };
  const names = ["change:segments", "change:tail", "change:status", "change:session", "change:start_seq"];
  names.forEach((n) => model.on(n, refresh));
  refresh();
  el.__jps = { view, actions, store, refresh };
  return () => {
    names.forEach((n) => model.off(n, refresh));
    actions.dispose();
    view.destroy();
  };
}

export default { render };
