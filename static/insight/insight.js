/* CXM dashboards (Insight): fetch each panel's JSON, draw it with Plotly.js, keep it live.
 *
 * - Every chart has a table with the same numbers (read by screen readers, shown on demand); its
 *   counts link to the drill-down, so every point a mouse can click a keyboard can reach.
 * - Clicking a bar, point or slice opens the drill-down: the page's filters plus the point.
 * - Live: /ws/insight/ says "refresh" when messages of the user's teams were classified; pings
 *   are gathered for a moment, then every panel is fetched again (and every 60 s regardless).
 * - Snapshots: every chart as SVG (Plotly.toImage), drawn with the title and filters on one
 *   canvas: a PNG download, or posted to the server for a PDF.
 * Text from the server (names, terms, labels) is only ever set with textContent.
 */
(() => {
  "use strict";

  const body = document.body;
  if (body.dataset.page !== "insight") return;

  // The filter bar's drop-downs (<details>): one open at a time, closed by Escape or a click
  // elsewhere, as a menu would be.
  const choices = Array.from(document.querySelectorAll("details.choice"));
  document.addEventListener("click", (event) => {
    for (const item of choices) if (item.open && !item.contains(event.target)) item.open = false;
  });
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    const open = choices.find((item) => item.open);
    if (open) { open.open = false; open.querySelector("summary").focus(); }
  });

  if (typeof window.Plotly === "undefined") return;  // refused filters: no panels to draw

  // Each panel's renderer (a key of RENDER below), from the panel registry (insight.panels).
  const RENDERERS = JSON.parse((document.getElementById("insight-renderers") || {}).textContent || "{}");
  const QUERY = body.dataset.query || "";
  const DRILL_URL = body.dataset.drillUrl;
  const INBOX_URL = body.dataset.inboxUrl;
  const ACTIVE_FILTERS = new Set((body.dataset.activeFilters || "").split(" ").filter(Boolean));
  const REFRESH_GATHER_MS = 1500;
  const FALLBACK_REFRESH_MS = 60000;

  // Okabe–Ito: distinguishable with every common colour-vision deficiency.
  const OI = {
    black: "#000000", orange: "#E69F00", sky: "#56B4E9", green: "#009E73", yellow: "#F0E442",
    blue: "#0072B2", vermillion: "#D55E00", purple: "#CC79A7", grey: "#999999",
  };
  const SERIES = [OI.blue, OI.orange, OI.green, OI.purple, OI.sky, OI.vermillion, OI.grey, OI.yellow, OI.black];
  const SENTIMENT_COLOURS = { negative: OI.vermillion, neutral: OI.grey, positive: OI.blue };
  const LANE_COLOURS = { issue: OI.vermillion, praise: OI.green, ambivalence: OI.orange, triage: OI.purple, noise: OI.grey };
  // Lanes as people say them (learning.models.Lane's labels), never their slugs.
  const LANE_NAMES = { issue: "Issue", praise: "Praise", ambivalence: "Ambivalence", triage: "Needs a look", noise: "Spam" };
  const SENTIMENTS = ["negative", "neutral", "positive"];
  const FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif';
  const PLOT_CONFIG = {
    displaylogo: false, responsive: true,
    // The modebar's own PNG export uses a blob: image the CSP refuses; the page has its own.
    modeBarButtonsToRemove: ["toImage", "lasso2d", "select2d", "autoScale2d"],
  };

  // --- Small helpers -----------------------------------------------------------------------------
  const { $, $$, el, csrfToken, toast } = window.CXM;  // from console.js, loaded first on every page

  const number = new Intl.NumberFormat();
  const fmt = (n) => (n === null || n === undefined ? "–" : number.format(n));
  const pct = (x, digits = 0) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(digits)}%`);
  const signed = (x, digits = 0) => (x === null || x === undefined ? "–" : `${x > 0 ? "+" : ""}${Number(x).toFixed(digits)}`);

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const s = Math.round(seconds);
    if (s < 60) return `${s}s`;
    const m = Math.round(s / 60);
    if (m < 60) return `${m}m`;
    const h = Math.floor(m / 60);
    if (h < 48) return m % 60 ? `${h}h ${m % 60}m` : `${h}h`;
    const d = Math.floor(h / 24);
    return h % 24 ? `${d}d ${h % 24}h` : `${d}d`;
  }

  function panelUrl(name, extra = "") {
    const base = (body.dataset.panelUrl || "").replace("NAME", encodeURIComponent(name));
    const query = [QUERY, extra].filter(Boolean).join("&");
    return query ? `${base}?${query}` : base;
  }

  function drillHref(params) {
    const query = new URLSearchParams(QUERY);
    for (const [key, value] of Object.entries(params)) {
      if (value !== null && value !== undefined && value !== "") query.set(key, String(value));
    }
    return `${DRILL_URL}?${query}`;
  }

  function download(blob, filename) {
    const url = URL.createObjectURL(blob);
    const link = el("a", { href: url, download: filename, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 2000);
  }

  function stampForFile(date = new Date()) {
    const p = (n) => String(n).padStart(2, "0");
    return `${date.getFullYear()}${p(date.getMonth() + 1)}${p(date.getDate())}-${p(date.getHours())}${p(date.getMinutes())}`;
  }

  function sentimentLabel(value) { return value.charAt(0).toUpperCase() + value.slice(1); }

  // --- Panel scaffolding -------------------------------------------------------------------------
  function part(section, role) { return $(`[data-role="${role}"]`, section); }

  function kpis(section, items) {
    const box = part(section, "kpis");
    box.replaceChildren(...items.map((item) => el("div", { class: "kpi" },
      el("div", { class: "kpi-label", text: item.label }),
      el("div", { class: "kpi-value", text: item.value }),
      item.compare ? el("div", { class: `kpi-compare ${item.deltaClass || ""}`, text: item.compare }) : null)));
  }

  // A change against an empty previous period is news, not "+4600%".
  const NEW_TEXT = "new: none in the previous period";
  const growthText = (t) => (t.new ? "new" : `${signed(100 * t.growth)}%`);

  function compareText(now, before, { format = fmt } = {}) {
    if (before === null || before === undefined) return "";
    if (now === null || now === undefined) return `previous period: ${format(before)}`;
    if (before === 0 && now > 0) return NEW_TEXT;
    const delta = now - before;
    const arrow = delta > 0 ? "▲" : delta < 0 ? "▼" : "=";
    return `previous ${format(before)} (${arrow} ${format(Math.abs(delta))})`;
  }

  function deltaClass(now, before) {
    if (now === null || before === null || now === undefined || before === undefined || now === before) return "";
    return now > before ? "delta-up" : "delta-down";
  }

  function ignoredNote(section, ignored) {
    const note = part(section, "ignored");
    if (!ignored || !ignored.length) { note.hidden = true; return; }
    const active = ignored.filter((name) => ACTIVE_FILTERS.has(name));
    note.hidden = false;
    note.classList.toggle("active", active.length > 0);
    note.textContent = active.length
      ? `Your ${active.join(" and ")} filter does not apply here: this panel counts without it.`
      : `The ${ignored.join(" and ")} filters do not apply to this panel.`;
  }

  function chartsBox(section, count) {
    const box = part(section, "charts");
    box.classList.toggle("two", count === 2);
    box.classList.toggle("three", count === 3);
    return box;
  }

  /** Draw (or update in place) one chart. `drill(point)` returns the drill-down params of a
   * clicked point, or an href, or null when that point leads nowhere. */
  function chart(section, key, { title, traces, layout, drill, empty }) {
    const box = part(section, "charts");
    let holder = $(`[data-chart="${key}"]`, box);
    if (!holder) {
      const plot = el("div", { class: "chart", role: "figure" });  // not "img": the modebar inside is interactive
      holder = el("div", { class: "chart-box", "data-chart": key }, title ? el("h3", { text: title }) : null, plot);
      box.append(holder);
    }
    const plot = $(".chart", holder);
    plot.setAttribute("aria-label", `${title || section.querySelector("h2").textContent} chart; the numbers are in the table below`);
    plot.dataset.title = title || "";
    if (empty) {
      if (plot.data) { Plotly.purge(plot); plot._clickBound = false; }  // purge drops listeners too
      plot.replaceChildren(el("p", { class: "chart-empty", text: empty }));
      plot.dataset.empty = "1";
      return;
    }
    if (plot.dataset.empty) { plot.replaceChildren(); delete plot.dataset.empty; }
    plot._drill = drill;
    Plotly.react(plot, traces, baseLayout(layout), PLOT_CONFIG);
    if (!plot._clickBound) {
      plot._clickBound = true;
      plot.on("plotly_click", (event) => {
        const point = event && event.points && event.points[0];
        if (!point || !plot._drill) return;
        const target = plot._drill(point);
        if (!target) return;
        window.location.assign(typeof target === "string" ? target : drillHref(target));
      });
    }
  }

  function baseLayout(extra) {
    return {
      height: 300, autosize: true,
      margin: { l: 64, r: 24, t: 30, b: 48 },
      font: { family: FONT, size: 12, color: "#1d2330" },
      paper_bgcolor: "#ffffff", plot_bgcolor: "#ffffff",
      legend: { orientation: "h", x: 0, y: 1, yanchor: "bottom" },
      hoverlabel: { font: { family: FONT, size: 12 } },
      ...extra,
    };
  }

  /** Bucket labels as Plotly dates: hourly labels end with their zone (DST repeats an hour),
   * which a date axis cannot read; the tables keep the full label. */
  function xs(data) { return data.buckets.map((label) => label.split(" ").slice(0, 2).join(" ")); }

  function timeAxis(data) {
    const granularity = body.dataset.granularity || "day";
    const title = granularity === "hour" ? "Hour" : granularity === "week" ? "Week starting" : "Day";
    return { title: { text: title }, type: "date", showgrid: false, automargin: true };
  }

  /** A table of the numbers behind a chart. `rows` are arrays of cells: a plain value, or
   * {text, href} for a link to the drill-down. */
  function table(section, key, caption, header, rows) {
    const box = part(section, "tables");
    let wrap = $(`[data-table="${key}"]`, box);
    if (!wrap) {
      wrap = el("div", { class: "data-table", "data-table": key });
      box.append(wrap);
    }
    const head = el("tr", {}, ...header.map((h) => el("th", { scope: "col", text: h })));
    const lines = rows.map((row) => el("tr", {}, ...row.map((cell, i) => {
      const content = cell && typeof cell === "object" && cell.href
        ? el("a", { href: cell.href, text: cell.text }) : document.createTextNode(cell === null || cell === undefined ? "–" : String(cell));
      return i === 0 ? el("th", { scope: "row" }, content) : el("td", {}, content);
    })));
    wrap.replaceChildren(el("table", {}, el("caption", { text: caption }), el("thead", {}, head),
      el("tbody", {}, ...(lines.length ? lines : [el("tr", {}, el("td", { colspan: header.length, text: "No data" }))]))));
  }

  function link(text, params) { return { text: String(text), href: typeof params === "string" ? params : drillHref(params) }; }

  // --- Renderers: what a panel's declaration names (insight.panels.registry.Panel.renderer) --------
  const RENDER = {
    sentiment(section, data) {
      const totals = data.totals;
      const prev = data.previous;
      kpis(section, [
        { label: "Messages", value: fmt(totals.total), compare: prev ? compareText(totals.total, prev.total) : "",
          deltaClass: prev ? deltaClass(totals.total, prev.total) : "" },
        { label: "Net sentiment", value: signed(totals.net), compare: prev ? compareText(totals.net, prev.net, { format: (x) => signed(x) }) : "",
          deltaClass: prev ? deltaClass(totals.net, prev.net) : "" },
        ...SENTIMENTS.map((s) => ({
          label: sentimentLabel(s), value: totals.total ? pct(totals[s] / totals.total) : "–",
          compare: prev && prev.total ? `previous ${pct(prev[s] / prev.total)}` : "",
        })),
        // Languages the sentiment models do not read: counted apart, never as neutral.
        totals.not_scored ? { label: "Not scored", value: fmt(totals.not_scored),
          compare: "languages the models do not read; outside the shares" } : null,
      ].filter(Boolean));
      chartsBox(section, 1);
      const totalsAt = data.buckets.map((_, i) => SENTIMENTS.reduce((n, s) => n + data.series[s][i], 0));
      const traces = SENTIMENTS.map((s) => ({
        type: "bar", name: sentimentLabel(s), x: xs(data), marker: { color: SENTIMENT_COLOURS[s] },
        y: data.series[s].map((n, i) => (totalsAt[i] ? (100 * n) / totalsAt[i] : 0)),
        customdata: data.series[s],
        hovertemplate: `%{x}<br>${sentimentLabel(s)}: %{customdata} messages (%{y:.0f}%)<extra></extra>`,
        meta: { sentiment: s },
      }));
      traces.push({
        type: "scatter", mode: "lines+markers", name: "Net score", x: xs(data), y: data.net, yaxis: "y2",
        line: { color: OI.black, width: 2 }, marker: { size: 5 }, connectgaps: false,
        hovertemplate: "%{x}<br>Net score: %{y:+.0f}<extra></extra>", meta: {},
      });
      chart(section, "share", {
        traces, empty: totals.total ? "" : "No classified messages in this period.",
        layout: {
          barmode: "stack", bargap: 0.15, xaxis: timeAxis(data),
          yaxis: { title: { text: "Share of messages (%)" }, range: [0, 100], ticksuffix: "%" },
          yaxis2: { title: { text: "Net score (−100 to +100)" }, overlaying: "y", side: "right", range: [-100, 100],
            zeroline: true, zerolinecolor: "#cfd4dc", showgrid: false },
          margin: { l: 64, r: 64, t: 30, b: 48 },
        },
        drill: (p) => ({ bucket: data.bucket_starts[p.pointIndex], ...p.data.meta }),
      });
      const notScored = data.not_scored || data.buckets.map(() => 0);
      table(section, "share", "Sentiment by bucket", ["Bucket", "Negative", "Neutral", "Positive", "Total", "Net", "Not scored"],
        data.buckets.map((label, i) => [label,
          ...SENTIMENTS.map((s) => link(fmt(data.series[s][i]), { bucket: data.bucket_starts[i], sentiment: s })),
          link(fmt(totalsAt[i]), { bucket: data.bucket_starts[i] }), signed(data.net[i]), fmt(notScored[i])]));
    },

    volume(section, data) {
      const prev = data.previous;
      const total = data.totals.total;
      kpis(section, [
        { label: "Messages", value: fmt(total), compare: prev ? compareText(total, prev.total) : "",
          deltaClass: prev ? deltaClass(total, prev.total) : "" },
        ...Object.entries(data.totals.by_channel).sort((a, b) => b[1] - a[1]).slice(0, 4).map(([channel, n]) => ({
          label: channel || "(none)", value: fmt(n),
          compare: prev ? `previous ${fmt((prev.by_channel || {})[channel] || 0)}` : "",
        })),
      ]);
      chartsBox(section, 2);
      for (const [key, title, series, colours, param] of [
        ["channel", "By channel", data.by_channel, null, "channel"],
        ["lane", "By lane", data.by_lane, LANE_COLOURS, "lane"],
      ]) {
        const names = Object.keys(series).sort();
        const said = (name) => (param === "lane" && LANE_NAMES[name]) || name || "(none)";
        const traces = names.map((name, i) => ({
          type: "bar", name: said(name), x: xs(data), y: series[name],
          marker: { color: (colours && colours[name]) || SERIES[i % SERIES.length] },
          hovertemplate: `%{x}<br>${said(name)}: %{y} messages<extra></extra>`,
          meta: { [param]: name },
        }));
        chart(section, key, {
          title, traces, empty: total ? "" : "No messages in this period.",
          layout: { barmode: "stack", bargap: 0.15, xaxis: timeAxis(data), yaxis: { title: { text: "Messages" }, rangemode: "tozero" } },
          drill: (p) => (p.data.meta[param] ? { bucket: data.bucket_starts[p.pointIndex], ...p.data.meta } : null),
        });
        table(section, key, `Messages ${title.toLowerCase()}`, ["Bucket", ...names.map(said)],
          data.buckets.map((label, i) => [label, ...names.map((n) => (n
            ? link(fmt(series[n][i]), { bucket: data.bucket_starts[i], [param]: n }) : fmt(series[n][i])))]));
      }
    },

    intents(section, data) { distribution(section, data, "intent", "Intent"); },
    emotions(section, data) { distribution(section, data, "emotion", "Emotion"); },

    topics(section, data) {
      const mentions = data.terms.reduce((n, t) => n + t.mentions, 0);
      const before = data.terms.reduce((n, t) => n + (t.previous_mentions || 0), 0);
      const compared = data.terms.some((t) => t.previous_mentions !== null && t.previous_mentions !== undefined);
      const [top, fastest] = [data.terms[0], data.rising[0]];
      kpis(section, [
        { label: "Mentions of the top terms", value: fmt(mentions), compare: compared ? compareText(mentions, before) : "",
          deltaClass: compared ? deltaClass(mentions, before) : "" },
        top ? { label: "Most mentioned", value: top.name, compare: `${fmt(top.mentions)} mentions, net ${signed(top.net)}` } : null,
        fastest ? { label: "Rising fastest", value: fastest.name,
          compare: fastest.new ? NEW_TEXT : `${growthText(fastest)} against the previous period` } : null,
      ].filter(Boolean));
      chartsBox(section, 2);
      const terms = data.terms.slice().reverse();  // Plotly draws horizontal bars bottom-up
      const none = data.terms.length ? "" : "No terms were mentioned in this period (admins define terms under Learning › Terms).";
      chart(section, "terms", {
        title: "Top terms by sentiment",
        traces: SENTIMENTS.map((s) => ({
          type: "bar", orientation: "h", name: sentimentLabel(s), y: terms.map((t) => t.name), x: terms.map((t) => t[s]),
          marker: { color: SENTIMENT_COLOURS[s] }, customdata: terms.map((t) => t.term_id),
          hovertemplate: `%{y}<br>${sentimentLabel(s)}: %{x} mentions<extra></extra>`, meta: { sentiment: s },
        })),
        empty: none,
        layout: { barmode: "stack", height: Math.max(260, 26 * terms.length + 90), xaxis: { title: { text: "Mentions" } },
          yaxis: { automargin: true }, margin: { l: 120, r: 16, t: 30, b: 48 } },
        drill: (p) => ({ term: p.customdata, ...p.data.meta }),
      });
      const voices = data.share_of_voice;
      chart(section, "voice", {
        title: "Share of voice: brands and competitors",
        traces: [{
          type: "pie", hole: 0.5, labels: voices.map((v) => `${v.name} (${v.kind})`), values: voices.map((v) => v.mentions),
          customdata: voices.map((v) => v.term_id), marker: { colors: voices.map((_, i) => SERIES[i % SERIES.length]) },
          sort: false, textinfo: "percent", hovertemplate: "%{label}<br>%{value} mentions (%{percent})<extra></extra>",
        }],
        empty: voices.length ? "" : "No brand or competitor was mentioned in this period.",
        layout: { legend: { orientation: "v", x: 1, y: 0.5, yanchor: "middle" }, margin: { l: 16, r: 16, t: 8, b: 16 } },
        drill: (p) => ({ term: Array.isArray(p.customdata) ? p.customdata[0] : p.customdata }),
      });
      table(section, "terms", "Top terms", ["Term", "Kind", "Mentions", "Negative", "Neutral", "Positive", "Net", "Previous", "Change"],
        data.terms.map((t) => [t.name, t.kind, link(fmt(t.mentions), { term: t.term_id }),
          ...SENTIMENTS.map((s) => link(fmt(t[s]), { term: t.term_id, sentiment: s })),
          signed(t.net), fmt(t.previous_mentions), signed(t.change)]));
      table(section, "voice", "Share of voice", ["Term", "Kind", "Mentions", "Share"],
        voices.map((v) => [v.name, v.kind, link(fmt(v.mentions), { term: v.term_id }), pct(v.share, 1)]));
      rising(section, data.rising);
    },

    care(section, data) {
      const prev = data.previous;
      // Read from the care rollup's histograms: within 5% (insight.care_rollup); counts stay exact.
      const approx = data.approximate ? " (approx.)" : "";
      const times = (key, label, field) => ({
        label: label + approx, value: duration(data[key][field]),
        compare: prev ? `previous ${duration(prev[key][field])}` : "",
        deltaClass: prev ? deltaClass(prev[key][field], data[key][field]) : "",  // faster is better
      });
      kpis(section, [
        times("first_response", "First response, median", "median_seconds"),
        times("first_response", "First response, p90", "p90_seconds"),
        times("resolution", "Resolution, median", "median_seconds"),
        times("resolution", "Resolution, p90", "p90_seconds"),
        { label: "SLA compliance", value: pct(data.sla.compliance),
          compare: `${fmt(data.sla.met)} met, ${fmt(data.sla.breached)} breached${prev ? ` · previous ${pct(prev.sla.compliance)}` : ""}`,
          deltaClass: prev ? deltaClass(data.sla.compliance, prev.sla.compliance) : "" },
      ]);
      chartsBox(section, 3);
      const backlog = data.backlog.slice().reverse();
      const statuses = [["new", OI.orange], ["open", OI.blue], ["pending", OI.grey]];
      chart(section, "backlog", {
        title: "Backlog by queue (now)",
        traces: statuses.map(([status, colour]) => ({
          type: "bar", orientation: "h", name: sentimentLabel(status), y: backlog.map((q) => `${q.team} / ${q.queue}`),
          x: backlog.map((q) => q[status]), marker: { color: colour }, customdata: backlog.map((q) => q.queue_id),
          hovertemplate: `%{y}<br>${sentimentLabel(status)}: %{x} cases<extra></extra>`,
        })),
        empty: data.backlog.length ? "" : "No open cases.",
        layout: { barmode: "stack", height: Math.max(260, 28 * backlog.length + 90), xaxis: { title: { text: "Cases" } },
          yaxis: { automargin: true }, margin: { l: 140, r: 16, t: 30, b: 48 } },
        drill: (p) => (p.customdata ? `${INBOX_URL}?queue=${encodeURIComponent(p.customdata)}` : null),
      });
      for (const [key, title, rows, label] of [["agents", "Per agent", data.agents, "Agent"], ["teams", "Per team", data.teams, "Team"]]) {
        const shown = rows.slice(0, 15).reverse();
        chart(section, key, {
          title: `${title}: cases and replies`,
          traces: [["cases", "Cases", OI.blue], ["replies", "Replies", OI.orange]].map(([field, name, colour]) => ({
            type: "bar", orientation: "h", name, y: shown.map((r) => r.name || "(unknown)"), x: shown.map((r) => r[field]),
            marker: { color: colour }, hovertemplate: `%{y}<br>${name}: %{x}<extra></extra>`,
          })),
          empty: rows.length ? "" : "No cases opened in this period.",
          layout: { barmode: "group", height: Math.max(260, 34 * shown.length + 90), xaxis: { title: { text: "Cases opened and replies sent" } },
            yaxis: { automargin: true }, margin: { l: 120, r: 16, t: 30, b: 48 } },
          drill: null,
        });
        table(section, key, `${title}: cases and replies`, [label, "Cases", "Replies"], rows.map((r) => [r.name, fmt(r.cases), fmt(r.replies)]));
      }
      table(section, "backlog", "Backlog by queue", ["Queue", "New", "Open", "Pending", "Total"],
        data.backlog.map((q) => [`${q.team} / ${q.queue}`, fmt(q.new), fmt(q.open), fmt(q.pending),
          q.queue_id ? link(fmt(q.total), `${INBOX_URL}?queue=${encodeURIComponent(q.queue_id)}`) : fmt(q.total)]));
      table(section, "times", data.approximate ? "Response times (seconds; medians and p90s approximate, within 5%)"
        : "Response times (seconds)", ["Measure", "Cases", "Median", "p90"],
        [["First response", data.first_response], ["Resolution", data.resolution]].map(([name, t]) =>
          [name, fmt(t.count), fmt(t.median_seconds), fmt(t.p90_seconds)]));
    },

    recovered(section, data) {
      const prev = data.previous;
      kpis(section, [
        { label: "Began negative", value: fmt(data.began_negative), compare: prev ? `previous ${fmt(prev.began_negative)}` : "" },
        { label: "Wrote again", value: fmt(data.followed_up), compare: prev ? `previous ${fmt(prev.followed_up)}` : "" },
        { label: "Recovered", value: fmt(data.recovered), compare: prev ? `previous ${fmt(prev.recovered)}` : "" },
        { label: "Recovery rate", value: pct(data.share), compare: prev ? `previous ${pct(prev.share)}` : "",
          deltaClass: prev ? deltaClass(data.share, prev.share) : "" },
      ]);
      chartsBox(section, 1);
      const rows = data.by_channel;
      chart(section, "channels", {
        traces: [["followed_up", "Wrote again", OI.grey], ["recovered", "Recovered", OI.blue]].map(([field, name, colour]) => ({
          type: "bar", name, x: rows.map((r) => r.channel || "(none)"), y: rows.map((r) => r[field]), marker: { color: colour },
          customdata: rows.map((r) => pct(r.share)), hovertemplate: `%{x}<br>${name}: %{y} conversations (recovery %{customdata})<extra></extra>`,
        })),
        empty: rows.length ? "" : "No conversation began negative in this period.",
        layout: { barmode: "group", bargap: 0.45, xaxis: { title: { text: "Channel" }, type: "category" },
          yaxis: { title: { text: "Conversations that began negative" }, rangemode: "tozero" } },
        drill: null,
      });
      table(section, "channels", "Recovered customers by channel", ["Channel", "Began negative", "Wrote again", "Recovered", "Rate"],
        rows.map((r) => [r.channel || "(none)", fmt(r.began_negative), fmt(r.followed_up), fmt(r.recovered), pct(r.share)]));
    },

    /** Bars per channel, for a panel that answers {rows: [{key (a channel), label, value, count}], unit,
     * value_label}: horizontal bars of `value` per row and a table. unit "seconds" reads as a
     * duration. A new panel of this shape needs no JavaScript of its own. A panel whose rows are
     * not channels says so: row_label and count_label name the columns, drill false turns the
     * drill-down off, and kpis false leaves out "Slowest" and "Fastest". */
    bars(section, data) {
      const rows = data.rows || [];
      const show = data.unit === "seconds" ? duration : data.unit === "%" ? (v) => `${fmt(v)}%` : fmt;
      const counted = data.count_label || "cases";
      kpis(section, rows.length && data.kpis !== false ? [
        { label: `Slowest: ${rows[0].label}`, value: show(rows[0].value), compare: `${fmt(rows[0].count)} ${counted}` },
        { label: `Fastest: ${rows[rows.length - 1].label}`, value: show(rows[rows.length - 1].value),
          compare: `${fmt(rows[rows.length - 1].count)} ${counted}` },
      ] : []);
      chartsBox(section, 1);
      const shown = rows.slice().reverse();
      const minutes = data.unit === "seconds";
      chart(section, "bars", {
        empty: rows.length ? "" : "Nothing to show in this period.",
        traces: [{
          type: "bar", orientation: "h", y: shown.map((r) => r.label), x: shown.map((r) => (minutes ? r.value / 60 : r.value)),
          marker: { color: OI.blue }, customdata: shown.map((r) => [show(r.value), r.count, r.key]),
          hovertemplate: `%{y}<br>%{customdata[0]} (%{customdata[1]} ${counted})<extra></extra>`,
        }],
        layout: { height: Math.max(220, 26 * shown.length + 90), showlegend: false,
          xaxis: { title: { text: `${data.value_label || "Value"}${minutes ? " (minutes)" : ""}` },
            rangemode: data.unit === "%" ? "normal" : "tozero" },
          yaxis: { automargin: true }, margin: { l: 110, r: 16, t: 20, b: 48 } },
        drill: data.drill === false ? null : (p) => ({ channel: p.customdata[2] }),
      });
      const counts = counted.charAt(0).toUpperCase() + counted.slice(1);
      table(section, "bars", section.querySelector("h2").textContent,
        [data.row_label || "Channel", data.value_label || "Value", counts], rows.map((r) => [r.label, show(r.value), fmt(r.count)]));
    },
  };

  function distribution(section, data, param, label) {
    const items = data.items.filter((item) => item.count > 0 || item.previous_count);
    const compare = data.previous_total !== null && data.previous_total !== undefined;
    const top = items.slice(0, 12);
    const biggestMove = items.filter((i) => i.change !== null).sort((a, b) => Math.abs(b.change) - Math.abs(a.change))[0];
    kpis(section, [
      { label: "Messages", value: fmt(data.total), compare: compare ? compareText(data.total, data.previous_total) : "" },
      top[0] ? { label: `Top ${label.toLowerCase()}`, value: top[0].label, compare: `${pct(top[0].share)} of messages` } : null,
      biggestMove && biggestMove.change ? { label: "Biggest change", value: biggestMove.label,
        compare: `${signed(100 * biggestMove.change)} points`, deltaClass: biggestMove.change > 0 ? "delta-up" : "delta-down" } : null,
    ].filter(Boolean));
    chartsBox(section, 1);
    const shown = top.slice().reverse();
    const traces = [{
      type: "bar", orientation: "h", name: "This period", y: shown.map((i) => i.label), x: shown.map((i) => 100 * i.share),
      marker: { color: OI.blue }, customdata: shown.map((i) => [i.count, i.change === null ? "" : `${signed(100 * i.change)} points`, i.value]),
      hovertemplate: "%{y}<br>%{x:.1f}% of messages (%{customdata[0]})<br>%{customdata[1]}<extra></extra>", meta: { current: true },
    }];
    if (compare) {
      traces.push({
        type: "bar", orientation: "h", name: "Previous period", y: shown.map((i) => i.label),
        x: shown.map((i) => (i.previous_share === null ? 0 : 100 * i.previous_share)), marker: { color: OI.grey },
        customdata: shown.map((i) => i.previous_count), hovertemplate: "%{y}<br>previous: %{x:.1f}% (%{customdata})<extra></extra>",
        meta: { current: false },
      });
    }
    chart(section, "items", {
      traces, empty: data.total ? "" : "No classified messages in this period.",
      layout: { barmode: "group", height: Math.max(260, (compare ? 30 : 22) * shown.length + 90),
        xaxis: { title: { text: "Share of messages (%)" }, ticksuffix: "%", rangemode: "tozero" },
        yaxis: { automargin: true }, margin: { l: 130, r: 16, t: 30, b: 48 } },
      drill: (p) => (p.data.meta.current ? { [param]: p.customdata[2] } : null),
    });
    table(section, "items", `${label}s`, [label, "Messages", "Share", "Previous share", "Change (points)"],
      items.map((i) => [i.label, link(fmt(i.count), { [param]: i.value }), pct(i.share, 1), pct(i.previous_share, 1),
        i.change !== null ? signed(100 * i.change, 1) : i.previous_count === 0 && i.count > 0 ? "new" : "–"]));
  }

  function rising(section, items) {
    const box = part(section, "charts");
    let holder = $('[data-chart="rising"]', box);
    if (!holder) {
      holder = el("div", { class: "chart-box", "data-chart": "rising" }, el("h3", { text: "Rising terms" }), el("ol", { class: "rising" }));
      box.append(holder);
    }
    const list = $("ol", holder);
    list.replaceChildren(...(items.length ? items.map((t) => el("li", {},
      el("a", { href: drillHref({ term: t.term_id }), text: t.name }),
      ` (${t.kind}): ${fmt(t.mentions)} mentions, previous ${fmt(t.previous_mentions)}, ${growthText(t)}`))
      : [el("li", { class: "muted", text: "Nothing rising: no term grew to 5 or more mentions against the previous period." })]));
  }

  // --- Loading -----------------------------------------------------------------------------------
  const sections = $$("section[data-panel]");
  let loading = null;
  let again = false;

  async function loadPanel(section) {
    const name = section.dataset.panel;
    const state = part(section, "state");
    section.setAttribute("aria-busy", "true");
    try {
      const response = await fetch(panelUrl(name), { credentials: "same-origin", headers: { Accept: "application/json" } });
      let data = {};
      try { data = await response.json(); } catch (_) { data = {}; }
      if (!response.ok) throw new Error(data.reason || `the server answered ${response.status}`);
      ignoredNote(section, data.ignored);
      const period = data.period || {};
      part(section, "compare").textContent = period.compare
        ? ` · compared with ${period.previous_from} to ${period.previous_to}` : " · no comparison";
      const draw = RENDER[RENDERERS[name]];
      if (!draw) throw new Error(`no renderer "${RENDERERS[name]}" in insight.js for this panel`);
      draw(section, data);
      state.textContent = "";
      state.classList.remove("error");
      section.dataset.loaded = "1";
    } catch (error) {
      state.textContent = `Could not load this panel: ${error.message}`;
      state.classList.add("error");
    } finally {
      section.setAttribute("aria-busy", "false");
    }
  }

  async function refreshAll() {
    if (loading) { again = true; return loading; }
    loading = Promise.all(sections.map(loadPanel)).then(() => {
      const updated = $("#dash-updated");
      if (updated) updated.textContent = `Updated ${new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" })}`;
      body.dataset.refreshes = String(Number(body.dataset.refreshes || 0) + 1);
    });
    try { await loading; } finally {
      loading = null;
      if (again) { again = false; refreshAll(); }
    }
  }

  // --- Live --------------------------------------------------------------------------------------
  const live = {
    socket: null, delay: 1000, timer: null,
    status(state) {
      const node = $("#live-status");
      if (node) { node.dataset.state = state; node.textContent = state; }
    },
    connect() {
      const scheme = location.protocol === "https:" ? "wss" : "ws";
      let socket;
      try { socket = new WebSocket(`${scheme}://${location.host}/ws/insight/`); } catch (_) { this.retry(); return; }
      this.socket = socket;
      socket.addEventListener("open", () => { this.delay = 1000; this.status("live"); });
      socket.addEventListener("message", (event) => {
        let data;
        try { data = JSON.parse(event.data); } catch (_) { return; }
        if (data && data.type === "refresh") this.gather();
        else if (data && data.type === "bye") { this.stopped = true; this.status("offline"); socket.close(); }
      });
      socket.addEventListener("close", () => { if (this.socket === socket) this.socket = null; this.retry(); });
    },
    retry() {
      if (this.stopped) return;
      this.status("reconnecting");
      const wait = this.delay;
      this.delay = Math.min(this.delay * 2, 15000);
      setTimeout(() => this.connect(), wait);
    },
    // A burst of classifications rings many times: one refresh a moment after the first ring.
    gather() {
      if (this.timer) return;
      this.timer = setTimeout(() => { this.timer = null; refreshAll(); }, REFRESH_GATHER_MS);
    },
  };

  // --- Snapshots ---------------------------------------------------------------------------------
  function loadImage(url) {
    return new Promise((resolve, reject) => {
      const image = new Image();
      image.onload = () => resolve(image);
      image.onerror = () => reject(new Error("a chart could not be drawn"));
      image.src = url;
    });
  }

  function wrapText(ctx, text, width) {
    const lines = [];
    let line = "";
    for (const word of String(text).split(/\s+/)) {
      const candidate = line ? `${line} ${word}` : word;
      if (ctx.measureText(candidate).width > width && line) { lines.push(line); line = word; } else line = candidate;
    }
    if (line) lines.push(line);
    return lines;
  }

  const SNAP = { SCALE: 2, WIDTH: 1600, PAD: 24, COLUMNS: 3, GAP: 12, LINE: 18 };

  /** One chart as a drawable cell: its title and its SVG image (or the panel's "no data" text). */
  async function chartCell(plot, width) {
    const cell = { title: plot.dataset.title || "" };
    if (!plot.data || plot.dataset.empty) return { ...cell, text: plot.textContent || "No data", height: 40 };
    const height = Math.max(260, Math.round(plot.getBoundingClientRect().height) || 300);
    const url = await Plotly.toImage(plot, { format: "svg", width: Math.round(width), height });
    return { ...cell, image: await loadImage(url), height };
  }

  /** Everything a panel shows, as drawable blocks: its title, its key figures, and its charts in
   * rows laid out as on the page. */
  async function panelBlocks(section, width) {
    const blocks = [{ kind: "title", text: section.querySelector("h2").textContent }];
    const figures = $$(".kpi", section).map((kpi) => {
      const compare = $(".kpi-compare", kpi);
      return `${$(".kpi-label", kpi).textContent}: ${$(".kpi-value", kpi).textContent}${compare ? ` (${compare.textContent})` : ""}`;
    });
    if (figures.length) blocks.push({ kind: "text", text: figures.join("   ·   ") });
    const charts = part(section, "charts");
    const plots = $$(".chart", section);
    const columns = Math.min(plots.length, charts.classList.contains("three") ? 3 : charts.classList.contains("two") ? 2 : 1);
    const cellWidth = (width - (columns - 1) * SNAP.GAP) / Math.max(columns, 1);
    for (let i = 0; i < plots.length; i += columns) {
      const cells = [];
      for (const plot of plots.slice(i, i + columns)) cells.push(await chartCell(plot, cellWidth));
      const titled = cells.some((c) => c.title);
      blocks.push({ kind: "row", cells, cellWidth, height: (titled ? SNAP.LINE + 4 : 0) + Math.max(...cells.map((c) => c.height)) + 8 });
    }
    const risingList = $('[data-chart="rising"] ol', section);
    if (risingList) blocks.push({ kind: "text", text: `Rising terms: ${$$("li", risingList).map((li) => li.textContent).join("; ")}` });
    return blocks;
  }

  function blockHeight(measure, block, width) {
    if (block.kind === "row") return block.height;
    measure.font = `13px ${FONT}`;
    return SNAP.LINE * wrapText(measure, block.text, width).length + 6;
  }

  function drawBlock(ctx, block, x, y, width) {
    if (block.kind === "row") {
      block.cells.forEach((cell, j) => {
        const left = x + j * (block.cellWidth + SNAP.GAP);
        let top = y;
        if (block.cells.some((c) => c.title)) {
          ctx.font = `600 13px ${FONT}`;
          ctx.fillStyle = "#475467";
          ctx.fillText(cell.title, left, top + SNAP.LINE - 4);
          top += SNAP.LINE + 4;
        }
        if (cell.image) ctx.drawImage(cell.image, left, top, block.cellWidth, cell.height);
        else { ctx.font = `13px ${FONT}`; ctx.fillStyle = "#667085"; ctx.fillText(cell.text, left, top + SNAP.LINE); }
      });
      return block.height;
    }
    ctx.font = block.kind === "title" ? `600 15px ${FONT}` : `13px ${FONT}`;
    ctx.fillStyle = block.kind === "title" ? "#1d2330" : "#344054";
    const lines = wrapText(ctx, block.text, width);
    lines.forEach((line, i) => ctx.fillText(line, x, y + (i + 1) * SNAP.LINE - 4));
    return SNAP.LINE * lines.length + 6;
  }

  async function composeSnapshot() {
    const { SCALE, WIDTH, PAD, COLUMNS } = SNAP;
    const COL = (WIDTH - (COLUMNS + 1) * PAD) / COLUMNS;
    const measure = document.createElement("canvas").getContext("2d");
    const panels = [];
    for (const section of sections) {
      const style = getComputedStyle(section);
      const wide = style.gridColumnStart === "1" && style.gridColumnEnd === "-1";
      const width = wide ? WIDTH - 2 * PAD : COL;
      const blocks = await panelBlocks(section, width - 16);
      const height = blocks.reduce((h, b) => h + blockHeight(measure, b, width - 16), 16);
      panels.push({ wide, width, blocks, height });
    }
    // Header: title, filters, time. Then the panels, flowing into the shortest column.
    measure.font = `14px ${FONT}`;
    const summary = wrapText(measure, body.dataset.summary || "", WIDTH - 2 * PAD);
    let columns = Array(COLUMNS).fill(PAD + 34 + summary.length * 20 + 24);
    const placed = [];
    for (const panel of panels) {
      if (panel.wide) {
        const top = Math.max(...columns);
        placed.push({ panel, x: PAD, y: top });
        columns = columns.map(() => top + panel.height + PAD);
      } else {
        const col = columns.indexOf(Math.min(...columns));
        placed.push({ panel, x: PAD + col * (COL + PAD), y: columns[col] });
        columns[col] += panel.height + PAD;
      }
    }
    const height = Math.max(...columns);
    const canvas = document.createElement("canvas");
    canvas.width = WIDTH * SCALE;
    canvas.height = height * SCALE;
    const ctx = canvas.getContext("2d");
    ctx.scale(SCALE, SCALE);
    ctx.fillStyle = "#f4f5f7";
    ctx.fillRect(0, 0, WIDTH, height);
    ctx.fillStyle = "#1d2330";
    ctx.font = `600 24px ${FONT}`;
    ctx.fillText("CXM dashboards", PAD, PAD + 24);
    ctx.font = `14px ${FONT}`;
    ctx.fillStyle = "#475467";
    summary.forEach((line, i) => ctx.fillText(line, PAD, PAD + 52 + i * 20));
    ctx.fillText(`Generated ${new Date().toLocaleString()}`, PAD, PAD + 52 + summary.length * 20);
    for (const { panel, x, y } of placed) {
      ctx.fillStyle = "#ffffff";
      ctx.strokeStyle = "#e3e6eb";
      ctx.fillRect(x, y, panel.width, panel.height);
      ctx.strokeRect(x + 0.5, y + 0.5, panel.width - 1, panel.height - 1);
      let cursor = y + 8;
      for (const block of panel.blocks) cursor += drawBlock(ctx, block, x + 8, cursor, panel.width - 16);
    }
    return new Promise((resolve, reject) => canvas.toBlob(
      (blob) => (blob ? resolve(blob) : reject(new Error("the snapshot could not be encoded"))), "image/png"));
  }

  async function snapshot(kind, button) {
    button.disabled = true;
    const label = button.textContent;
    button.textContent = "Preparing…";
    try {
      const png = await composeSnapshot();
      if (kind === "png") { download(png, `cxm-dashboards-${stampForFile()}.png`); return; }
      const form = new FormData();
      form.append("image", png, "dashboards.png");
      const url = `${body.dataset.pdfUrl}${QUERY ? `?${QUERY}` : ""}`;
      const response = await fetch(url, {
        method: "POST", body: form, credentials: "same-origin",
        headers: { "X-CSRFToken": csrfToken(), Accept: "application/pdf, application/json" },
      });
      if (!response.ok) {
        let reason = `the server answered ${response.status}`;
        try { reason = (await response.json()).reason || reason; } catch (_) { /* not JSON */ }
        throw new Error(reason);
      }
      download(await response.blob(), `cxm-dashboards-${stampForFile()}.pdf`);
    } catch (error) {
      toast(`Snapshot failed: ${error.message}`, { kind: "error" });
    } finally {
      button.disabled = false;
      button.textContent = label;
    }
  }

  document.addEventListener("click", (event) => {
    const target = event.target.closest("[data-action]");
    if (!target) return;
    const action = target.dataset.action;
    if (action === "snapshot-png") snapshot("png", target);
    else if (action === "snapshot-pdf") snapshot("pdf", target);
    else if (action === "toggle-tables") {
      const on = target.getAttribute("aria-pressed") !== "true";
      target.setAttribute("aria-pressed", String(on));
      target.textContent = on ? "Hide data tables" : "Show data tables";
      $("#main").classList.toggle("show-tables", on);
    }
  });

  // --- Start -------------------------------------------------------------------------------------
  refreshAll();
  live.connect();
  setInterval(refreshAll, FALLBACK_REFRESH_MS);
})();
