// A source's page: copy buttons, "Test connection" and "Backfill" without leaving the page, and
// the backfill's progress while it runs. Every form also works without this script.
(function () {
  "use strict";
  const { $, $$, postJSON, toast } = window.CXM;
  const page = document.body.dataset.connectorUrl;

  async function getJSON(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } });
    if (!response.ok) throw new Error(`request failed (${response.status})`);
    return response.json();
  }

  $$("[data-copy]").forEach((button) => button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(button.dataset.copy);
      toast("Copied");
    } catch (_) {
      toast("Select the text and copy it", { kind: "error" });
    }
  }));

  const testForm = $("#test-form");
  if (testForm) testForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const result = $("#test-result");
    const button = $("#test-connection");
    button.disabled = true;
    result.className = "test-result";
    result.textContent = "Calling the provider…";
    try {
      const answer = await postJSON(testForm.action, {});
      result.classList.add(answer.ok ? "ok" : "failed");
      result.textContent = `${answer.ok ? "✓" : "✗"} ${answer.message}`;
    } catch (error) {
      result.classList.add("failed");
      result.textContent = `✗ ${error.message}`;
    } finally {
      button.disabled = false;
    }
  });

  const status = $("#backfill-status");
  function describe(job) {
    if (!job || !job.since) return "No backfill yet.";
    const state = job.error ? `stopped: ${job.error}` : job.finished_at ? "done" : "running…";
    return `From ${job.since.slice(0, 10)}: ${job.pages} page${job.pages === 1 ? "" : "s"}, ` +
      `${job.created} new, ${job.duplicates} already here — ${state}`;
  }
  async function follow() {
    try {
      const { connector } = await getJSON(page);
      status.textContent = describe(connector.backfill);
      const running = connector.backfill && connector.backfill.since && !connector.backfill.finished_at;
      status.dataset.running = running ? "1" : "0";
      const submit = $("#backfill-form button");
      if (submit) submit.disabled = running;
      if (running) setTimeout(follow, 2000);
    } catch (_) {
      setTimeout(follow, 5000);
    }
  }
  const backfillForm = $("#backfill-form");
  if (backfillForm) backfillForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const answer = await postJSON(backfillForm.action, { since: $("#since").value });
      status.textContent = describe(answer.backfill);
      follow();
    } catch (error) {
      toast(error.message, { kind: "error" });
    }
  });
  if (status && status.dataset.running === "1") follow();
  document.body.dataset.sourcesReady = "1";  // the browser tests wait for the handlers above
})();
