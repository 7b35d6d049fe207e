/* The journey map: fetches the graph and its counts (insights/journey_map.py), lays it out
   top to bottom with the vendored dagre, and draws it as SVG: a box per step with its
   counts, an arrow per way out with the share of the step's visits that took it.
   Text is always set with textContent (step keys and labels come from staff input). */
(function () {
  "use strict";

  const SVG = "http://www.w3.org/2000/svg";
  const KINDS = {
    entry: { colour: "#2b6cb0", name: "Entry (trigger)" },
    send: { colour: "#2f855a", name: "Send a message" },
    survey: { colour: "#319795", name: "Survey question" },
    wait: { colour: "#718096", name: "Wait" },
    wait_for_event: { colour: "#6b46c1", name: "Wait for an event" },
    branch: { colour: "#b7791f", name: "Branch" },
    split: { colour: "#dd6b20", name: "Split (A/B)" },
    exit: { colour: "#c53030", name: "Exit" },
    end: { colour: "#4a5568", name: "End" },
    goal: { colour: "#d69e2e", name: "Goal / conversion" },
  };
  const COUNT_LABELS = [
    ["entered", "entered"],
    ["waiting", "waiting now"],
    ["sent", "sent"],
    ["delivered", "delivered"],
    ["engaged", "engaged"],
    ["converted", "converted"],
    ["conversions", "conversions"],
    ["dropped", "dropped"],
  ];
  const WIDTH = 240;
  const LINE = 16;

  function el(name, attrs, text) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function clip(text, length) {
    return text.length > length ? `${text.slice(0, length - 1)}…` : text;
  }

  function percent(share) {
    if (share === null || share === undefined) return "–";
    return `${Math.round(share * 1000) / 10}%`;
  }

  function countLines(node) {
    const counts = node.counts || {};
    const lines = [];
    for (const [key, label] of COUNT_LABELS) {
      if (key in counts) lines.push({ key, text: `${label}: ${counts[key].toLocaleString()}` });
    }
    return lines;
  }

  function channelLine(node) {
    const per = (node.counts || {}).by_channel;
    if (!per) return null;
    return Object.entries(per)
      .map(([channel, c]) => `${channel} ${c.sent}/${c.delivered}/${c.engaged}`)
      .join(" · ");
  }

  function drawNode(group, node, box) {
    const kind = KINDS[node.kind] || { colour: "#2d3748", name: node.kind };
    const g = el("g", {
      class: `journey-map-node kind-${node.kind}`,
      "data-node": node.id,
      "data-kind": node.kind,
      transform: `translate(${box.x - box.width / 2},${box.y - box.height / 2})`,
    });
    g.appendChild(el("rect", { width: box.width, height: box.height, rx: 8, ry: 8, fill: "#fff", stroke: kind.colour, "stroke-width": 2 }));
    g.appendChild(el("rect", { width: box.width, height: 24, rx: 8, ry: 8, fill: kind.colour }));
    g.appendChild(el("rect", { y: 16, width: box.width, height: 8, fill: kind.colour }));
    g.appendChild(el("text", { x: 10, y: 17, class: "journey-map-title" }, node.label));
    g.appendChild(el("title", {}, `${kind.name}: ${node.label}`));
    let y = 40;
    g.appendChild(el("text", { x: 10, y, class: "journey-map-detail" }, clip(node.detail, 40)));
    g.lastChild.appendChild(el("title", {}, node.detail));
    for (const line of countLines(node)) {
      y += LINE;
      g.appendChild(el("text", { x: 10, y, class: "journey-map-count", "data-count": line.key }, line.text));
    }
    const channels = channelLine(node);
    if (channels) {
      y += LINE;
      g.appendChild(el("text", { x: 10, y, class: "journey-map-detail", "data-channels": "" }, clip(channels, 40)));
    }
    group.appendChild(g);
  }

  function nodeHeight(node) {
    return 48 + LINE * (countLines(node).length + (channelLine(node) ? 1 : 0));
  }

  function edgeText(edge) {
    return `${percent(edge.share)} ${edge.label} (${edge.count.toLocaleString()})`;
  }

  function drawEdge(group, edge, layout) {
    const points = layout.points;
    const d = points.map((p, i) => `${i ? "L" : "M"}${p.x},${p.y}`).join(" ");
    const g = el("g", {
      class: `journey-map-edge kind-${edge.kind}`,
      "data-edge": `${edge.source}->${edge.target}`,
    });
    g.appendChild(el("path", { d, fill: "none", "marker-end": "url(#journey-map-arrow)" }));
    const label = el("text", { x: layout.x, y: layout.y + 4, "text-anchor": "middle", class: "journey-map-edge-label" }, edgeText(edge));
    const width = Math.min(edgeText(edge).length * 6.4 + 8, 260);
    g.appendChild(el("rect", { x: layout.x - width / 2, y: layout.y - 9, width, height: 18, rx: 4, class: "journey-map-edge-bg" }));
    g.appendChild(label);
    group.appendChild(g);
  }

  function draw(canvas, data) {
    const graph = new dagre.graphlib.Graph({ multigraph: false });
    graph.setGraph({ rankdir: "TB", nodesep: 40, ranksep: 70, edgesep: 20, marginx: 20, marginy: 20 });
    graph.setDefaultEdgeLabel(() => ({}));
    for (const node of data.nodes) graph.setNode(node.id, { width: WIDTH, height: nodeHeight(node) });
    for (const edge of data.edges) {
      const width = Math.min(edgeText(edge).length * 6.4 + 8, 260);
      graph.setEdge(edge.source, edge.target, { width, height: 18, labelpos: "c" });
    }
    dagre.layout(graph);
    const size = graph.graph();
    // Shrinks to the page's width (never grows past its natural size); the text scales with it.
    const svg = el("svg", {
      class: "journey-map-svg",
      style: `max-width: ${Math.ceil(size.width)}px`,
      viewBox: `0 0 ${Math.ceil(size.width)} ${Math.ceil(size.height)}`,
      role: "img",
      "aria-label": `Journey map of ${data.journey.name}`,
    });
    const defs = el("defs");
    const marker = el("marker", { id: "journey-map-arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
    marker.appendChild(el("path", { d: "M0,0 L10,5 L0,10 z", class: "journey-map-arrowhead" }));
    defs.appendChild(marker);
    svg.appendChild(defs);
    const edges = el("g", { class: "journey-map-edges" });
    for (const edge of data.edges) drawEdge(edges, edge, graph.edge(edge.source, edge.target));
    const nodes = el("g", { class: "journey-map-nodes" });
    for (const node of data.nodes) drawNode(nodes, node, graph.node(node.id));
    svg.appendChild(edges);
    svg.appendChild(nodes);
    canvas.replaceChildren(svg);
  }

  function legend(root) {
    const box = root.querySelector("[data-legend]");
    const items = Object.values(KINDS).map((kind) => {
      const item = document.createElement("span");
      const swatch = document.createElement("i");
      swatch.style.background = kind.colour;
      item.append(swatch, kind.name);
      return item;
    });
    const edges = document.createElement("span");
    edges.textContent = "Arrow: share of the step's visits (count) · dashed: timeout · dotted: not in the configuration";
    box.replaceChildren(...items, edges);
  }

  function showErrors(root, errors) {
    const list = root.querySelector("[data-errors]");
    const lines = [];
    for (const [field, problems] of Object.entries(errors || {})) {
      for (const problem of problems) {
        const li = document.createElement("li");
        li.textContent = `${field === "__all__" ? "" : field + ": "}${problem.message || problem}`;
        lines.push(li);
      }
    }
    list.replaceChildren(...lines);
    list.hidden = lines.length === 0;
  }

  async function load(root) {
    const form = root.querySelector("[data-range]");
    const status = root.querySelector("[data-status]");
    const params = new URLSearchParams(new FormData(form));
    status.textContent = "Loading…";
    const response = await fetch(`${root.dataset.url}?${params}`, { credentials: "same-origin" });
    const data = await response.json();
    if (!response.ok) {
      showErrors(root, data.errors);
      status.textContent = "Fix the dates.";
      return;
    }
    showErrors(root, {});
    draw(root.querySelector("[data-canvas]"), data);
    history.replaceState(null, "", `?${params}`);
    status.textContent = `${data.range.start} to ${data.range.end}`;
    root.dataset.loaded = "true";
  }

  document.addEventListener("DOMContentLoaded", () => {
    const root = document.getElementById("journey-map");
    if (!root) return;
    legend(root);
    root.querySelector("[data-range]").addEventListener("submit", (event) => {
      event.preventDefault();
      load(root).catch((error) => { root.querySelector("[data-status]").textContent = `Could not load: ${error}`; });
    });
    load(root).catch((error) => { root.querySelector("[data-status]").textContent = `Could not load: ${error}`; });
  });
})();
