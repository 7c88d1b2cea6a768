/* Saved views in the sidebar: keep their counts current.
 *
 * The counts follow the console's own live updates: when console.js refreshes the inbox counts
 * after a case event, the views' counts are fetched too (one request, cached on the server until
 * the next event). Pages without live counts poll slowly while visible. Names and counts are set
 * with textContent only.
 */
(() => {
  "use strict";

  const nav = document.querySelector(".saved-views[data-views-url]");
  if (!nav) return;
  const url = nav.dataset.viewsUrl;
  let timer = null;
  let inflight = false;

  async function refresh() {
    if (inflight) return;
    inflight = true;
    try {
      const response = await fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } });
      if (!response.ok) return;
      const data = await response.json();
      for (const view of data.views || []) {
        const node = nav.querySelector(`[data-view-count="${Number(view.id)}"]`);
        if (node) node.textContent = String(view.count_label);
      }
    } catch (_) { /* the next event or poll tries again */ } finally {
      inflight = false;
    }
  }

  function soon() {
    clearTimeout(timer);
    timer = setTimeout(refresh, 400);
  }

  // console.js rewrites the inbox counts after every case event: the views follow.
  const counts = Array.from(document.querySelectorAll("[data-count]"));
  if (counts.length && "MutationObserver" in window) {
    const observer = new MutationObserver(soon);
    for (const node of counts) observer.observe(node, { childList: true, characterData: true, subtree: true });
  }
  // And a slow poll, only while the page is seen, for what arrives without an event here.
  setInterval(() => { if (document.visibilityState === "visible") refresh(); }, counts.length ? 60000 : 20000);
  document.addEventListener("visibilitychange", () => { if (document.visibilityState === "visible") soon(); });
})();
