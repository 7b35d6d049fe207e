// Show only the fields of each step's kind in the journey builder.
(function () {
  "use strict";
  const kindFields = JSON.parse(document.getElementById("step-kind-fields").textContent);
  const all = new Set(Object.values(kindFields).flat());

  function refresh(container) {
    const select = container.querySelector("select[name$='-kind']");
    if (!select) return;
    const wanted = new Set(kindFields[select.value] || []);
    all.forEach(function (name) {
      container.querySelectorAll(".field-" + name).forEach(function (row) {
        row.style.display = wanted.has(name) ? "" : "none";
      });
    });
  }

  function bind(container) {
    const select = container.querySelector("select[name$='-kind']");
    if (select && !select.dataset.touchlineBound) {
      select.dataset.touchlineBound = "1";
      select.addEventListener("change", function () { refresh(container); });
    }
    refresh(container);
  }

  function bindAll() {
    document.querySelectorAll(".inline-related").forEach(bind);
  }

  document.addEventListener("DOMContentLoaded", bindAll);
  document.addEventListener("formset:added", function (event) {
    bind(event.target.closest ? event.target.closest(".inline-related") || event.target : event.target);
  });
})();
