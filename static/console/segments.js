// The segment form: any number of signal and attribute tests (add a row, remove a row), and the
// live count of customers the tests select, asked of the server (console:segment-preview) as the
// form changes. Without this script the form still works: it shows every saved test and one blank
// row of each kind, and saving with a row filled in adds that test.
(() => {
  "use strict";

  function setup(form) {
    const max = Number(form.dataset.maxTests || 10);
    const live = document.getElementById("segment-live");
    let timer = null;
    let asked = 0;

    function rowsOf(kind) {
      return Array.from(form.querySelectorAll(`.test-rows[data-kind="${kind}"] > .test-row`));
    }

    function nextIndex() {
      let top = -1;
      for (const row of form.querySelectorAll(".test-row")) {
        const n = Number(row.dataset.row);
        if (Number.isInteger(n) && n > top) top = n;
      }
      return top + 1;
    }

    function refreshButtons() {
      for (const kind of ["signal", "attr"]) {
        const rows = rowsOf(kind);
        const add = form.querySelector(`[data-add="${kind}"]`);
        if (add) add.hidden = rows.length >= max;
        for (const row of rows) {
          const remove = row.querySelector(".remove-test");
          if (remove) remove.hidden = rows.length <= 1 && !filled(row);
        }
      }
    }

    function filled(row) {
      const chosen = row.querySelector("select.signal-type, select.attr-key");
      return Boolean(chosen && chosen.value);
    }

    function addRow(kind) {
      const template = document.getElementById(`segment-${kind}-template`);
      const box = form.querySelector(`.test-rows[data-kind="${kind}"]`);
      if (!template || !box || rowsOf(kind).length >= max) return;
      const index = String(nextIndex());
      const fragment = template.content.cloneNode(true);
      const row = fragment.querySelector(".test-row");
      row.dataset.row = index;
      for (const field of row.querySelectorAll("[name]")) field.name = field.name.replace("__i__", index);
      box.append(fragment);
      refreshButtons();
      const first = box.lastElementChild.querySelector("select");
      if (first) first.focus();
    }

    function removeRow(row) {
      const box = row.parentElement;
      const kind = box.dataset.kind;
      if (rowsOf(kind).length <= 1) {
        // The last row of its kind stays, emptied: it is where the next test is written.
        for (const select of row.querySelectorAll("select")) select.selectedIndex = 0;
        for (const input of row.querySelectorAll("input[type=text]")) input.value = "";
      } else {
        row.remove();
      }
      refreshButtons();
      schedule();
    }

    function schedule() {
      clearTimeout(timer);
      timer = setTimeout(count, 300);
    }

    async function count() {
      const mine = ++asked;
      const data = new FormData(form);
      let answer;
      try {
        const response = await fetch(form.dataset.previewUrl, {
          method: "POST", body: data, credentials: "same-origin",
          headers: { "Accept": "application/json", "X-CSRFToken": data.get("csrfmiddlewaretoken") || "" },
        });
        answer = await response.json();
      } catch (_) {
        return; // offline or a server error: the count simply stays as it was
      }
      if (mine !== asked || !live) return;
      live.hidden = false;
      live.classList.toggle("is-error", !answer.ok && !answer.empty);
      if (answer.empty) {
        live.textContent = "Add a test: how many customers it selects shows here.";
      } else if (answer.ok) {
        const n = Number(answer.customers);
        live.textContent = `${n.toLocaleString()} customer${n === 1 ? " matches" : "s match"} now: ${answer.description}`;
      } else {
        live.textContent = `Not counted: ${answer.reason}`;
      }
    }

    form.addEventListener("click", (event) => {
      const add = event.target.closest("[data-add]");
      if (add) { event.preventDefault(); addRow(add.dataset.add); return; }
      const remove = event.target.closest(".remove-test");
      if (remove) { event.preventDefault(); removeRow(remove.closest(".test-row")); }
    });
    form.addEventListener("input", (event) => {
      if (event.target.name === "name") return;
      refreshButtons();
      schedule();
    });
    form.addEventListener("change", (event) => {
      if (event.target.name === "name") return;
      refreshButtons();
      schedule();
    });
    refreshButtons();
    schedule();
  }

  document.addEventListener("DOMContentLoaded", () => {
    const form = document.getElementById("segment-form");
    if (form && form.dataset.previewUrl) setup(form);
  });
})();
