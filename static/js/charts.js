// Draws every [data-plotly-figure] element from the JSON script it names (see partials/chart.html).
(function () {
  "use strict";
  var COLORS = { Red: "#c62828", Yellow: "#e0a800", Green: "#2e7d32", NA: "#9e9eb0" };
  function draw() {
    if (!window.Plotly) { return; }
    document.querySelectorAll("[data-plotly-figure]").forEach(function (el) {
      var source = document.getElementById(el.getAttribute("data-plotly-figure"));
      if (!source) { return; }
      var fig = JSON.parse(source.textContent);
      var layout = Object.assign({
        margin: { t: 30, r: 20, b: 50, l: 60 },
        font: { family: "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", size: 12 },
        paper_bgcolor: "#fff", plot_bgcolor: "#fff", hovermode: "x unified",
        legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" }
      }, fig.layout || {});
      Plotly.newPlot(el, fig.data, layout, { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["lasso2d", "select2d"] });
      el.setAttribute("data-rendered", "true");
    });
  }
  window.UsagePortalColors = COLORS;
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", draw); } else { draw(); }
})();
