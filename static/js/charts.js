// Draws every [data-plotly-figure] element from the JSON script it names (see partials/chart.html).
(function () {
  "use strict";
  var COLORS = { Red: "#c62828", Yellow: "#e0a800", Green: "#2e7d32", NA: "#9e9eb0" };
  // On a phone the mode bar would sit on the legend (and a tap counts as a hover): none there.
  var NARROW = window.matchMedia ? window.matchMedia("(max-width: 640px)") : null;
  function config() {
    return {
      responsive: true,
      displaylogo: false,
      displayModeBar: NARROW && NARROW.matches ? false : "hover",
      modeBarButtonsToRemove: ["lasso2d", "select2d"]
    };
  }
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
      Plotly.newPlot(el, fig.data, layout, config());
      el.setAttribute("data-rendered", "true");
    });
  }
  function redraw() {
    document.querySelectorAll("[data-plotly-figure][data-rendered]").forEach(function (el) {
      Plotly.react(el, el.data, el.layout, config());
    });
  }
  window.UsagePortalColors = COLORS;
  if (NARROW && NARROW.addEventListener) { NARROW.addEventListener("change", redraw); }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", draw); } else { draw(); }
})();
