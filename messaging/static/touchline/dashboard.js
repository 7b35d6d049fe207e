/*
 * Touchline dashboards (admin home and per journey), drawn with the vendored Chart.js from
 * the JSON endpoint named in data-url. Server text is set with textContent only.
 */
(function () {
  "use strict";

  const root = document.getElementById("touchline-dashboard");
  if (!root || typeof window.Chart === "undefined") {
    return;
  }
  const CHANNEL_LABELS = { sms: "SMS", whatsapp: "WhatsApp", email: "Email" };
  const CHANNEL_COLORS = { sms: "#417690", whatsapp: "#2e9e5b", email: "#c4761b" };
  const NPS_COLORS = { promoters: "#2e9e5b", passives: "#a3a3a3", detractors: "#d1453b" };
  const charts = {};
  const status = root.querySelector("[data-status]");

  const style = getComputedStyle(document.documentElement);
  Chart.defaults.color = style.getPropertyValue("--body-quiet-color").trim() || "#666";
  Chart.defaults.borderColor = style.getPropertyValue("--hairline-color").trim() || "#e8e8e8";
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.plugins.legend.labels.boxWidth = 12;

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

  function q(selector) {
    return root.querySelector(selector);
  }

  function draw(name, config) {
    if (charts[name]) {
      charts[name].destroy();
    }
    const canvas = q('[data-chart="' + name + '"]');
    charts[name] = new Chart(canvas, config);
  }

  // An empty chart keeps its axes; a line under it says why it is empty.
  function emptyNote(name, text) {
    const box = q('[data-chart="' + name + '"]').parentElement;
    const old = box.parentElement.querySelector(".touchline-empty[data-for='" + name + "']");
    if (old) {
      old.remove();
    }
    if (text) {
      box.after(el("p", { class: "touchline-empty", "data-for": name, text: text }));
    }
  }

  function shortDate(iso) {
    const [, month, day] = iso.split("-");
    return day + "/" + month;
  }

  function percent(rate) {
    return rate === null || rate === undefined ? "—" : (rate * 100).toFixed(1) + " %";
  }

  function npsText(nps) {
    return nps.score === null || nps.score === undefined ? "—" : String(nps.score);
  }

  function npsCounts(nps) {
    return (
      nps.promoters + " promoters · " + nps.passives + " passives · " +
      nps.detractors + " detractors"
    );
  }

  function table(headers, rows) {
    return el("div", { class: "touchline-table-wrap" }, [bareTable(headers, rows)]);
  }

  function bareTable(headers, rows) {
    return el("table", { class: "touchline-table" }, [
      el("thead", {}, [el("tr", {}, headers.map((h) =>
        el("th", { class: h.num ? "num" : "", text: h.label })))]),
      el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((cell, i) => {
        const td = el("td", { class: headers[i].num ? "num" : "" });
        if (cell instanceof Node) {
          td.appendChild(cell);
        } else {
          td.textContent = cell === null || cell === undefined ? "" : String(cell);
        }
        return td;
      })))),
    ]);
  }

  const integerAxis = { beginAtZero: true, ticks: { precision: 0 } };

  // --- Admin home -----------------------------------------------------------------------

  function drawHome(data) {
    const activity = data.activity;
    ["sent", "delivered", "failed", "replies"].forEach((metric) => {
      const totals = activity.totals[metric];
      draw(metric, {
        type: "bar",
        data: {
          labels: activity.days.map(shortDate),
          datasets: activity.channels.map((channel) => ({
            label: CHANNEL_LABELS[channel] || channel,
            data: activity.series[metric][channel],
            backgroundColor: CHANNEL_COLORS[channel],
          })),
        },
        options: {
          scales: { x: { stacked: true }, y: { ...integerAxis, stacked: true } },
          plugins: { tooltip: { mode: "index", intersect: false } },
        },
      });
      q('[data-total="' + metric + '"]').textContent =
        totals.all + " in " + data.period_days + " days · " +
        activity.channels.map((c) => (CHANNEL_LABELS[c] || c) + " " + totals[c]).join(" · ");
      emptyNote(metric, totals.all ? "" : "Nothing in this period.");
    });

    const npsGrid = q('[data-needs="nps"]');
    if (!data.nps) {
      npsGrid.hidden = true;
      return;
    }
    npsGrid.hidden = false;
    const overall = data.nps.overall;
    q("[data-nps-score]").textContent = npsText(overall);
    q("[data-nps-counts]").textContent = overall.answered
      ? npsCounts(overall)
      : "No answers yet.";
    draw("nps", {
      type: "doughnut",
      data: {
        labels: ["Promoters (9–10)", "Passives (7–8)", "Detractors (0–6)"],
        datasets: [{
          data: overall.answered
            ? [overall.promoters, overall.passives, overall.detractors]
            : [],
          backgroundColor: [NPS_COLORS.promoters, NPS_COLORS.passives, NPS_COLORS.detractors],
        }],
      },
      options: { plugins: { legend: { position: "right" } } },
    });
    // A doughnut of nothing is only a legend: leave the "No answers yet." line alone.
    q('[data-chart="nps"]').parentElement.hidden = !overall.answered;

    const perJourney = q("[data-nps-journeys]");
    perJourney.replaceChildren(
      data.nps.journeys.length
        ? table(
          [
            { label: "Journey" }, { label: "NPS", num: true }, { label: "Promoters", num: true },
            { label: "Passives", num: true }, { label: "Detractors", num: true },
          ],
          data.nps.journeys.map((j) => [
            el("a", { href: j.dashboard_url, text: j.name + " v" + j.version }),
            npsText(j), j.promoters, j.passives, j.detractors,
          ])
        )
        : el("p", { class: "touchline-empty", text: "No answers yet." })
    );

    const links = q("[data-journey-links]");
    links.replaceChildren(
      data.journeys.length
        ? el("ul", { class: "touchline-links" }, data.journeys.map((j) =>
          el("li", {}, [
            el("a", { href: j.dashboard_url, text: j.name }),
            document.createTextNode(" v" + j.version + " (" + j.status + ")"),
          ])))
        : el("p", { class: "touchline-empty", text: "No journeys yet." })
    );
  }

  // --- One journey ----------------------------------------------------------------------

  function drawJourney(data) {
    const e = data.enrollments;
    q("[data-enrollments]").textContent =
      "Entered " + e.entered + " · active " + e.active + " · waiting " + e.waiting +
      " · completed " + e.completed + " · converted " + e.converted + " · exited " + e.exited +
      " · failed " + e.failed;

    const steps = data.funnel;
    draw("funnel", {
      type: "bar",
      data: {
        labels: steps.map((s) => s.position + ". " + s.key),
        datasets: [{ label: "Entered", data: steps.map((s) => s.entered), backgroundColor: "#417690" }],
      },
      options: {
        indexAxis: "y",
        scales: { x: integerAxis },
        plugins: { legend: { display: false } },
      },
    });
    emptyNote(
      "funnel",
      !steps.length ? "This journey has no steps yet."
        : (e.entered ? "" : "Nobody has entered this journey yet.")
    );
    q("[data-funnel-table]").replaceChildren(steps.length ? table(
      [
        { label: "Step" }, { label: "Kind" }, { label: "Entered", num: true },
        { label: "Sent", num: true }, { label: "Delivered", num: true },
        { label: "Failed", num: true }, { label: "Replied", num: true },
      ],
      steps.map((s) => [s.key, s.kind, s.entered, s.sent, s.delivered, s.failed, s.replied])
    ) : el("span"));

    const channels = data.channels;
    draw("channels", {
      type: "bar",
      data: {
        labels: channels.map((c) => CHANNEL_LABELS[c.channel] || c.channel),
        datasets: [
          {
            label: "Delivery rate",
            data: channels.map((c) => (c.delivery_rate === null ? null : c.delivery_rate * 100)),
            backgroundColor: "#417690",
          },
          {
            label: "Reply rate",
            data: channels.map((c) => (c.reply_rate === null ? null : c.reply_rate * 100)),
            backgroundColor: "#c4761b",
          },
        ],
      },
      options: {
        scales: { y: { beginAtZero: true, max: 100, ticks: { callback: (v) => v + " %" } } },
        plugins: {
          tooltip: { callbacks: { label: (ctx) => ctx.dataset.label + ": " + ctx.parsed.y.toFixed(1) + " %" } },
        },
      },
    });
    emptyNote("channels", channels.length ? "" : "This journey has sent no messages yet.");
    q("[data-channel-table]").replaceChildren(channels.length ? table(
      [
        { label: "Channel" }, { label: "Sent", num: true }, { label: "Delivered", num: true },
        { label: "Failed", num: true }, { label: "Replied", num: true },
        { label: "Delivery rate", num: true }, { label: "Reply rate", num: true },
      ],
      channels.map((c) => [
        CHANNEL_LABELS[c.channel] || c.channel, c.sent, c.delivered, c.failed, c.replied,
        percent(c.delivery_rate), percent(c.reply_rate),
      ])
    ) : el("span"));

    const nps = data.nps;
    const scored = nps.promoters + nps.passives + nps.detractors;
    q("[data-nps-score]").textContent = npsText(nps);
    q("[data-nps-counts]").textContent = scored
      ? npsCounts(nps) + (nps.unanswered ? " · " + nps.unanswered + " unanswered" : "")
      : "No answers yet.";
    const weeks = data.nps_weekly;
    draw("nps-weekly", {
      data: {
        labels: weeks.map((w) => shortDate(w.week)),
        datasets: [
          { type: "bar", label: "Promoters", data: weeks.map((w) => w.promoters), backgroundColor: NPS_COLORS.promoters, stack: "answers" },
          { type: "bar", label: "Passives", data: weeks.map((w) => w.passives), backgroundColor: NPS_COLORS.passives, stack: "answers" },
          { type: "bar", label: "Detractors", data: weeks.map((w) => w.detractors), backgroundColor: NPS_COLORS.detractors, stack: "answers" },
          { type: "line", label: "NPS", data: weeks.map((w) => w.score), yAxisID: "score", borderColor: "#333", backgroundColor: "#333", spanGaps: true },
        ],
      },
      options: {
        scales: {
          x: { stacked: true },
          y: { ...integerAxis, stacked: true, title: { display: true, text: "answers" } },
          score: { position: "right", min: -100, max: 100, grid: { drawOnChartArea: false }, title: { display: true, text: "NPS" } },
        },
      },
    });
    emptyNote("nps-weekly", weeks.some((w) => w.answered) ? "" : "No answers yet.");
  }

  // --- Loading --------------------------------------------------------------------------

  async function load() {
    const url = new URL(root.dataset.url, window.location.href);
    root.querySelectorAll("[data-param]").forEach((input) => {
      url.searchParams.set(input.dataset.param, input.value);
    });
    status.textContent = "Loading…";
    try {
      const response = await fetch(url, { credentials: "same-origin" });
      if (!response.ok) {
        throw new Error("HTTP " + response.status);
      }
      const data = await response.json();
      if (root.dataset.kind === "journey") {
        drawJourney(data);
      } else {
        drawHome(data);
      }
      status.textContent = "Updated " + new Date().toLocaleTimeString() + " (dates in UTC).";
    } catch (error) {
      status.textContent = "Could not load the figures: " + error.message;
    }
  }

  root.querySelectorAll("[data-param]").forEach((input) => input.addEventListener("change", load));
  load();
})();
