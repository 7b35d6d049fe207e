// Show only the fields of each step's kind in the journey builder; a split step's variant
// rows show only what is filled (at least two) and an "Add a variant" button, and their
// "go to" boxes suggest the journey's step keys.
(function () {
  "use strict";
  let kindFields = {};
  let all = [];

  function refresh(container) {
    const select = container && container.querySelector("select[name$='-kind']");
    if (!select) return;
    const wanted = new Set(kindFields[select.value] || []);
    all.forEach(function (name) {
      container.querySelectorAll(".field-" + name).forEach(function (row) {
        row.style.display = wanted.has(name) ? "" : "none";
      });
    });
    container.querySelectorAll("table.split-variants").forEach(setUpVariants);
  }

  function filled(row) {
    return Array.from(row.querySelectorAll("input")).some(function (input) {
      return input.value.trim() !== "";
    });
  }

  function setUpVariants(table) {
    // The empty form is a template the admin clones: set up the clone, not the template.
    if (table.dataset.ready || table.closest(".empty-form")) return;
    table.dataset.ready = "1";
    const rows = Array.from(table.querySelectorAll("tr.split-variant-row"));
    let last = 1;  // a split has at least two variants
    rows.forEach(function (row, i) { if (filled(row)) last = Math.max(last, i); });
    rows.forEach(function (row, i) { row.hidden = i > last; });
    const button = document.createElement("button");
    button.type = "button";
    button.className = "button split-variant-add";
    button.textContent = "Add a variant";
    button.addEventListener("click", function () {
      const next = rows.find(function (row) { return row.hidden; });
      if (next) next.hidden = false;
      button.hidden = !rows.some(function (row) { return row.hidden; });
    });
    button.hidden = !rows.some(function (row) { return row.hidden; });
    table.after(button);
    table.querySelectorAll("input.split-variant-goto").forEach(function (input) {
      input.setAttribute("list", "journey-step-keys");
    });
  }

  // The step keys typed so far in this journey, plus "end", as suggestions for "go to".
  function refreshStepKeys() {
    let list = document.getElementById("journey-step-keys");
    if (!list) {
      list = document.createElement("datalist");
      list.id = "journey-step-keys";
      document.body.appendChild(list);
    }
    const keys = new Set();
    document.querySelectorAll("input[name$='-key']").forEach(function (input) {
      if (input.value.trim() && !input.name.includes("__prefix__")) keys.add(input.value.trim());
    });
    keys.add("end");
    list.replaceChildren.apply(list, Array.from(keys).map(function (key) {
      const option = document.createElement("option");
      option.value = key;
      return option;
    }));
  }

  document.addEventListener("DOMContentLoaded", function () {
    const data = document.getElementById("step-kind-fields");
    if (!data) return;  // e.g. the change list, which loads the same Media
    kindFields = JSON.parse(data.textContent);
    all = Array.from(new Set(Object.values(kindFields).flat()));
    document.querySelectorAll(".inline-related").forEach(refresh);
    refreshStepKeys();
    // Delegated, so rows cloned from the empty form work too.
    document.addEventListener("change", function (event) {
      if (event.target.matches("select[name$='-kind']")) {
        refresh(event.target.closest(".inline-related"));
      }
      if (event.target.matches("input[name$='-key']")) refreshStepKeys();
    });
    document.addEventListener("formset:added", function (event) {
      refresh(event.target.closest(".inline-related") || event.target);
    });
  });
})();
