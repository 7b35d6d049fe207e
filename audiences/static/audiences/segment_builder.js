/*
 * The segment builder's live count: as the definition textarea changes (debounced 500 ms),
 * the unsaved definition is posted to the staff preview endpoint, which validates it and
 * answers the count and a sample of matching contacts, or field-level errors. Server text is
 * always set with textContent, never as HTML. Only the latest answer is shown.
 */
(function () {
  "use strict";

  const DEBOUNCE_MS = 500;

  function start() {
    const panel = document.getElementById("segment-live");
    const textarea = document.getElementById("id_definition");
    if (!panel) {
      return;
    }
    if (!textarea) {
      panel.hidden = true; // a view-only page: "Who matches the saved definition" says it
      return;
    }
    // Right under the definition, where the eye is while typing.
    const row = textarea.closest(".form-row");
    if (row && row.closest("fieldset")) {
      row.closest("fieldset").after(panel);
    }
    const status = document.getElementById("segment-live-status");
    const errors = document.getElementById("segment-live-errors");
    const sample = document.getElementById("segment-live-sample");
    const csrfToken = panel.querySelector("input[name=csrfmiddlewaretoken]").value;
    const slugInput = document.getElementById("id_slug");
    const kindInput = document.getElementById("id_kind");
    let timer = null;
    let sequence = 0;

    function item(text, href) {
      const li = document.createElement("li");
      if (href) {
        const a = document.createElement("a");
        a.href = href;
        a.textContent = text;
        li.appendChild(a);
      } else {
        li.textContent = text;
      }
      return li;
    }

    async function refresh() {
      const mine = ++sequence;
      if (kindInput && kindInput.value === "static") {
        status.textContent = "A static segment is a fixed list: it has no definition to count.";
        errors.replaceChildren();
        sample.replaceChildren();
        return;
      }
      status.textContent = "Counting…";
      let response;
      let data;
      try {
        response = await fetch(panel.dataset.url, {
          method: "POST",
          credentials: "same-origin",
          headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken },
          body: JSON.stringify({
            definition: textarea.value,
            segment: panel.dataset.segment || null,
            slug: slugInput ? slugInput.value : null,
          }),
        });
        data = await response.json();
      } catch (error) {
        if (mine === sequence) {
          status.textContent = "Could not count (are you still signed in?)";
        }
        return;
      }
      if (mine !== sequence) {
        return; // an older answer arriving late
      }
      errors.replaceChildren();
      sample.replaceChildren();
      const problems = Object.entries(data.errors || {});
      if (problems.length) {
        status.textContent = "Not counted: fix the definition.";
        problems.forEach(([path, messages]) =>
          messages.forEach((message) => errors.appendChild(item(path + ": " + message)))
        );
        return;
      }
      const n = data.count;
      status.textContent = n.toLocaleString() + (n === 1 ? " contact matches" : " contacts match") + " now.";
      (data.sample || []).forEach((contact) => sample.appendChild(item(contact.label, contact.url)));
    }

    function schedule() {
      clearTimeout(timer);
      timer = setTimeout(refresh, DEBOUNCE_MS);
    }

    textarea.addEventListener("input", schedule);
    if (kindInput) {
      kindInput.addEventListener("change", schedule);
    }
    refresh();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
