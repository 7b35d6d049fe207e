/*
 * The segment's visual builder: "Match all / any of" a list of simple conditions (contact
 * field, attribute, reachable on a channel, subscribed to / unsubscribed from a topic, did /
 * did not do an event within N days, in another segment), kept in step with the JSON definition textarea. Editing a row rewrites
 * the JSON (and the live count follows: segment_builder.js listens to the textarea); editing
 * the JSON by hand redraws the rows when the builder can show it, else says to keep editing
 * the JSON (nesting, counts, property filters). The server validates either way.
 * Text is always set with textContent / value, never as HTML.
 */
(function () {
  "use strict";

  const KINDS = [
    ["field", "Contact field"],
    ["attribute", "Attribute"],
    ["reachable", "Reachable on"],
    ["topic_subscribed", "Subscribed to topic"],
    ["topic_unsubscribed", "Unsubscribed from topic"],
    ["did", "Did event"],
    ["did_not", "Did not do event"],
    ["segment", "In segment"],
  ];
  const FIELD_OPS = [
    ["eq", "is"],
    ["neq", "is not"],
    ["contains", "contains"],
    ["in", "is one of (comma-separated)"],
    ["exists", "is set"],
    ["not_exists", "is not set"],
  ];
  const ATTRIBUTE_OPS = [
    ...FIELD_OPS,
    ["gt", ">"],
    ["gte", "≥"],
    ["lt", "<"],
    ["lte", "≤"],
  ];
  const NO_VALUE = new Set(["exists", "not_exists"]);

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([key, value]) => {
      if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    });
    (children || []).forEach((child) => child && node.appendChild(child));
    return node;
  }

  function select(name, options, value) {
    const node = el("select", { "data-name": name, "aria-label": name });
    options.forEach(([v, label]) => {
      const option = el("option", { value: v, text: label });
      if (v === value) option.selected = true;
      node.appendChild(option);
    });
    return node;
  }

  function input(name, value, attrs) {
    const node = el("input", { "data-name": name, "aria-label": name, type: "text", ...attrs });
    node.value = value === undefined || value === null ? "" : String(value);
    return node;
  }

  function scalar(text) {
    const t = text.trim();
    if (t === "true" || t === "false") return t === "true";
    if (t !== "" && !Number.isNaN(Number(t)) && /^-?\d+(\.\d+)?$/.test(t)) return Number(t);
    return t;
  }

  // --- A definition → rows (null when the builder cannot show it) ------------------------

  function toRow(c) {
    if (!c || typeof c !== "object" || Array.isArray(c)) return null;
    const keys = Object.keys(c).sort().join(",");
    const list = (v) => (Array.isArray(v) ? v.join(", ") : v);
    if ("field" in c && (keys === "field,op,value" || keys === "field,op")) {
      return { kind: "field", name: c.field, op: c.op, value: list(c.value) };
    }
    if ("attribute" in c && (keys === "attribute,op,value" || keys === "attribute,op")) {
      return { kind: "attribute", name: c.attribute, op: c.op, value: list(c.value) };
    }
    if (keys === "reachable") return { kind: "reachable", name: c.reachable };
    if (keys === "segment") return { kind: "segment", name: c.segment };
    if (keys === "topic" || keys === "status,topic") {
      if (c.status !== undefined && c.status !== "subscribed" && c.status !== "unsubscribed") {
        return null;
      }
      const kind = c.status === "unsubscribed" ? "topic_unsubscribed" : "topic_subscribed";
      return { kind, name: c.topic };
    }
    if ("event" in c) {
      const rest = Object.keys(c).filter((k) => !["event", "within_days", "count"].includes(k));
      if (rest.length) return null;
      const count = c.count;
      const none = count && Object.keys(count).length === 1 && count.eq === 0;
      if (count !== undefined && !none) return null;
      return { kind: none ? "did_not" : "did", name: c.event, days: c.within_days };
    }
    return null;
  }

  function toRows(definition) {
    if (definition && typeof definition === "object" && !Array.isArray(definition)) {
      for (const join of ["all", "any"]) {
        if (Object.keys(definition).length === 1 && Array.isArray(definition[join])) {
          const rows = definition[join].map(toRow);
          return rows.every(Boolean) ? { join, rows } : null;
        }
      }
      const row = toRow(definition);
      return row ? { join: "all", rows: [row] } : null;
    }
    return null;
  }

  // --- Rows → a definition ------------------------------------------------------------

  function toCondition(row) {
    const value = row.value === undefined ? "" : row.value;
    if (row.kind === "field" || row.kind === "attribute") {
      const c = { [row.kind]: row.name, op: row.op };
      if (!NO_VALUE.has(row.op)) {
        const parse = row.kind === "attribute" ? scalar : (v) => v.trim();
        c.value =
          row.op === "in" ? value.split(",").map(parse).filter((v) => v !== "") : parse(value);
      }
      return c;
    }
    if (row.kind === "reachable") return { reachable: row.name };
    if (row.kind === "segment") return { segment: row.name };
    if (row.kind === "topic_subscribed") return { topic: row.name, status: "subscribed" };
    if (row.kind === "topic_unsubscribed") return { topic: row.name, status: "unsubscribed" };
    const c = { event: row.name };
    const days = parseInt(row.days, 10);
    if (!Number.isNaN(days)) c.within_days = days;
    if (row.kind === "did_not") c.count = { eq: 0 };
    return c;
  }

  function start() {
    const textarea = document.getElementById("id_definition");
    const root = document.getElementById("segment-visual-builder");
    const optionsNode = document.getElementById("segment-builder-options");
    if (!textarea || !root || !optionsNode) return;
    const options = JSON.parse(optionsNode.textContent);
    const rowsBox = root.querySelector("[data-rows]");
    const notice = root.querySelector("[data-notice]");
    const joinSelect = root.querySelector("[data-join]");
    const addButton = root.querySelector("[data-add]");
    // Right above the definition field.
    const fieldRow = textarea.closest(".form-row");
    if (fieldRow) fieldRow.before(root);
    root.hidden = false;

    function nameInput(row) {
      if (row.kind === "field") {
        return select("field", options.fields.map((f) => [f, f.replace(/_/g, " ")]), row.name);
      }
      if (row.kind === "reachable") {
        return select("channel", options.channels.map((c) => [c, c]), row.name);
      }
      if (row.kind === "segment") {
        return select("segment", options.segments.map((s) => [s.slug, s.name]), row.name);
      }
      if (row.kind === "topic_subscribed" || row.kind === "topic_unsubscribed") {
        return select("topic", (options.topics || []).map((t) => [t.slug, t.name]), row.name);
      }
      const placeholder = row.kind === "attribute" ? "attribute, e.g. plan" : "event, e.g. order.completed";
      return input(row.kind === "attribute" ? "attribute" : "event", row.name, { placeholder });
    }

    function drawRow(row) {
      const li = el("li", { class: "segment-builder-row" });
      li.appendChild(select("kind", KINDS, row.kind));
      li.appendChild(nameInput(row));
      if (row.kind === "field" || row.kind === "attribute") {
        li.appendChild(select("op", row.kind === "field" ? FIELD_OPS : ATTRIBUTE_OPS, row.op));
        if (!NO_VALUE.has(row.op)) li.appendChild(input("value", row.value, { placeholder: "value" }));
      }
      if (row.kind === "did" || row.kind === "did_not") {
        li.appendChild(el("span", { text: " in the last " }));
        li.appendChild(input("days", row.days, { size: "4", placeholder: "any" }));
        li.appendChild(el("span", { text: " days" }));
      }
      const remove = el("button", { type: "button", class: "button", text: "Remove" });
      remove.addEventListener("click", () => {
        li.remove();
        write();
      });
      li.appendChild(remove);
      return li;
    }

    function readRow(li) {
      const get = (name) => {
        const node = li.querySelector(`[data-name="${name}"]`);
        return node ? node.value : undefined;
      };
      const kind = get("kind");
      const name =
        get("field") || get("attribute") || get("channel") || get("topic") || get("segment") ||
        get("event") || "";
      return { kind, name, op: get("op"), value: get("value"), days: get("days") };
    }

    function draw(state) {
      rowsBox.replaceChildren();
      const shown = state !== null;
      notice.hidden = shown;
      rowsBox.hidden = !shown;
      joinSelect.disabled = !shown;
      addButton.disabled = !shown;
      if (!shown) return;
      joinSelect.value = state.join;
      state.rows.forEach((row) => rowsBox.appendChild(drawRow(row)));
    }

    function write() {
      const rows = Array.from(rowsBox.children).map(readRow);
      const definition = { [joinSelect.value]: rows.map(toCondition) };
      textarea.value = JSON.stringify(definition, null, 1);
      textarea.dispatchEvent(new Event("input", { bubbles: true }));
    }

    function readTextarea() {
      let definition;
      try {
        definition = textarea.value.trim() ? JSON.parse(textarea.value) : { all: [] };
      } catch (error) {
        draw(null);
        return;
      }
      draw(toRows(definition));
    }

    rowsBox.addEventListener("change", (event) => {
      const li = event.target.closest(".segment-builder-row");
      if (!li) return;
      const name = event.target.dataset.name;
      if (name === "kind" || name === "op") {
        // Another kind or operator needs other inputs: redraw the row, keeping its name.
        const row = readRow(li);
        if (name === "kind") {
          row.name = "";
          row.op = "eq";
        }
        li.replaceWith(drawRow(row));
      }
      write();
    });
    rowsBox.addEventListener("input", (event) => {
      if (event.target.tagName === "INPUT") write();
    });
    joinSelect.addEventListener("change", write);
    addButton.addEventListener("click", () => {
      rowsBox.appendChild(drawRow({ kind: "field", name: options.fields[0], op: "eq", value: "" }));
      write();
    });
    textarea.addEventListener("input", (event) => {
      if (event.isTrusted) readTextarea(); // typed by hand, not written by the builder
    });
    readTextarea();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
