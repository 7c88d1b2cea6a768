// The timed rule form shows the settings of the chosen action only (a message to close, a queue
// to move to, a boost to escalate). Without this script every field shows, and the server
// ignores those the action does not use.
(() => {
  "use strict";
  const FIELDS = { close: ["canned"], reassign: ["queue"], escalate: ["priority_boost"], notify: [] };
  function sync() {
    const action = document.getElementById("id_action");
    if (!action) return;
    const wanted = FIELDS[action.value] || [];
    for (const name of ["canned", "queue", "priority_boost"]) {
      const field = document.querySelector(`[data-field="${name}"]`);
      if (field) field.hidden = !wanted.includes(name) && !field.querySelector(".error");
    }
  }
  document.addEventListener("DOMContentLoaded", () => {
    sync();
    document.getElementById("id_action")?.addEventListener("change", sync);
  });
})();
