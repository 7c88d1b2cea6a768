/* CXM console: progressive enhancement of the server-rendered pages.
 *
 * Everything works without this file (plain forms and links). With it: live updates over the
 * console websocket, fetch instead of full posts, keyboard shortcuts, the canned-response picker,
 * @mentions and collision hints.
 *
 * Security: customer text from events is only ever inserted with textContent. The only HTML
 * inserted is the inbox row partial, rendered (and escaped) by the server.
 */
(() => {
  "use strict";

  const body = document.body;
  const page = body.dataset.page || "";
  const userId = Number(body.dataset.userId || 0);
  const caseId = Number(body.dataset.caseId || 0);
  const ACTIVE = new Set(["new", "open", "pending"]);
  const STORE_KEY = "cxm:last-event-id";
  // Console event types, declared once in responses/event_types.py and put on every page by
  // {% console_event_types %} (base.html): EVENT.CASE_CREATED === "case.created".
  const EVENT = Object.freeze((() => {
    const node = document.getElementById("cxm-event-types");
    try { return node ? JSON.parse(node.textContent) : {}; } catch (_) { return {}; }
  })());

  // --- Small helpers ---------------------------------------------------------------------------
  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else node.setAttribute(name, String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function csrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    if (match) return decodeURIComponent(match[1]);
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }


  function uuid() {
    if (window.crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
    // crypto.randomUUID needs a secure context; plain-http deployments fall back to this.
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  }

  async function postJSON(url, data) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Accept": "application/json", "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify(data || {}),
    });
    let payload = {};
    try { payload = await response.json(); } catch (_) { payload = {}; }
    if (!response.ok) {
      const reason = payload.reason || (response.status === 403 ? "not allowed" : `request failed (${response.status})`);
      throw new Error(reason);
    }
    return payload;
  }

  function formObject(form, submitter) {
    const data = {};
    const fd = new FormData(form);
    if (submitter && submitter.name) fd.append(submitter.name, submitter.value);
    for (const [key, value] of fd.entries()) {
      if (key === "csrfmiddlewaretoken" || key === "next") continue;
      if (key === "ids") (data.ids = data.ids || []).push(value);
      else data[key] = value;
    }
    return data;
  }

  function caseUrl(id) { return `/console/cases/${Number(id)}/`; }

  function personName(user) {
    if (!user) return "";
    return String(user.name || user.username || "");
  }

  // --- Toasts ----------------------------------------------------------------------------------
  function toast(message, { kind = "info", href = "", linkText = "Open", ttl = 0 } = {}) {
    const box = $("#toasts");
    if (!box) return;
    const item = el("div", { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : "status" },
      el("span", { text: message }));
    if (href) item.append(" ", el("a", { href, text: linkText }));
    const close = el("button", { type: "button", class: "toast-close", "aria-label": "Dismiss", text: "×" });
    close.addEventListener("click", () => item.remove());
    item.append(close);
    box.append(item);
    setTimeout(() => item.remove(), ttl || (kind === "error" ? 9000 : 6000));
    return item;
  }

  // Shared with the other pages' scripts (insight.js), which load after this one.
  window.CXM = Object.freeze({ $, $$, el, csrfToken, postJSON, toast });

  // --- Relative times (every 30 s) -------------------------------------------------------------
  function relative(seconds) {
    const s = Math.abs(Math.round(seconds));
    if (s < 60) return `${s}s`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m}m`;
    const h = Math.floor(m / 60);
    if (h < 24) return m % 60 ? `${h}h ${m % 60}m` : `${h}h`;
    const d = Math.floor(h / 24);
    return h % 24 ? `${d}d ${h % 24}h` : `${d}d`;
  }

  const STAMP = { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
  function stamp(at) { return new Date(at).toLocaleString([], STAMP); }

  function updateTimes(root = document) {
    const now = Date.now();
    // Server-rendered stamps are in UTC; show them in the agent's own time zone.
    for (const node of $$(".msg-head time:not([data-relative]), .facts time", root)) {
      const at = Date.parse(node.getAttribute("datetime"));
      if (!Number.isNaN(at)) { node.textContent = stamp(at); node.title = new Date(at).toLocaleString(); }
    }
    for (const node of $$("time[data-relative]", root)) {
      const at = Date.parse(node.getAttribute("datetime"));
      if (Number.isNaN(at)) continue;
      const seconds = (now - at) / 1000;
      if (node.dataset.relative === "due") node.textContent = seconds > 0 ? `${relative(seconds)} over` : `in ${relative(seconds)}`;
      else if (node.dataset.relative === "window") {
        node.textContent = seconds > 0 ? `closed ${relative(seconds)} ago` : `${relative(seconds)} left`;
        node.classList.toggle("window-closed", seconds > 0);
      }
      else node.textContent = relative(seconds);
      node.title = new Date(at).toLocaleString();
    }
  }

  // --- Live connection -------------------------------------------------------------------------
  const live = {
    socket: null,
    delay: 1000,
    stopped: false,
    lastId: 0,
    seen: new Set(),
    handlers: [],
    onOpen: [],
    onPresence: [],

    start() {
      const rendered = Number(body.dataset.lastEventId);
      const stored = Number(sessionStorage.getItem(STORE_KEY) || 0);
      // The page shows everything up to the id it was rendered with; only what came after is news.
      this.lastId = Number.isFinite(rendered) && body.dataset.lastEventId !== undefined ? rendered : stored;
      this.connect();
    },

    status(state, label) {
      const node = $("#live-status");
      if (!node) return;
      node.dataset.state = state;
      node.textContent = label || state;
    },

    connect() {
      if (this.stopped) return;
      const scheme = location.protocol === "https:" ? "wss" : "ws";
      let socket;
      try {
        socket = new WebSocket(`${scheme}://${location.host}/ws/console/`);
      } catch (_) {
        this.retry();
        return;
      }
      this.socket = socket;
      socket.addEventListener("open", () => {
        this.delay = 1000;
        this.status("live", "live");
        this.send({ type: "hello", last_event_id: this.lastId });
        for (const fn of this.onOpen) fn();
      });
      socket.addEventListener("message", (event) => {
        let data;
        try { data = JSON.parse(event.data); } catch (_) { return; }
        this.receive(data);
      });
      socket.addEventListener("close", () => {
        if (this.socket === socket) this.socket = null;
        this.retry();
      });
    },

    retry() {
      if (this.stopped) return;
      this.status("reconnecting", "reconnecting");
      const wait = this.delay;
      this.delay = Math.min(this.delay * 2, 15000);
      setTimeout(() => this.connect(), wait);
    },

    send(message) {
      if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
    },

    receive(data) {
      if (!data || typeof data !== "object") return;
      if (data.type === "events" && Array.isArray(data.events)) {
        for (const event of data.events) {
          const id = Number(event && event.id);
          // Ids only grow, except that an event whose transaction committed late may follow a
          // higher one: skip what this page already showed, by id.
          if (!Number.isFinite(id) || this.seen.has(id) || (id <= this.lastId && !data.late)) continue;
          this.seen.add(id);
          if (this.seen.size > 5000) this.seen.delete(this.seen.values().next().value);
          this.lastId = Math.max(this.lastId, id);
          try { sessionStorage.setItem(STORE_KEY, String(this.lastId)); } catch (_) { /* private mode */ }
          for (const fn of this.handlers) {
            try { fn(event); } catch (err) { console.error("event handler failed", err); }
          }
        }
      } else if (data.type === "presence") {
        for (const fn of this.onPresence) fn(data);
      } else if (data.type === "reset") {
        // The events after our last id were pruned: only a fresh page shows the truth.
        try { sessionStorage.removeItem(STORE_KEY); } catch (_) { /* private mode */ }
        this.stopped = true;
        this.status("reconnecting", "reloading");
        if (this.socket) this.socket.close();
        setTimeout(() => location.reload(), 500);
      } else if (data.type === "error") {
        console.warn("console websocket:", data.reason);
      } else if (data.type === "bye") {
        this.stopped = true;
        this.status("offline", "offline");
        toast(`Live updates stopped: ${String(data.reason || "disconnected")}.`, { kind: "error", href: "/accounts/login/", linkText: "Sign in" });
        if (this.socket) this.socket.close();
      }
    },
  };

  // Events for everyone, on any page: mentions and assignments.
  live.handlers.push((event) => {
    if (event.type === EVENT.MENTION) {
      const by = personName(event.by) || "Someone";
      toast(`${by} mentioned you in case #${Number(event.case_id)}`, { href: caseUrl(event.case_id) });
    } else if (event.type === EVENT.CASE_ASSIGNED) {
      const by = personName(event.by);
      toast(`Case #${Number(event.case_id)} was assigned to you${by ? ` by ${by}` : ""}`, { href: caseUrl(event.case_id) });
    }
  });

  // Spike alerts (supervisors, brand managers, admins): a toast linking to the alert, and the
  // count of open alerts on the "Alerts" link, fetched once per page and bumped live.
  const alertsLink = $("#alerts-link");
  const alertsBadge = $("#alerts-badge");
  function showAlertCount(n) {
    if (!alertsBadge) return;
    alertsBadge.textContent = String(n);
    alertsBadge.hidden = n <= 0;
  }
  if (alertsLink && alertsBadge && body.dataset.live) {
    fetch(`${alertsLink.getAttribute("href")}?status=open`, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then((response) => (response.ok ? response.json() : null))
      .then((data) => { if (data) showAlertCount(Number(data.open_count) || 0); })
      .catch(() => { /* the badge stays as it is */ });
  }
  live.handlers.push((event) => {
    if (event.type !== EVENT.ALERT_RAISED || !event.alert || typeof event.alert !== "object") return;
    const alert = event.alert;
    const template = (alertsLink && alertsLink.dataset.alertUrl) || "/console/insight/alerts/0/";
    const href = template.replace("/0/", `/${Number(alert.id)}/`);
    const team = alert.team && alert.team.name ? ` (${String(alert.team.name)})` : "";
    toast(`${String(alert.kind_label || "Alert")}: ${String(alert.label || "")}${team}. ${String(alert.summary || "")}`,
      { kind: "alert", href, linkText: "View alert", ttl: 20000 });
    showAlertCount(Number((alertsBadge && alertsBadge.textContent) || 0) + 1);
  });

  // A source that just started failing: every admin hears it at once.
  live.handlers.push((event) => {
    if (event.type !== EVENT.CONNECTOR_FAILING || !event.connector || typeof event.connector !== "object") return;
    const link = $("#sources-link");
    toast(`Source failing: ${String(event.connector.name || "")}. ${String(event.reason || "")}`,
      { kind: "error", href: link ? link.getAttribute("href") : "/console/sources/", linkText: "Sources", ttl: 20000 });
  });

  // An outbound webhook switched off after failing again and again (responses.outbound): admins hear it.
  live.handlers.push((event) => {
    if (event.type !== EVENT.WEBHOOK_DISABLED || !event.subscription || typeof event.subscription !== "object") return;
    toast(`Webhook switched off: ${String(event.subscription.name || "")}. ${String(event.reason || "")}`,
      { kind: "error", ttl: 30000 });
  });

  // A rule over signals fired (responses.signal_cases): the team hears why, with the case if one opened.
  live.handlers.push((event) => {
    if (event.type !== EVENT.SIGNAL_ALERT || !event.rule || typeof event.rule !== "object") return;
    const who = event.customer ? ` for ${String(event.customer)}` : "";
    toast(`${String(event.rule.name || "Signal rule")}${who}: ${String(event.reason || "")}`,
      event.case_id ? { kind: "alert", href: caseUrl(event.case_id), linkText: "Open case", ttl: 20000 }
        : { kind: "alert", ttl: 20000 });
  });

  // --- Help overlay ----------------------------------------------------------------------------
  function toggleHelp(show) {
    const help = $("#help");
    if (!help) return;
    const visible = show === undefined ? help.hidden : show;
    help.hidden = !visible;
    if (visible) { const button = $("button", help); if (button) button.focus(); }
  }
  document.addEventListener("click", (event) => {
    const target = event.target.closest("[data-action]");
    if (!target) return;
    const action = target.dataset.action;
    if (action === "help") toggleHelp();
    else if (action === "close-help") toggleHelp(false);
    else if (action === "nav-menu") toggleNav(target);
  });

  // --- Top bar menus ---------------------------------------------------------------------------
  // On a phone the pages sit behind "Menu"; opened there, the Setup group shows its pages at once.
  function toggleNav(button) {
    const bar = button.closest(".topbar");
    const open = !bar.classList.contains("nav-open");
    bar.classList.toggle("nav-open", open);
    button.setAttribute("aria-expanded", String(open));
    const setup = $("#setup-menu");
    if (setup) setup.open = open;
  }
  // The Setup menu closes like any menu: a click elsewhere or Escape (not on a phone, where it is a list).
  function closeSetupMenu(domEvent) {
    const setup = $("#setup-menu");
    if (!setup || !setup.open || setup.closest(".topbar.nav-open")) return;
    const leave = domEvent instanceof KeyboardEvent ? domEvent.key === "Escape" : !setup.contains(domEvent.target);
    if (leave) setup.open = false;
  }
  document.addEventListener("click", closeSetupMenu);
  document.addEventListener("keydown", closeSetupMenu);
  const helpOverlay = $("#help");
  if (helpOverlay) helpOverlay.addEventListener("click", (event) => { if (event.target === helpOverlay) toggleHelp(false); });

  // Lists on a phone become cards (console.css): each cell carries its column's heading as a label,
  // rows added later (live pages) included.
  function labelCells(table) {
    const heads = $$("thead th", table).map((th) => th.textContent.trim());
    for (const row of $$("tbody tr", table)) {
      let column = 0;
      for (const cell of row.cells) {
        // A cell across several columns (an empty list's note) speaks for itself.
        if (!cell.hasAttribute("data-label") && cell.colSpan === 1 && heads[column]) cell.dataset.label = heads[column];
        column += cell.colSpan || 1;
      }
    }
  }
  for (const table of $$("table.list")) {
    labelCells(table);
    new MutationObserver(() => labelCells(table)).observe(table, { childList: true, subtree: true });
  }

  // Forms that ask before they act (delete).
  for (const form of $$("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }

  // --- Inbox -----------------------------------------------------------------------------------
  function initInbox() {
    const tbody = $("#case-rows");
    const filter = body.dataset.filter || "";
    const rowUrl = (id) => (body.dataset.rowUrl || "/console/cases/0/row/").replace("/0/", `/${Number(id)}/`);
    const fetchSeq = new Map();
    let selected = -1;

    const rows = () => $$("tr.case-row", tbody);

    function select(index) {
      const all = rows();
      if (!all.length) { selected = -1; return; }
      selected = Math.max(0, Math.min(index, all.length - 1));
      all.forEach((row, i) => row.classList.toggle("selected", i === selected));
      const row = all[selected];
      row.scrollIntoView({ block: "nearest" });
      const link = $(".case-link", row);
      if (link) link.focus({ preventScroll: true });
    }

    function selectedRow() {
      const all = rows();
      const focused = document.activeElement && document.activeElement.closest && document.activeElement.closest("tr.case-row");
      if (focused) return focused;
      return selected >= 0 ? all[selected] : null;
    }

    function matches(summary) {
      const active = ACTIVE.has(summary.status);
      if (filter === "resolved") return !active;
      if (!active) return false;
      if (filter === "snoozed" || summary.snoozed) return filter === "snoozed" && Boolean(summary.snoozed);
      if (filter === "") return true;
      if (filter === "mine") return Boolean(summary.assignee && Number(summary.assignee.id) === userId);
      if (filter === "unassigned") return !summary.assignee;
      if (filter === "held") return Boolean(summary.awaiting_assignment);
      return Boolean(summary.queue && String(summary.queue.id) === filter);
    }

    // Rows carry inbox_order as numbers (data-sort, responses.views.inbox.sort_key): a live row
    // goes where a reload would put it, not at the top. The resolved view is newest first.
    const firstPage = tbody ? tbody.dataset.firstPage !== "0" : true;
    const lastPage = tbody ? tbody.dataset.lastPage !== "0" : true;
    function sortKey(row) { return String(row.dataset.sort || "").split(",").map(Number); }
    function before(a, b) {
      for (let i = 0; i < Math.max(a.length, b.length); i += 1) {
        const x = Number.isFinite(a[i]) ? a[i] : 0;
        const y = Number.isFinite(b[i]) ? b[i] : 0;
        if (x !== y) return x < y;
      }
      return false;
    }
    // Put `row` in its place; false when its place is on another page of the inbox.
    function place(row) {
      const others = rows().filter((other) => other !== row);
      if (filter === "resolved") { tbody.prepend(row); return true; }
      const key = sortKey(row);
      const next = others.find((other) => before(key, sortKey(other)));
      if (!next && !lastPage && others.length) return false;
      if (next === others[0] && !firstPage) return false;
      if (next) tbody.insertBefore(row, next);
      else tbody.append(row);
      return true;
    }

    function removeRow(id) {
      const row = document.getElementById(`case-${Number(id)}`);
      if (row) row.remove();
      updateSelectionCount();
    }

    async function refreshRow(id, { insert = true } = {}) {
      id = Number(id);
      const seq = (fetchSeq.get(id) || 0) + 1;
      fetchSeq.set(id, seq);
      let response;
      try {
        response = await fetch(rowUrl(id), { credentials: "same-origin", headers: { "Accept": "text/html" } });
      } catch (_) { return; }
      if (fetchSeq.get(id) !== seq) return; // a newer fetch for this case is under way
      if (response.status === 404) { removeRow(id); return; }
      if (!response.ok) return;
      const template = document.createElement("template");
      template.innerHTML = (await response.text()).trim(); // server-rendered, escaped partial
      if (fetchSeq.get(id) !== seq) return;
      const row = template.content.querySelector("tr.case-row");
      if (!row) return;
      const existing = document.getElementById(`case-${id}`);
      const wasActive = ACTIVE.has(row.dataset.status);
      if (filter !== "resolved" && !wasActive) { removeRow(id); return; }
      if (existing) {
        const box = $("input[type=checkbox]", existing);
        if (box && box.checked) { const next = $("input[type=checkbox]", row); if (next) next.checked = true; }
        row.classList.toggle("selected", existing.classList.contains("selected"));
        existing.replaceWith(row);
        // Its priority, SLA or status may have moved it (a reply sinks it as "Pending customer").
        if (!place(row)) row.remove();
      } else if (insert) {
        if (!place(row)) return;
        row.classList.add("flash-new");
        const empty = $("#no-cases");
        if (empty) empty.remove();
      }
      updateTimes(row);
    }

    let countsTimer = null;
    function scheduleCounts() {
      clearTimeout(countsTimer);
      countsTimer = setTimeout(refreshCounts, 300);
    }

    async function refreshCounts() {
      try {
        const response = await fetch(body.dataset.countsUrl || "/console/counts/", { credentials: "same-origin", headers: { "Accept": "application/json" } });
        if (!response.ok) return;
        const counts = await response.json();
        for (const node of $$("[data-count]")) {
          const value = counts[node.dataset.count];
          if (value !== undefined) node.textContent = String(Number(value));
        }
        for (const node of $$("[data-count-queue]")) {
          node.textContent = String(Number((counts.queues || {})[node.dataset.countQueue] || 0));
        }
      } catch (_) { /* next event refreshes again */ }
    }

    live.handlers.push((event) => {
      if (event.type === EVENT.CASE_CREATED || event.type === EVENT.CASE_UPDATED) {
        const summary = event.case && typeof event.case === "object" ? event.case : null;
        if (!summary) return;
        const id = Number(summary.id);
        const exists = Boolean(document.getElementById(`case-${id}`));
        if (matches(summary)) refreshRow(id, { insert: true });
        else if (exists) removeRow(id);
        scheduleCounts();
      } else if (event.type === EVENT.CASE_REMOVED) {
        removeRow(event.case_id);
        scheduleCounts();
      }
    });

    // Selection and bulk actions.
    function updateSelectionCount() {
      const n = $$("input[name=ids]:checked").length;
      const label = $("#bulk-count");
      if (label) label.textContent = `${n} selected`;
    }
    document.addEventListener("change", (event) => {
      if (event.target.matches("input[name=ids]")) updateSelectionCount();
      if (event.target.matches("[data-action=check-all]")) {
        for (const box of $$("input[name=ids]")) box.checked = event.target.checked;
        updateSelectionCount();
      }
    });

    const bulkForm = $("#bulk-form");
    async function runBulk(action, ids, extra = {}) {
      if (!ids.length) { toast("Select some cases first.", { kind: "error" }); return; }
      try {
        const result = await postJSON(bulkForm.action, { action, ids, ...extra });
        const verb = { assign: "Assigned", resolve: "Resolved", tag: "Tagged" }[action] || "Updated";
        toast(`${verb} ${Number(result.count)} case${result.count === 1 ? "" : "s"}.`);
        for (const id of ids) refreshRow(id, { insert: false });
        for (const box of $$("input[name=ids]:checked")) box.checked = false;
        const all = $("[data-action=check-all]");
        if (all) all.checked = false;
        updateSelectionCount();
        scheduleCounts();
      } catch (err) {
        toast(err.message, { kind: "error" });
      }
    }
    if (bulkForm) {
      bulkForm.addEventListener("submit", (event) => {
        event.preventDefault();
        const submitter = event.submitter;
        const action = submitter ? submitter.value : "";
        const ids = $$("input[name=ids]:checked").map((box) => box.value);
        const extra = {};
        if (action === "assign") {
          const chooser = $("#bulk-assignee");
          extra.assignee = submitter && submitter.dataset.bulk === "assign-agent" && chooser ? chooser.value : "me";
        } else if (action === "tag") {
          extra.tags = ($("#bulk-tags") || {}).value || "";
        }
        runBulk(action, ids, extra);
      });
    }

    // Presence.
    const presence = $("#presence");
    if (presence) {
      presence.addEventListener("change", async () => {
        try {
          await postJSON(presence.form.action, { presence: presence.value });
          toast(`You are ${presence.options[presence.selectedIndex].text.toLowerCase()}.`);
        } catch (err) { toast(err.message, { kind: "error" }); }
      });
    }

    // Clicking a row (not a control) opens it.
    if (tbody) {
      tbody.addEventListener("click", (event) => {
        if (event.target.closest("a, button, input, label, select")) return;
        const row = event.target.closest("tr.case-row");
        if (row) location.href = row.dataset.href;
      });
    }

    function nextCase() {
      const row = selectedRow();
      const base = body.dataset.nextUrl || "/console/next/";
      location.href = row ? `${base}?after=${Number(row.dataset.caseId)}` : base;
    }

    keys.j = () => select(selected + 1);
    keys.k = () => select(selected < 0 ? 0 : selected - 1);
    keys.o = () => { const row = selectedRow(); if (row) location.href = row.dataset.href; };
    keys.Enter = keys.o;
    keys.n = nextCase;
    keys.e = () => { const row = selectedRow(); if (row) runBulk("resolve", [row.dataset.caseId]); };
    keys.a = () => { const row = selectedRow(); if (row) runBulk("assign", [row.dataset.caseId], { assignee: "me" }); };
    document.addEventListener("click", (event) => {
      if (event.target.closest("[data-action=next-case]")) { event.preventDefault(); nextCase(); }
    });
  }

  // --- Conversation ----------------------------------------------------------------------------
  function initCase() {
    const thread = $("#thread");
    const replyForm = $("#reply-form");
    const noteForm = $("#note-form");
    const replyText = $("#reply-text");
    const noteText = $("#note-text");
    const retryUrl = (id) => (body.dataset.retryUrl || "/console/replies/0/retry/").replace("/0/", `/${Number(id)}/`);
    const forThisCase = (event) => Number(event.case_id ?? event.case) === caseId;

    function scrollToEnd() { if (thread) thread.scrollTop = thread.scrollHeight; }

    function header(name, at, extra) {
      const head = el("header", { class: "msg-head" }, el("strong", { text: name }));
      if (at) {
        const date = new Date(at);
        head.append(" ", el("time", { datetime: at, title: date.toLocaleString(), text: stamp(at) }));
      }
      if (extra) head.append(" ", extra);
      return head;
    }

    function append(node) {
      const empty = $(".empty", thread);
      if (empty) empty.remove();
      thread.append(node);
      scrollToEnd();
    }

    function messageNode(message) {
      const inbound = message.direction !== "out";
      return el("article", { class: `msg ${inbound ? "msg-in" : "msg-out"} is-new`, id: `msg-${Number(message.id)}`, "data-message-id": Number(message.id) },
        header(String(message.author || (inbound ? "Customer" : "Us")), message.sent_at),
        el("div", { class: "msg-text", text: String(message.text || "") }));
    }

    function replyNode(reply) {
      const status = ["pending", "delivered", "failed"].includes(reply.status) ? reply.status : "pending";
      const name = reply.automatic ? "Automatic reply" : (personName(reply.author) || "Us");
      const node = el("article", { class: `msg msg-out reply-${status}`, id: `reply-${Number(reply.id)}`, "data-reply-id": Number(reply.id) },
        header(name, reply.created_at, el("span", { class: `status status-${status}`, text: status })),
        el("div", { class: "msg-text", text: String(reply.text || "") }));
      if (status === "failed") {
        const retry = el("button", { type: "button", class: "btn btn-tiny", text: "Retry" });
        retry.addEventListener("click", async () => {
          retry.disabled = true;
          const since = live.lastId;
          try {
            const result = await postJSON(retryUrl(reply.id), {});
            upsertAnswer(result.reply, since);
          } catch (err) {
            retry.disabled = false;
            toast(err.message, { kind: "error" });
          }
        });
        node.append(el("div", { class: "reply-error" }, el("span", { class: "error-text", text: String(reply.error || "delivery failed") }), " ", retry));
      }
      return node;
    }

    // The id of the last live event that changed each reply. A fetch answer is the reply as it
    // was when the request returned; a live event that came in meanwhile may be newer (the answer
    // to a send says "pending" while "delivered" was already pushed), so it must not be undone.
    const replyEvents = new Map();
    function upsertAnswer(reply, sentAfter) {
      if (reply && (replyEvents.get(Number(reply.id)) || 0) <= sentAfter) upsertReply(reply);
    }

    function upsertReply(reply) {
      if (!reply || !thread) return;
      const node = replyNode(reply);
      const existing = document.getElementById(`reply-${Number(reply.id)}`);
      if (existing) existing.replaceWith(node);
      else append(node);
    }

    function noteNode(note) {
      return el("article", { class: "note is-new", id: `note-${Number(note.id)}` },
        header(personName(note.author) || "Someone", note.created_at, el("span", { class: "small", text: "private note" })),
        el("div", { class: "msg-text", text: String(note.text || "") }));
    }

    function appendNote(note) {
      if (note && !document.getElementById(`note-${Number(note.id)}`)) append(noteNode(note));
    }

    let caseEventId = 0; // id of the last live event that updated this case
    function showCase(summary) {
      if (!summary) return;
      const status = $("#case-status-text");
      const labels = { new: "New", open: "Open", pending: "Pending customer", resolved: "Resolved", closed: "Closed" };
      if (status) status.textContent = labels[summary.status] || String(summary.status || "");
      const select = $("#status-select");
      if (select && summary.status) select.value = summary.status;
      const assignee = $("#case-assignee");
      if (assignee) {
        assignee.replaceChildren(summary.assignee ? document.createTextNode(personName(summary.assignee))
          : el("span", { class: "muted", text: "Unassigned" }));
      }
      const tags = $("#tags-input");
      if (tags && document.activeElement !== tags && Array.isArray(summary.tags)) tags.value = summary.tags.join(", ");
      showSla(summary);
      showFirstResponse(summary);
      showLane(summary);
      const priority = $("#case-priority");
      if (priority && Number.isFinite(Number(summary.priority))) {
        priority.textContent = priorityName(Number(summary.priority));
        priority.title = Number(summary.priority).toFixed(2);
      }
    }

    // A lane's name as the server names it (Needs a look, not triage): [[slug, name], ...] on the page.
    let laneNames = {};
    try { laneNames = Object.fromEntries(JSON.parse(($("#lane-names") || {}).textContent || "[]")); } catch (_) { laneNames = {}; }
    function showLane(summary) {
      const node = $("#case-lane");
      if (!node || typeof summary.lane !== "string") return;
      const name = String(laneNames[summary.lane] || summary.lane);
      if (!summary.lane) { node.replaceChildren(document.createTextNode("—")); return; }
      node.replaceChildren(el("span", { class: `chip lane lane-${summary.lane.replace(/[^a-z0-9-]/g, "")}`, text: name }));
    }

    const SLA_LABELS = { ok: "On time", near: "Near breach", breached: "Breached" };
    function showSla(summary) {
      const node = $("#case-sla");
      if (!node || !("sla_state" in summary)) return;
      const state = SLA_LABELS[summary.sla_state] ? summary.sla_state : "";
      if (!state) { node.replaceChildren(document.createTextNode("—")); return; }
      const parts = [el("span", { class: `sla sla-${state}`, text: SLA_LABELS[state] })];
      if (summary.sla_due_at) {
        parts.push(" · due ", el("time", { datetime: String(summary.sla_due_at), text: stamp(summary.sla_due_at) }));
      }
      node.replaceChildren(...parts);
    }
    function showFirstResponse(summary) {
      const node = $("#case-first-response");
      if (!node || !("first_response_at" in summary)) return;
      const opened = Date.parse(summary.opened_at || node.dataset.openedAt || "");
      const first = Date.parse(summary.first_response_at || "");
      if (Number.isNaN(first)) node.replaceChildren(el("span", { class: "muted", text: "not yet" }));
      else node.textContent = Number.isNaN(opened) ? "yes" : relative((first - opened) / 1000);
    }
    // Words for a priority, as responses.templatetags.console_words.priority_name says them.
    function priorityName(value) {
      if (value >= 0.75) return "Urgent";
      if (value >= 0.5) return "High";
      if (value >= 0.25) return "Normal";
      return "Low";
    }

    live.handlers.push((event) => {
      if (!forThisCase(event)) return;
      switch (event.type) {
        case EVENT.MESSAGE_CREATED:
          if (event.message && !document.getElementById(`msg-${Number(event.message.id)}`)) append(messageNode(event.message));
          break;
        case EVENT.REPLY_CREATED:
        case EVENT.REPLY_UPDATED:
          if (event.reply) replyEvents.set(Number(event.reply.id), Number(event.id));
          upsertReply(event.reply);
          if (event.reply && event.reply.status !== "pending") {
            settled.add(Number(event.reply.id));
            settleResolveToast();
          }
          break;
        case EVENT.NOTE_CREATED:
          appendNote(event.note);
          break;
        case EVENT.CASE_UPDATED:
        case EVENT.CASE_CREATED:
          caseEventId = Number(event.id);
          showCase(event.case);
          if (event.case && !ACTIVE.has(event.case.status)) settleResolveToast();
          break;
        case EVENT.CASE_REMOVED:
          toast("This case moved to another team.", { kind: "error" });
          break;
        default:
      }
    });

    // Collision: who else is here.
    live.onOpen.push(() => live.send({ type: "view", case: caseId }));
    window.addEventListener("pagehide", () => live.send({ type: "leave", case: caseId }));
    live.onPresence.push((message) => {
      if (Number(message.case) !== caseId) return;
      const box = $("#collision");
      if (!box) return;
      const viewers = (Array.isArray(message.viewers) ? message.viewers : []).filter((v) => Number(v.id) !== userId);
      box.replaceChildren(...viewers.map((viewer) =>
        el("span", { class: viewer.typing ? "viewer typing" : "viewer", text: `${String(viewer.name || "Someone")} is ${viewer.typing ? "typing…" : "viewing"}` })));
    });
    let typingSentAt = 0;
    let typingTimer = null;
    function typing() {
      const now = Date.now();
      if (now - typingSentAt > 2000) {
        typingSentAt = now;
        live.send({ type: "typing", case: caseId, typing: true });
      }
      clearTimeout(typingTimer);
      typingTimer = setTimeout(() => {
        typingSentAt = 0;
        live.send({ type: "typing", case: caseId, typing: false });
      }, 3000);
    }

    // Composer tabs.
    for (const tab of $$("[data-tab]")) {
      tab.addEventListener("click", () => showTab(tab.dataset.tab));
    }
    function showTab(id) {
      for (const tab of $$("[data-tab]")) {
        const on = tab.dataset.tab === id;
        tab.classList.toggle("on", on);
        tab.setAttribute("aria-selected", on ? "true" : "false");
        const panel = document.getElementById(tab.dataset.tab);
        if (panel) panel.hidden = !on;
      }
      const area = id === "note-form" ? noteText : replyText;
      if (area) area.focus();
    }

    // "Resolves once delivered" stays only until the delivery (or the resolution) is seen.
    let resolveToast = null;
    const settled = new Set(); // replies seen delivered or failed
    function settleResolveToast() {
      if (resolveToast) resolveToast.remove();
      resolveToast = null;
    }

    // Reply: one idempotency key per composed reply, so a double click or a retried request
    // sends once.
    let replyKey = uuid();
    let sending = false;
    if (replyForm) {
      replyForm.addEventListener("submit", async (event) => {
        event.preventDefault();
        if (sending) return;
        const text = replyText.value;
        if (!text.trim()) { toast("The reply is empty.", { kind: "error" }); return; }
        const resolve = Boolean(event.submitter && event.submitter.value === "1");
        sending = true;
        const buttons = $$("button[type=submit]", replyForm);
        buttons.forEach((b) => { b.disabled = true; });
        const since = live.lastId;
        try {
          const result = await postJSON(replyForm.action, { text, idempotency_key: replyKey, resolve });
          upsertAnswer(result.reply, since);
          replyText.value = "";
          replyKey = uuid();
          if (resolve) {
            settleResolveToast();
            // The delivery may already have been pushed while the request was answered.
            const reply = result.reply || {};
            if (reply.status === "pending" && !settled.has(Number(reply.id))) {
              resolveToast = toast("Sent. The case resolves once the reply is delivered.", { ttl: 60000 });
            } else if (reply.status !== "failed") toast("Sent and resolved.");
          }
        } catch (err) {
          toast(err.message, { kind: "error" });
        } finally {
          sending = false;
          buttons.forEach((b) => { b.disabled = false; });
        }
      });
      replyText.addEventListener("input", typing);
    }

    if (noteForm) {
      noteForm.addEventListener("submit", async (event) => {
        event.preventDefault();
        const text = noteText.value;
        if (!text.trim()) return;
        try {
          const result = await postJSON(noteForm.action, { text });
          appendNote(result.note);
          noteText.value = "";
          hideMentions();
        } catch (err) {
          toast(err.message, { kind: "error" });
        }
      });
      noteText.addEventListener("input", () => { typing(); suggestMentions(); });
      noteText.addEventListener("keydown", mentionKeys);
    }

    // @mention autocomplete.
    let people = [];
    try { people = JSON.parse(($("#mentionable") || {}).textContent || "[]"); } catch (_) { people = []; }
    const mentionList = $("#mention-list");
    let mentionIndex = 0;
    let mentionMatches = [];

    function mentionQuery() {
      const upto = noteText.value.slice(0, noteText.selectionStart);
      const match = upto.match(/(?:^|[^\w@])@([\w.+-]{0,30})$/);
      return match ? match[1] : null;
    }
    function hideMentions() { if (mentionList) { mentionList.hidden = true; mentionMatches = []; } }
    function suggestMentions() {
      if (!mentionList) return;
      const query = mentionQuery();
      if (query === null) { hideMentions(); return; }
      const q = query.toLowerCase();
      mentionMatches = people.filter((p) => Number(p.id) !== userId && (String(p.username).toLowerCase().startsWith(q)
        || String(p.name).toLowerCase().split(/\s+/).some((w) => w.startsWith(q)))).slice(0, 8);
      if (!mentionMatches.length) { hideMentions(); return; }
      mentionIndex = 0;
      renderMentions();
      mentionList.hidden = false;
    }
    function renderMentions() {
      mentionList.replaceChildren(...mentionMatches.map((p, i) => {
        const item = el("li", { role: "option", class: i === mentionIndex ? "on" : "", "aria-selected": i === mentionIndex ? "true" : "false" },
          el("strong", { text: `@${p.username}` }), " ", el("span", { class: "muted", text: String(p.name) }));
        item.addEventListener("mousedown", (event) => { event.preventDefault(); insertMention(p); });
        return item;
      }));
    }
    function insertMention(person) {
      const caret = noteText.selectionStart;
      const before = noteText.value.slice(0, caret).replace(/@([\w.+-]{0,30})$/, `@${person.username} `);
      noteText.value = before + noteText.value.slice(caret);
      noteText.setSelectionRange(before.length, before.length);
      hideMentions();
      noteText.focus();
    }
    function mentionKeys(event) {
      if (!mentionList || mentionList.hidden || !mentionMatches.length) return;
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        mentionIndex = (mentionIndex + (event.key === "ArrowDown" ? 1 : -1) + mentionMatches.length) % mentionMatches.length;
        renderMentions();
      } else if ((event.key === "Enter" && !(event.ctrlKey || event.metaKey)) || event.key === "Tab") {
        event.preventDefault();
        insertMention(mentionMatches[mentionIndex]);
      } else if (event.key === "Escape") {
        hideMentions();
      }
    }

    // Canned-response picker.
    const picker = $("#canned-picker");
    const cannedFilter = $("#canned-filter");
    const cannedList = $("#canned-list");
    let canned = null;
    let cannedShown = [];
    let cannedIndex = 0;

    async function openCanned() {
      if (!picker || !replyForm) return;
      showTab("reply-form");
      picker.hidden = false;
      cannedFilter.value = "";
      cannedFilter.focus();
      if (canned === null) {
        try {
          const response = await fetch(body.dataset.cannedUrl, { credentials: "same-origin", headers: { "Accept": "application/json" } });
          canned = response.ok ? ((await response.json()).canned || []) : [];
        } catch (_) { canned = []; }
      }
      renderCanned();
    }
    function closeCanned() { if (picker) picker.hidden = true; }
    function renderCanned() {
      const q = cannedFilter.value.trim().toLowerCase();
      cannedShown = canned.filter((c) => !q || String(c.title).toLowerCase().includes(q)
        || String(c.shortcut).toLowerCase().includes(q) || String(c.text).toLowerCase().includes(q));
      cannedIndex = Math.min(cannedIndex, Math.max(0, cannedShown.length - 1));
      if (!cannedShown.length) {
        cannedList.replaceChildren(el("li", { class: "muted", text: canned.length ? "No match." : "No canned responses for this team yet." }));
        return;
      }
      cannedList.replaceChildren(...cannedShown.map((c, i) => {
        const item = el("li", { role: "option", class: i === cannedIndex ? "on" : "", "aria-selected": i === cannedIndex ? "true" : "false" },
          el("strong", { text: String(c.title) }),
          c.shortcut ? el("code", { text: ` /${c.shortcut}` }) : null,
          el("div", { class: "small muted canned-preview", text: String(c.text).slice(0, 160) }));
        item.addEventListener("mousedown", (event) => { event.preventDefault(); useCanned(c); });
        return item;
      }));
    }
    function useCanned(item) {
      const start = replyText.selectionStart ?? replyText.value.length;
      const end = replyText.selectionEnd ?? start;
      replyText.value = replyText.value.slice(0, start) + item.text + replyText.value.slice(end);
      const caret = start + String(item.text).length;
      closeCanned();
      replyText.focus();
      replyText.setSelectionRange(caret, caret);
    }
    if (cannedFilter) {
      cannedFilter.addEventListener("input", () => { cannedIndex = 0; renderCanned(); });
      cannedFilter.addEventListener("keydown", (event) => {
        if (event.key === "ArrowDown" || event.key === "ArrowUp") {
          event.preventDefault();
          if (!cannedShown.length) return;
          cannedIndex = (cannedIndex + (event.key === "ArrowDown" ? 1 : -1) + cannedShown.length) % cannedShown.length;
          renderCanned();
        } else if (event.key === "Enter") {
          event.preventDefault();
          if (cannedShown[cannedIndex]) useCanned(cannedShown[cannedIndex]);
        } else if (event.key === "Escape") {
          event.preventDefault();
          closeCanned();
          replyText.focus();
        }
      });
      cannedFilter.addEventListener("blur", () => setTimeout(closeCanned, 150));
    }

    // Sidebar and correction forms by fetch.
    for (const form of $$("form[data-ajax]")) {
      form.addEventListener("submit", async (event) => {
        event.preventDefault();
        const submitter = event.submitter;
        const data = formObject(form, submitter);
        const since = live.lastId;
        try {
          const result = await postJSON(form.action, data);
          const kind = form.dataset.ajax;
          if (kind === "correct") {
            for (const button of $$("button[name=value]", form)) button.classList.toggle("on", button === submitter);
            // The button's words (a lane's name), not its slug; a select's value is already a name.
            const said = submitter && submitter.name === "value" ? submitter.textContent.trim() : data.value;
            toast(`Thanks: ${data.field} corrected to ${said}.`);
          } else if (kind === "retry") {
            upsertAnswer(result.reply, since);
          } else {
            // A live update that arrived while the request was in flight is newer than its answer.
            if (caseEventId <= since) showCase(result.case);
            toast(kind === "assign" ? "Assignment saved." : kind === "tags" ? "Tags saved." : "Status saved.");
          }
        } catch (err) {
          toast(err.message, { kind: "error" });
        }
      });
    }
    const statusSelect = $("#status-select");
    if (statusSelect) statusSelect.addEventListener("change", () => statusSelect.form.requestSubmit());

    function nextCase() { location.href = `${body.dataset.nextUrl || "/console/next/"}?after=${caseId}`; }
    document.addEventListener("click", (event) => {
      if (event.target.closest("[data-action=next-case]")) { event.preventDefault(); nextCase(); }
      if (event.target.closest("[data-action=canned]")) { event.preventDefault(); openCanned(); }
    });

    keys.n = nextCase;
    keys.r = () => { showTab("reply-form"); };
    keys.e = () => { const form = $("#resolve-form"); if (form) form.requestSubmit(); };
    keys.a = () => { const form = $("#assign-me-form"); if (form) form.requestSubmit(); };
    keys.c = openCanned;
    keys["\\"] = openCanned;
    scrollToEnd();
  }

  // --- Keyboard --------------------------------------------------------------------------------
  const keys = {};
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    const inField = target instanceof Element && Boolean(target.closest("input, textarea, select, [contenteditable]"));
    if ((event.ctrlKey || event.metaKey) && event.key === "Enter") {
      const form = inField ? target.closest("form") : null;
      if (form && (form.id === "reply-form" || form.id === "note-form")) {
        event.preventDefault();
        form.requestSubmit($("button[type=submit]", form));
      }
      return;
    }
    if (event.key === "Escape") {
      toggleHelp(false);
      return;
    }
    if (inField || event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "Enter" && target instanceof Element && target.closest("a, button")) return;
    if (event.key === "?") { event.preventDefault(); toggleHelp(); return; }
    const handler = keys[event.key];
    if (handler) {
      event.preventDefault();
      handler();
    }
  });

  // --- Start -----------------------------------------------------------------------------------
  if (page === "inbox") initInbox();
  if (page === "case") initCase();
  if (body.dataset.live) {
    updateTimes();
    setInterval(updateTimes, 30000);
    live.start();
  }
})();
