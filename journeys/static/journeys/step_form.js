// Show only the fields of each step's kind in the journey builder.
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
  }

  document.addEventListener("DOMContentLoaded", function () {
    const data = document.getElementById("step-kind-fields");
    if (!data) return;  // e.g. the change list, which loads the same Media
    kindFields = JSON.parse(data.textContent);
    all = Array.from(new Set(Object.values(kindFields).flat()));
    document.querySelectorAll(".inline-related").forEach(refresh);
    // Delegated, so rows cloned from the empty form work too.
    document.addEventListener("change", function (event) {
      if (event.target.matches("select[name$='-kind']")) {
        refresh(event.target.closest(".inline-related"));
      }
    });
    document.addEventListener("formset:added", function (event) {
      refresh(event.target.closest(".inline-related") || event.target);
    });
  });
})();
