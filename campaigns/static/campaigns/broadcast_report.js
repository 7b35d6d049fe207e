/*
 * A broadcast's activity per hour (sent, delivered, opened, clicked), drawn with the vendored
 * Chart.js from the JSON at data-url (campaigns.reports.broadcast_activity), as the Touchline
 * dashboards are. Server text is set with textContent only.
 */
(function () {
  "use strict";

  const root = document.getElementById("broadcast-report");
  if (!root || typeof window.Chart === "undefined") {
    return;
  }
  const COLORS = { sent: "#417690", delivered: "#2e9e5b", opened: "#c4761b", clicked: "#8e44ad" };
  const status = root.querySelector("[data-status]");
  const canvas = root.querySelector('[data-chart="activity"]');

  function label(iso) {
    const d = new Date(iso);
    return d.toISOString().slice(5, 13).replace("T", " ") + "h";
  }

  fetch(root.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
    .then((response) => {
      if (!response.ok) {
        throw new Error("HTTP " + response.status);
      }
      return response.json();
    })
    .then((data) => {
      const activity = data.activity;
      status.textContent = activity.hours.length ? "" : "No activity yet.";
      new Chart(canvas, {
        type: "bar",
        data: {
          labels: activity.hours.map(label),
          datasets: Object.keys(COLORS).map((name) => ({
            label: name.charAt(0).toUpperCase() + name.slice(1),
            data: activity.series[name] || [],
            borderColor: COLORS[name],
            backgroundColor: COLORS[name],
          })),
        },
        options: { maintainAspectRatio: false, scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
      });
    })
    .catch((error) => {
      status.textContent = "Could not load the figures (" + error.message + ").";
    });
})();
