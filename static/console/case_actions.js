/* Snooze, macros and merge on the case page: the forms work without this file (plain posts
 * that redirect back). With it: the agent's time zone goes with a snooze, the custom time shows
 * only for "Until…", and the forms post as JSON with the reason of a refusal in a toast. */
(() => {
  "use strict";
  const panel = document.getElementById("case-actions");
  if (!panel || !window.CXM) return;
  const { postJSON, toast } = window.CXM;

  const zone = (() => { try { return Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (_) { return ""; } })();
  for (const input of panel.querySelectorAll("input[name=tz]")) input.value = zone;

  const preset = document.getElementById("snooze-preset");
  const until = document.getElementById("snooze-until");
  function syncUntil() { if (preset && until) until.hidden = preset.value !== "custom"; }
  if (preset) { preset.addEventListener("change", syncUntil); syncUntil(); }

  const done = { snooze: "Snoozed.", unsnooze: "Back in the queue.", macro: "Macro applied.", merge: "Merged.", undo: "Merge undone." };

  panel.addEventListener("submit", async (event) => {
    const form = event.target.closest("form[data-case-action]");
    if (!form) return;
    event.preventDefault();
    const action = form.dataset.caseAction;
    const data = {};
    for (const [name, value] of new FormData(form).entries()) {
      if (name !== "csrfmiddlewaretoken") data[name] = value;
    }
    if (action === "merge") data.same_person = Boolean(form.querySelector("input[name=same_person]:checked"));
    if (action === "snooze" && data.preset === "custom" && data.until) {
      data.until = new Date(data.until).toISOString();  // the agent's local time, as an instant
    }
    const buttons = form.querySelectorAll("button");
    for (const b of buttons) b.disabled = true;
    try {
      const result = await postJSON(form.action, data);
      toast(result && result.already ? "Already applied." : done[action] || "Done.");
      if (action === "snooze") { window.location.assign(panel.dataset.inboxUrl || "/console/"); return; }
      window.location.reload();
    } catch (error) {
      toast((error && error.message) || "That did not work.", { kind: "error" });
      for (const b of buttons) b.disabled = false;
    }
  });
})();
