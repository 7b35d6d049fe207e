/*
 * Live preview for the template editor: posts the form's current, unsaved fields (debounced)
 * to the preview endpoint and shows what would be sent; "Send test to me" posts to the
 * send-test endpoint. Server text is always set with textContent, never as HTML; email HTML
 * goes only into a sandboxed iframe.
 */
(function () {
  "use strict";

  const panel = document.getElementById("touchline-preview");
  if (!panel) {
    return;
  }
  const form = document.getElementById(panel.dataset.formId);
  const FIELDS = ["channel", "subject", "body", "html_body", "content_sid", "content_variables"];
  const DEBOUNCE_MS = 300;
  const csrfToken = panel.querySelector("input[name=csrfmiddlewaretoken]").value;
  const contactSelect = document.getElementById("touchline-preview-contact");
  const contactIdInput = document.getElementById("touchline-preview-contact-id");
  const eventInput = document.getElementById("touchline-preview-event");
  const statusLine = document.getElementById("touchline-preview-status");
  const warningList = document.getElementById("touchline-preview-warnings");
  const output = document.getElementById("touchline-preview-output");

  let timer = null;
  let sequence = 0;
  let unsaved = false;

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([key, value]) => {
      if (key === "text") {
        node.textContent = value;
      } else {
        node.setAttribute(key, value);
      }
    });
    (children || []).forEach((child) => child && node.appendChild(child));
    return node;
  }

  function fieldValue(name) {
    const input = form && form.elements.namedItem(name);
    if (input && "value" in input) {
      return input.value;
    }
    // A view-only form has no inputs: preview the saved values.
    const saved = document.getElementById("touchline-saved-" + name);
    if (!saved) {
      return "";
    }
    const value = JSON.parse(saved.textContent);
    return typeof value === "string" ? value : JSON.stringify(value);
  }

  function contactChoice() {
    return contactIdInput.value.trim() || contactSelect.value || null;
  }

  async function postJson(url, payload) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken },
      body: JSON.stringify(payload),
    });
    let data;
    try {
      data = await response.json();
    } catch (error) {
      // Not JSON: a login page after the session expired, or a server error page.
      throw new Error("HTTP " + response.status + " (are you still signed in?)");
    }
    return { response, data };
  }

  // --- Errors next to the fields --------------------------------------------------------

  function clearErrors() {
    document.querySelectorAll(".touchline-generated-errors").forEach((node) => node.remove());
    document.querySelectorAll(".touchline-field-invalid").forEach((node) => {
      node.classList.remove("touchline-field-invalid");
    });
    panel.querySelectorAll("[data-errors-for]").forEach((list) => {
      list.replaceChildren();
      list.hidden = true;
    });
  }

  function errorList(messages) {
    return el(
      "ul",
      { class: "errorlist touchline-live-errors touchline-generated-errors" },
      messages.map((message) => el("li", { text: message }))
    );
  }

  function showErrors(errors) {
    Object.entries(errors || {}).forEach(([name, messages]) => {
      const own = panel.querySelector('[data-errors-for="' + name + '"]');
      if (own) {
        messages.forEach((message) => own.appendChild(el("li", { text: message })));
        own.hidden = false;
        return;
      }
      const row = form && form.querySelector(".form-row.field-" + name);
      if (row) {
        row.classList.add("touchline-field-invalid");
        row.insertBefore(errorList(messages), row.firstChild);
        return;
      }
      const general = panel.querySelector('[data-errors-for="__all__"]');
      messages.forEach((message) => general.appendChild(el("li", { text: name + ": " + message })));
      general.hidden = false;
    });
  }

  // --- Rendering the answer -------------------------------------------------------------

  function plural(n, word) {
    return n + " " + word + (n === 1 ? "" : "s");
  }

  function smsSummary(sms) {
    return (
      sms.encoding +
      " · " +
      plural(sms.characters, "character") +
      " · " +
      plural(sms.segments, "segment") +
      " (" +
      sms.per_segment +
      " per segment)"
    );
  }

  function textBlock(label, text, extraClass) {
    return el("div", { class: "touchline-part" }, [
      el("h4", { text: label }),
      el("pre", { class: "touchline-text " + (extraClass || ""), text: text || "(empty)" }),
    ]);
  }

  function renderSms(rendered) {
    return [
      el("p", { class: "touchline-meta", text: smsSummary(rendered.sms) }),
      textBlock("Text", rendered.text, "touchline-bubble"),
    ];
  }

  function renderWhatsApp(rendered) {
    const wa = rendered.whatsapp;
    const parts = [];
    let note;
    if (wa.sends_now === "freeform") {
      note = "The contact wrote within 24 hours: the freeform body below is sent.";
    } else if (wa.sends_now === "template") {
      note =
        "Outside the 24-hour window: the approved content template " +
        wa.content_sid +
        " is sent" +
        (wa.freeform_inside_window ? " (the body is used only inside the window)." : ".");
    } else {
      note = "This send would be skipped now: " + wa.reason + ".";
    }
    parts.push(el("p", { class: "touchline-meta", text: note }));
    if (rendered.text) {
      parts.push(textBlock("Freeform body (inside the window)", rendered.text, "touchline-bubble"));
    }
    if (wa.content_sid) {
      const rows = Object.entries(wa.content_variables).map(([key, value]) =>
        el("tr", {}, [el("th", { text: "{{" + key + "}}" }), el("td", { text: value })])
      );
      parts.push(
        el("div", { class: "touchline-part" }, [
          el("h4", { text: "Content template " + wa.content_sid }),
          rows.length
            ? el("table", { class: "touchline-vars" }, [el("tbody", {}, rows)])
            : el("p", { class: "help", text: "No content variables." }),
        ])
      );
    }
    return parts;
  }

  function renderEmail(rendered) {
    const parts = [el("p", { class: "touchline-meta" }, [
      el("strong", { text: "Subject: " }),
      document.createTextNode(rendered.subject || "(empty)"),
    ])];
    if (rendered.email.html) {
      const frame = el("iframe", {
        sandbox: "",
        class: "touchline-email-frame",
        title: "Email HTML preview",
      });
      frame.srcdoc = rendered.email.html;
      parts.push(el("div", { class: "touchline-part" }, [
        el("h4", { text: "HTML part (CSS inlined, as sent)" }),
        frame,
      ]));
    }
    const label = rendered.email.text_generated
      ? "Text part (generated from the HTML, as sent)"
      : "Text part";
    parts.push(textBlock(label, rendered.email.text));
    return parts;
  }

  function render(answer) {
    warningList.replaceChildren(
      ...(answer.warnings || []).map((w) => el("li", { class: "warning", text: w }))
    );
    warningList.hidden = !(answer.warnings || []).length;
    if (!answer.rendered) {
      // Keep the last good preview, dimmed, so the author keeps their bearings.
      output.classList.add("touchline-stale");
      statusLine.textContent = "Fix the errors marked in red to update the preview.";
      return;
    }
    output.classList.remove("touchline-stale");
    const rendered = answer.rendered;
    let parts;
    if (rendered.sms) {
      parts = renderSms(rendered);
    } else if (rendered.whatsapp) {
      parts = renderWhatsApp(rendered);
    } else {
      parts = renderEmail(rendered);
    }
    output.replaceChildren(...parts);
    statusLine.textContent =
      "Rendered for " + answer.contact.label + " at " + new Date().toLocaleTimeString() + ".";
  }

  async function refresh() {
    const mine = ++sequence;
    const payload = { contact: contactChoice(), event: eventInput.value };
    FIELDS.forEach((name) => {
      payload[name] = fieldValue(name);
    });
    statusLine.textContent = "Rendering…";
    let result;
    try {
      result = await postJson(panel.dataset.previewUrl, payload);
    } catch (error) {
      if (mine === sequence) {
        statusLine.textContent = "Preview unavailable: " + error.message;
      }
      return;
    }
    if (mine !== sequence) {
      return; // a newer edit already asked again
    }
    clearErrors();
    if (!panel.dataset.sendTestUrl && !unsaved) {
      // A blank "Add template" form: no red marks before the author has typed anything.
      statusLine.textContent = "Choose a channel and write the template to see a preview.";
      return;
    }
    showErrors(result.data.errors);
    if (!result.response.ok) {
      output.classList.add("touchline-stale");
      statusLine.textContent = result.response.status === 403
        ? "You do not have permission to preview this."
        : "The preview request needs fixing (see above).";
      return;
    }
    render(result.data);
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(refresh, DEBOUNCE_MS);
  }

  // --- Contact picker -------------------------------------------------------------------

  async function loadContacts() {
    try {
      const response = await fetch(panel.dataset.contactsUrl, { credentials: "same-origin" });
      const data = await response.json();
      data.contacts.forEach((contact) => {
        const address = contact.email || contact.phone || contact.whatsapp;
        const label = contact.label + (address && address !== contact.label ? " — " + address : "");
        contactSelect.appendChild(el("option", { value: String(contact.id), text: label }));
      });
    } catch (error) {
      // The picker stays with the sample contact; an id can still be typed.
    }
  }

  // --- Send test to me ------------------------------------------------------------------

  function setupSendTest() {
    const url = panel.dataset.sendTestUrl;
    const button = document.getElementById("touchline-send-test");
    if (!url || !button) {
      return;
    }
    const recipient = document.getElementById("touchline-send-test-contact");
    const result = document.getElementById("touchline-send-test-result");
    const errors = panel.querySelector('[data-errors-for="send-test"]');
    button.addEventListener("click", async () => {
      button.disabled = true;
      errors.replaceChildren();
      errors.hidden = true;
      result.textContent = "Sending…";
      try {
        const { response, data } = await postJson(url, {
          event: eventInput.value,
          contact: recipient ? recipient.value : "",
        });
        if (response.ok) {
          const message = data.message;
          result.replaceChildren(
            document.createTextNode(
              "Message " + message.status + " to " + message.to +
                (message.error ? " (" + message.error + ")" : "") + " · "
            ),
            el("a", { href: message.url, text: "open message " + message.id.slice(0, 8) })
          );
        } else {
          result.textContent = "";
          Object.entries(data.errors || {}).forEach(([name, messages]) => {
            messages.forEach((m) =>
              errors.appendChild(el("li", { text: (name === "__all__" ? "" : name + ": ") + m }))
            );
          });
          errors.hidden = false;
        }
      } catch (error) {
        result.textContent = "Not sent: " + error.message;
      } finally {
        button.disabled = false;
      }
    });
  }

  function markUnsaved() {
    if (!unsaved) {
      unsaved = true;
      const note = document.getElementById("touchline-send-test-unsaved");
      if (note) {
        note.hidden = false;
      }
    }
  }

  if (form) {
    form.addEventListener("input", (event) => {
      if (FIELDS.includes(event.target.name)) {
        markUnsaved();
        schedule();
      }
    });
    form.addEventListener("change", (event) => {
      if (FIELDS.includes(event.target.name)) {
        schedule();
      }
    });
  }
  [contactSelect, contactIdInput, eventInput].forEach((input) => {
    input.addEventListener("input", schedule);
    input.addEventListener("change", schedule);
  });
  setupSendTest();
  loadContacts();
  refresh();
})();
